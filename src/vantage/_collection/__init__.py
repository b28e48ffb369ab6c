"""The Ansible collection's pure-Python container code, carried by the package unchanged.

``_contract.py``, ``_container.py`` and ``_container_engine.py`` here are symbolic links to the
files of the same names in ``plugins/module_utils/``: the contract (every shared rule, read by the
whole package through :mod:`vantage.contract`), the collection's option model and container
settings, and the engine interface with its Docker backend and the one-at-a-time replacement.
The update engine (:mod:`vantage.update`) creates replacement containers with them, so that a
container it replaced is one ``checkpoint_container`` finds nothing to change in. Wheels hold
the files themselves (setuptools copies what the links point to); ``tests/unit/vantage/
test_update_collection_code.py`` proves the installed copies are the collection's files. See
docs/auto-update.md.
"""
