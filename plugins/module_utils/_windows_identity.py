# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An instance's identity on a Windows host, judged on the controller.

.NET has no Ed25519, so ``win_checkpoint_identity`` creates or reads the key with the checkpoint
image itself (``vantage identity PATH`` in a ``--network none`` container that mounts only the
key's directory) and reports what the command printed and the access lists it reads back. This
module accepts that report only when the public key and its key id agree and the key file and its
directory grant no more than docs/windows.md ("Key files") says: anything else fails closed.
"""

from __future__ import annotations

import json

from ansible_collections.vantage.checkpoint.plugins.module_utils import _keys, _windows_sddl

IDENTITY_FIELDS = ("created", "key_id", "public_key")


def parse_identity(stdout):
    """``{"public_key", "key_id", "created"}`` from ``vantage identity``'s output, or :class:`ValueError`.

    The last non-empty line must be exactly that JSON object; the key id must be the one the
    public key has (docs/protocol.md, "Keys and key ids").
    """
    lines = [line for line in str(stdout or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("the key command printed nothing")
    try:
        value = json.loads(lines[-1])
    except ValueError:
        raise ValueError("the key command did not print JSON: %s" % lines[-1][:200])
    if not isinstance(value, dict) or tuple(sorted(value)) != IDENTITY_FIELDS:
        raise ValueError("the key command printed %s, not {public_key, key_id, created}" % lines[-1][:200])
    if not isinstance(value["created"], bool):
        raise ValueError("the key command's 'created' is not true or false")
    try:
        key_id = _keys.key_id_from_b64(value["public_key"])
    except ValueError as exc:
        raise ValueError("the key command's public key is not usable: %s" % exc)
    if value["key_id"] != key_id:
        raise ValueError("the key command reports key id %r for a public key whose key id is %s" % (value["key_id"], key_id))
    return value


def _key_command(run, what, reasons):
    """The identity a key command run printed, or None (with the reason added)."""
    if run.get("rc") != 0:
        reasons.append("%s failed (exit %s): %s" % (
            what, run.get("rc"), str(run.get("stderr") or run.get("stdout") or "").strip()[:500]))
        return None
    try:
        return parse_identity(run.get("stdout"))
    except ValueError as exc:
        reasons.append("%s: %s" % (what, exc))
        return None


def check_identity(result, check_mode=False):
    """``(identity, reasons)`` from ``win_checkpoint_identity``'s report.

    ``identity`` is ``{"public_key", "key_id", "created"}`` read back through the key's final
    access list, or None when nothing could be proven (check mode before the key or its access
    lists are in place: the real run proves them). Any reason means the key must not be used.
    """
    if check_mode and result.get("changed"):
        return None, []
    reasons = []
    created = None
    if result.get("keygen") is not None:
        created = _key_command(result["keygen"], "creating the key", reasons)
        if created is not None and not created["created"]:
            reasons.append("creating the key: the key command found a key that the host did not have")
    identity = None
    if result.get("readback") is None:
        if not reasons:
            reasons.append("the key %s was not read back through its final access list" % result.get("path"))
    else:
        identity = _key_command(result["readback"], "reading the key back as ContainerUser", reasons)
        if identity is not None and identity["created"]:
            reasons.append("reading the key back created a new key: the key file %s was not there" % result.get("path"))
        if created is not None and identity is not None and identity["public_key"] != created["public_key"]:
            reasons.append("the key read back (key id %s) is not the key just created (key id %s)"
                           % (identity["key_id"], created["key_id"]))
    for policy, field, what in (("key_directory", "directory_sddl", "the key directory %s" % result.get("directory")),
                                ("key_file", "file_sddl", "the key file %s" % result.get("path"))):
        if result.get(field) is None:
            reasons.append("the host did not report the access list of %s" % what)
        else:
            reasons.extend(_windows_sddl.check_policy(policy, result[field], what))
    if reasons:
        return None, reasons
    identity = dict(identity, created=bool(result.get("created")))
    return identity, []
