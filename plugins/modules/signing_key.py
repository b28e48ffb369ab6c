#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: signing_key
short_description: Create or read the control plane's Ed25519 signing key
version_added: 0.1.0
description:
  - Makes sure that the reference control plane's signing key file (its C(--signing-key) / C(VANTAGE_SIGNING_KEY))
    exists on the managed host, and returns its public key and key id, for example to pin them in the
    checkpoints' trusted keys before the control plane first starts.
  - A new key is written as an unencrypted PKCS#8 PEM file, atomically, with its final mode and ownership set
    before it gets its name. The control plane would create the same file on its first start; creating it
    beforehand lets a playbook know the key id without asking the running service.
  - An existing valid key is never replaced; only its mode and ownership are corrected. A file that is not an
    unencrypted Ed25519 PKCS#8 PEM key makes the module fail, naming the file.
  - This module does not rotate the key. Rotation must go through the control plane's admin endpoint
    C(POST /api/v1/signing-keys/rotate), which keeps the old key trusted for a grace period, records the key
    change in its database and announces the new key to every instance in a C(rotate_key) instruction signed
    by the old key (see the examples). Replacing the file behind the control plane's back would make it retire
    the old key at its next start, and every checkpoint would reject instructions signed by a key it was never
    told about.
  - During a rotation the control plane keeps C(<path>.next) (a rotation in progress) and C(<path>.prev) (the key
    rotated out last) next to the key file. The module reports them (RV(rotation_pending), RV(previous_key_id)) and
    leaves them alone, except that O(state=absent) removes them too.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
  - vantage.checkpoint.key_file
options:
  path:
    description:
      - Path of the signing key file, the one the control plane is started with (C(--signing-key)).
      - The directory must exist. A symbolic link is refused.
    type: path
    required: true
  owner:
    description:
      - User that owns the key file, as a name or a numeric uid (the user the control plane runs as).
      - When not set, a new file belongs to the user the module runs as and an existing file keeps its owner.
    type: str
  state:
    description:
      - V(present) creates the key when it is missing and reads it otherwise.
      - V(absent) removes the key file together with C(<path>.next) and C(<path>.prev). Only for decommissioning
        a control plane - a control plane started without its key creates a new one that no checkpoint trusts.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: vantage.checkpoint.checkpoint_identity
"""

EXAMPLES = r"""
- name: Make sure the control plane has its signing key before it starts
  vantage.checkpoint.signing_key:
    path: /srv/vantage-control-plane/keys/signing.pem
    owner: "10002"
    group: "10002"
  register: signing

- name: Show the key id to pin in the checkpoints' trusted keys
  ansible.builtin.debug:
    msg: "signing key {{ signing.key_id }}: {{ signing.public_key }}"

# Rotation is the control plane's job: it announces the new key to the checkpoints, signed by the old one.
- name: Rotate the signing key (old key stays trusted for one day)
  ansible.builtin.uri:
    url: https://cp.example.com:8443/api/v1/signing-keys/rotate
    method: POST
    headers:
      Authorization: "Bearer {{ vantage_admin_token }}"
    body_format: json
    body:
      grace_s: 86400
  register: rotation
  no_log: true

- name: Read the new key id afterwards
  vantage.checkpoint.signing_key:
    path: /srv/vantage-control-plane/keys/signing.pem
  register: signing
"""

RETURN = r"""
path:
  description: The key file's path.
  returned: always
  type: str
  sample: /srv/vantage-control-plane/keys/signing.pem
public_key:
  description:
    - The public key, as standard padded base64 of the raw 32-byte Ed25519 public key.
  returned: when O(state=present), except in check mode when a new key would be generated
  type: str
  sample: 2Ng3sQqz5c2f5oYc1VfRq8N2i3Pq9m1uV5eG0S8Jx7I=
key_id:
  description:
    - The key id, the first 16 lowercase hex digits of SHA-256 over the raw public key.
  returned: when O(state=present), except in check mode when a new key would be generated
  type: str
  sample: 5d1c0f3e8a9b7c21
previous_key_id:
  description:
    - Key id of C(<path>.prev), the key rotated out last, or V(null) when there is none (or it is unreadable).
    - Whether it is still trusted is decided by the control plane (C(GET /api/v1/signing-keys)).
  returned: when O(state=present)
  type: str
  sample: 0f3c9a7d21e4b658
rotation_pending:
  description:
    - Whether C(<path>.next) exists, that is a rotation was interrupted. The control plane completes or discards
      it at its next start, so the key id may change then.
  returned: when O(state=present)
  type: bool
  sample: false
"""

from ansible_collections.vantage.checkpoint.plugins.module_utils._key_file import (
    KEY_FILE_ARGUMENT_SPEC,
    KeyFileManager,
    KeyFileModule,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._keys import (
    KeyFileError,
    OpenKeyFile,
    key_id,
    load_private_key_pem,
    lstat_or_none,
)


class SigningKeyManager(KeyFileManager):
    """The control plane's signing key: created once, never replaced here (rotation is the API's)."""

    allow_regenerate = False
    invalid_hint = "restore the control plane's key from a backup, or remove the file to start with a new key that no checkpoint trusts yet"

    def __init__(self, module):
        super(SigningKeyManager, self).__init__(module)
        self.next_path = self.path + ".next"
        self.prev_path = self.path + ".prev"

    def removal_paths(self):
        return [self.path, self.next_path, self.prev_path]

    def extra_results(self):
        if self.state != "present":
            return {}
        rotation_pending = lstat_or_none(self.next_path) is not None
        if rotation_pending:
            self.warnings.append(
                "%s exists: a signing key rotation was interrupted. The control plane completes or discards it "
                "at its next start, so the signing key id may change then." % self.next_path
            )
        return dict(previous_key_id=self._previous_key_id(), rotation_pending=rotation_pending)

    def _previous_key_id(self):
        if lstat_or_none(self.prev_path) is None:
            return None
        try:
            with OpenKeyFile(self.prev_path) as handle:
                return key_id(load_private_key_pem(handle.data, self.prev_path))
        except KeyFileError as exc:
            self.warnings.append("ignoring the previous signing key: %s" % exc)
            return None


def main():
    module = KeyFileModule(argument_spec=dict(KEY_FILE_ARGUMENT_SPEC), supports_check_mode=True)
    SigningKeyManager(module).run()


if __name__ == "__main__":
    main()
