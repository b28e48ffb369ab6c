"""The rolling update of a checkpoint host: ``vantage update --config <update.conf>``.

One implementation for every host. The ``auto_update`` role's timer (systemd on Linux; a
scheduled task on Windows) starts it from the checkpoint image that is installed and trusted
now, with only the engine's socket (or named pipe), the checkpoint's configuration directory
(read-only), its state directory and the host-wide lock mounted; so the host needs no Python
libraries of ours, and a new image is always verified by the old one.

A run verifies the channel's signed release manifest with the pinned keys
(:func:`vantage.protocol.verify_release`), pulls the image by digest, and replaces the local
instances one at a time behind the local and control-plane health gates, rolling back on a
failure; the containers it creates come from the collection's own container code
(:mod:`vantage._collection`), so ``checkpoint_container`` finds nothing to change in them.
See docs/auto-update.md.
"""
