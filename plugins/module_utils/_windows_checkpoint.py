# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The files a checkpoint keeps on a Windows host, decided on the controller and checked after they are written.

Windows bind mounts are directories, so each instance's configuration directory
(``<config>\\<checkpoint>\\<instance>``, the one its container mounts read-only) holds everything its
agent reads: the identity key (``win_checkpoint_identity``), the pinned trusted keys, the CA bundle
and the credentials, each a file only SYSTEM, Administrators and ``ContainerUser`` (read) may open.
The checkpoint's own directory keeps the trusted keys and the CA for the update engine (SYSTEM and
Administrators only). State directories: the instance's grants ``ContainerUser`` modify; the
checkpoint's (release and update records) only SYSTEM and Administrators.

:func:`files_plan` turns the role's settings into the directories and files to write, each with its
access list (``_windows_sddl``); ``win_checkpoint_files`` (PowerShell) writes them and reads the
lists back; :func:`check_report` accepts the report only when every list is exactly its policy.
The contents are byte for byte what the Linux path writes (``to_nice_json`` with sorted keys).
"""

from __future__ import annotations

import base64
import json
import ntpath

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract, _windows_sddl

CREDENTIAL_FIELDS = ("username", "password", "private_key", "passphrase")
CREDENTIAL_FIELD_LIMIT = 65536


class FilesError(ValueError):
    """Settings that cannot be written; ``reasons`` names each variable to fix."""

    def __init__(self, reasons):
        self.reasons = list(reasons)
        super(FilesError, self).__init__("; ".join(self.reasons))


def nice_json(value):
    """JSON as the Linux tasks write it (``to_nice_json(indent=2)``, sorted keys) with a final newline."""
    return json.dumps(value, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


def pinned_keys(answer, trusted_key_ids):
    """The control plane's signing keys (``GET /api/v1/signing-keys``) whose ids are pinned and not retired.

    Raises :class:`FilesError` when a pinned id is not offered: a key is pinned, never fetched blindly.
    """
    keys = (answer or {}).get("keys") if isinstance(answer, dict) else None
    if not isinstance(keys, list):
        raise FilesError(["the control plane's GET /api/v1/signing-keys answer has no list of keys"])
    ids = list(trusted_key_ids or [])
    if not ids:
        raise FilesError(["checkpoint_trusted_key_ids must list the ids of the signing keys to trust"])
    problems = []
    for key_id in ids:
        try:
            _contract.check("key_id", key_id, "checkpoint_trusted_key_ids entry")
        except _contract.ContractError as exc:
            problems.append(str(exc))
    chosen = [key for key in keys if isinstance(key, dict) and key.get("keyid") in ids and key.get("status") != "retired"]
    missing = [key_id for key_id in ids if key_id not in [key["keyid"] for key in chosen]]
    if missing:
        problems.append(
            "the control plane does not offer the pinned signing key(s) %s (it offers %s); check checkpoint_trusted_key_ids: "
            "a key is pinned, never fetched blindly" % (", ".join(missing), ", ".join(
                str(key.get("keyid")) for key in keys if isinstance(key, dict)) or "none"))
    if problems:
        raise FilesError(problems)
    return chosen


def clean_credentials(credentials):
    """``checkpoint_credentials`` checked as the Linux preflight checks it, without empty or null fields.

    Messages name the credential and the field, never a value.
    """
    if not isinstance(credentials, dict):
        raise FilesError(["checkpoint_credentials must be a dict of name: {username, password, private_key, passphrase}"])
    problems = []
    clean = {}
    for name, entry in credentials.items():
        try:
            _contract.check("credential_name", name, "name")
        except _contract.ContractError as exc:
            problems.append(str(exc))
        if not isinstance(entry, dict):
            problems.append("'%s' must be a dict of username, password, private_key, passphrase" % name)
            continue
        for field in sorted(set(entry) - set(CREDENTIAL_FIELDS)):
            problems.append("'%s' has unknown field '%s' (allowed: %s)" % (name, field, ", ".join(CREDENTIAL_FIELDS)))
        kept = {}
        for field in CREDENTIAL_FIELDS:
            value = entry.get(field)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                problems.append("'%s' field '%s' must be a string (quote it)" % (name, field))
            elif len(value) > CREDENTIAL_FIELD_LIMIT:
                problems.append("'%s' field '%s' is longer than %d characters" % (name, field, CREDENTIAL_FIELD_LIMIT))
            else:
                kept[field] = value
        if not kept and isinstance(entry, dict) and not (set(entry) - set(CREDENTIAL_FIELDS)):
            problems.append("'%s' has no field set" % name)
        clean[name] = kept
    if problems:
        raise FilesError(["Invalid checkpoint_credentials: %s" % "; ".join(problems)])
    return clean


def _file(path, content, policy):
    return {"path": path, "content": base64.b64encode(content.encode("utf-8")).decode("ascii"),
            "sddl": _windows_sddl.POLICIES[policy]["sddl"], "policy": policy}


def _directory(path, policy):
    return {"path": path, "sddl": _windows_sddl.POLICIES[policy]["sddl"], "policy": policy}


def files_plan(layout, instances, keys, ca_cert="", credentials=None):
    """What ``win_checkpoint_files`` writes: ``{"directories", "files", "remove", "revisions"}``.

    ``layout`` is ``_contract.host_layout(..., platform="windows")``; ``keys`` the pinned signing keys;
    ``credentials`` the cleaned ``checkpoint_credentials`` (empty: no credentials file, and any old one
    is removed). Directories come parents first; ``revisions`` pairs each instance's identity key
    with its credentials file, whose fingerprint the host computes (``_container.credentials_revision``).
    """
    trusted = nice_json({"keys": keys})
    ca = ca_cert if not ca_cert or ca_cert.endswith("\n") else ca_cert + "\n"
    secrets = nice_json({"credentials": credentials}) if credentials else None
    directories = [_directory(layout["config_dir"], "admin_only_directory"),
                   _directory(ntpath.dirname(layout["state_dir"]), "admin_only_directory"),
                   _directory(layout["state_dir"], "admin_only_directory")]
    files = [_file(layout["trusted_keys"], trusted, "admin_only_file")]
    remove = []
    if ca:
        files.append(_file(layout["ca"], ca, "admin_only_file"))
    else:
        remove.append(layout["ca"])
    revisions = []
    for name in instances:
        paths = layout["instances"][name]
        directories.append(_directory(paths["config_dir"], "key_directory"))
        directories.append(_directory(paths["state_dir"], "state_directory"))
        files.append(_file(ntpath.join(paths["config_dir"], _contract.CONFIG_FILES["trusted_keys"]), trusted, "key_file"))
        for key, content in (("ca", ca), ("credentials", secrets)):
            path = ntpath.join(paths["config_dir"], _contract.CONFIG_FILES[key])
            if content:
                files.append(_file(path, content, "key_file"))
            else:
                remove.append(path)
        if secrets:
            revisions.append({"name": name, "key": paths["identity_key"],
                              "file": ntpath.join(paths["config_dir"], _contract.CONFIG_FILES["credentials"])})
    return {"directories": directories, "files": files, "remove": remove, "revisions": revisions}


def check_report(plan, report, check_mode=False):
    """Reasons why the access lists ``win_checkpoint_files`` read back differ from the plan's policies.

    ``report["sddl"]`` maps each path to its SDDL (None: missing). In check mode a path that would be
    created or corrected is not judged (the real run is).
    """
    sddl = report.get("sddl") or {}
    pending = set(report.get("pending") or []) if check_mode else set()
    reasons = []
    for item in plan["directories"] + plan["files"]:
        if item["path"] in pending:
            continue
        kind = "directory" if "content" not in item else "file"
        if sddl.get(item["path"]) is None:
            reasons.append("the host did not report the access list of the %s %s" % (kind, item["path"]))
            continue
        reasons.extend(_windows_sddl.check_policy(item["policy"], sddl[item["path"]], "the %s %s" % (kind, item["path"])))
    for path in plan["remove"]:
        if path not in pending and sddl.get(path) is not None:
            reasons.append("%s should have been removed but is still there" % path)
    return reasons
