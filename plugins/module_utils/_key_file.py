# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manager behind the modules that keep an Ed25519 private key file on a host.

``checkpoint_identity`` (an instance's identity key) and ``signing_key`` (the control plane's
signing key) share it. The private key is only ever held in memory to derive its public half;
results and diffs carry the path, public key, key id, mode and ownership, never key material.
"""

from __future__ import annotations

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vantage.checkpoint.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.vantage.checkpoint.plugins.module_utils._keys import (
    KeyFileError,
    OpenKeyFile,
    ensure_cryptography,
    generate_private_key,
    key_id,
    load_private_key_pem,
    lstat_or_none,
    parse_mode,
    private_key_pem,
    public_key_b64,
    remove_file,
    resolve_group,
    resolve_owner,
    write_key_file,
)

# the argument_spec entries both modules share (their DOCUMENTATION describes them)
KEY_FILE_ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    owner=dict(type="str"),
    group=dict(type="str"),
    mode=dict(type="raw", default="0600"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)


class KeyFileModule(AnsibleModule):
    """An AnsibleModule whose results hold exactly the documented values.

    AnsibleModule adds the file attributes of a result's ``path`` (owner, mode, size, and a
    ``state`` that means something else than this module's option) to every result; these
    modules report the key file's metadata in their diff instead.
    """

    def add_path_info(self, kwargs):
        return kwargs


def _mode_text(mode):
    return None if mode is None else "%04o" % mode


class KeyFileManager:
    """Creates, reads, corrects or removes one private key file.

    Subclasses may override :meth:`removal_paths` (files removed with ``state=absent``) and
    :meth:`extra_results` (more read-only facts about the key).
    """

    #: whether an existing key may be replaced by a new one (the ``force`` option)
    allow_regenerate = True
    #: what to do about an existing file that is not a valid key
    invalid_hint = "set force=true to replace it with a new key"

    def __init__(self, module):
        self.module = module
        self.check_mode = module.check_mode
        params = module.params
        self.path = params["path"]
        self.state = params["state"]
        self.force = bool(params.get("force")) if self.allow_regenerate else False
        try:
            self.mode = parse_mode(params["mode"])
            self.uid = resolve_owner(params["owner"])
            self.gid = resolve_group(params["group"])
        except ValueError as exc:
            module.fail_json(msg="%s: %s" % (self.path, exc), path=self.path)
        self.diff = DifferenceTracker()
        self.changed = False
        self.public_key = None
        self.key_id = None
        self.warnings = []

    # --- hooks -----------------------------------------------------------------------------------

    def removal_paths(self):
        """The files ``state=absent`` removes."""
        return [self.path]

    def extra_results(self):
        """More results (read-only facts); never key material."""
        return {}

    # --- helpers -----------------------------------------------------------------------------------

    def fail(self, msg):
        self.module.fail_json(msg=msg, path=self.path)

    @staticmethod
    def _metadata(state, key_id_value=None, st=None, mode=None, uid=None, gid=None):
        if st is not None:
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        return dict(state=state, key_id=key_id_value, mode=_mode_text(mode), uid=uid, gid=gid)

    def _track(self, before, after):
        for name in ("state", "key_id", "mode", "uid", "gid"):
            self.diff.add(name, before[name], after[name])

    def _wanted_uid_gid(self, st=None):
        uid = self.uid if self.uid is not None else (st.st_uid if st is not None else os.geteuid())
        gid = self.gid if self.gid is not None else (st.st_gid if st is not None else os.getegid())
        return uid, gid

    # --- state=present -------------------------------------------------------------------------

    def present(self):
        st = lstat_or_none(self.path)
        if st is None:
            self._create(before=self._metadata("absent"), overwrite=False)
            return
        if stat.S_ISLNK(st.st_mode):
            self.fail("%s: is a symbolic link; point path at the key file itself" % self.path)
        if not stat.S_ISREG(st.st_mode):
            self.fail("%s: exists but is not a regular file" % self.path)
        with OpenKeyFile(self.path) as handle:
            try:
                key = load_private_key_pem(handle.data, self.path)
            except KeyFileError as exc:
                if not self.force:
                    self.fail("%s; refusing to overwrite it (%s)" % (exc, self.invalid_hint))
                key = None
            if self.force:
                current_id = key_id(key) if key is not None else "(invalid key file)"
                self._create(before=self._metadata("present", current_id, st=handle.stat), overwrite=True, existing=handle.stat)
                return
            self.public_key = public_key_b64(key)
            self.key_id = key_id(key)
            del key
            uid, gid = self._wanted_uid_gid(handle.stat)
            self._track(
                self._metadata("present", self.key_id, st=handle.stat),
                self._metadata("present", self.key_id, mode=self.mode, uid=uid, gid=gid),
            )
            if self.diff.has_differences():
                self.changed = True
                if not self.check_mode:
                    handle.fix(self.mode, self.uid, self.gid)

    def _create(self, before, overwrite, existing=None):
        """Generate and write a new key; a replaced file's owner/group are kept unless set."""
        self.changed = True
        uid, gid = self._wanted_uid_gid(existing)
        if self.check_mode:
            # no key is generated in check mode: its id is unknown until the real run
            self._track(before, self._metadata("present", None, mode=self.mode, uid=uid, gid=gid))
            return
        key = generate_private_key()
        if existing is None:
            uid, gid = self.uid, self.gid  # None: the module user's, as for any new file
        write_key_file(self.path, private_key_pem(key), self.mode, uid, gid, overwrite=overwrite)
        self.public_key = public_key_b64(key)
        self.key_id = key_id(key)
        del key
        st = lstat_or_none(self.path)
        self._track(before, self._metadata("present", self.key_id, st=st))

    # --- state=absent --------------------------------------------------------------------------

    def absent(self):
        before = self._metadata("absent")
        st = lstat_or_none(self.path)
        if st is not None and stat.S_ISREG(st.st_mode):
            current_id = None
            try:
                with OpenKeyFile(self.path) as handle:
                    current_id = key_id(load_private_key_pem(handle.data, self.path))
            except KeyFileError:
                current_id = "(invalid key file)"
            before = self._metadata("present", current_id, st=st)
        elif st is not None:
            before = self._metadata("present", "(not a regular file)", st=st)
        self._track(before, self._metadata("absent"))
        existing = [path for path in self.removal_paths() if os.path.lexists(path)]
        if existing:
            self.changed = True
            if len(existing) > 1 or existing[0] != self.path:
                self.diff.add("files", sorted(existing), [])
            if not self.check_mode:
                for path in existing:
                    remove_file(path)

    # --- entry point ------------------------------------------------------------------------------

    def run(self):
        ensure_cryptography(self.module)
        try:
            if self.state == "present":
                self.present()
            else:
                self.absent()
        except KeyFileError as exc:
            self.fail(str(exc))
        result = dict(changed=self.changed, path=self.path)
        if self.key_id is not None:
            # absent, or not generated yet (check mode): left out, so that "is defined" and
            # "default(omit)" work in the tasks that use them
            result.update(public_key=self.public_key, key_id=self.key_id)
        result.update(self.extra_results())
        if self.module._diff:
            result["diff"] = self.diff.diff()
        for warning in self.warnings:
            self.module.warn(warning)
        self.module.exit_json(**result)
