#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_identity
short_description: Create or read a checkpoint instance's Ed25519 identity key
version_added: 0.1.0
description:
  - Makes sure that the Ed25519 identity key of one checkpoint instance exists on the managed host, and returns
    its public key and key id (to enroll it at the control plane with M(vantage.checkpoint.checkpoint_enrollment)).
  - The agent proves its identity to the control plane with this key; the private key is generated on the host
    and never leaves it. The module never returns, logs or diffs private key material.
  - A new key is written as an unencrypted PKCS#8 PEM file, atomically (temporary file in the same directory, C(fsync),
    rename), with its final mode and ownership set before it gets its name, so it is never readable by anybody else,
    not even briefly.
  - An existing valid key is kept; only its mode and ownership are corrected when they differ from the options.
  - An existing file that is not an unencrypted Ed25519 PKCS#8 PEM key makes the module fail, naming the file;
    it is replaced only with O(force=true).
  - See docs/protocol.md for the key format and the key id.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
  - vantage.checkpoint.key_file
options:
  path:
    description:
      - Path of the private key file, for example V(/etc/vantage/instances/a/identity.pem).
      - The directory must exist; create it (with the agent's ownership) beforehand.
      - A symbolic link is refused.
    type: path
    required: true
  owner:
    description:
      - User that owns the key file, as a name or a numeric uid (the checkpoint container runs as uid V(10001),
        which need not exist on the host).
      - When not set, a new file belongs to the user the module runs as and an existing file keeps its owner.
    type: str
  state:
    description:
      - V(present) creates the key when it is missing and reads it otherwise.
      - V(absent) removes the key file. The instance can no longer authenticate; remove its enrollment too.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Generate a new key even when a valid key exists, or replace a file that is not a valid key.
      - The new key must then be enrolled again with O(vantage.checkpoint.checkpoint_enrollment#module:replace=true).
      - With V(true) the module reports a change on every run.
    type: bool
    default: false
seealso:
  - module: vantage.checkpoint.checkpoint_enrollment
"""

EXAMPLES = r"""
- name: Make sure instance a has its identity key (readable by the container user only)
  vantage.checkpoint.checkpoint_identity:
    path: /etc/vantage/instances/a/identity.pem
    owner: "10001"
    group: "10001"
  register: identity

- name: Enroll it at the control plane
  vantage.checkpoint.checkpoint_enrollment:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_enroll_token }}"
    checkpoint: office-berlin
    instance: a
    public_key: "{{ identity.public_key }}"

- name: Replace a compromised identity key with a new one
  vantage.checkpoint.checkpoint_identity:
    path: /etc/vantage/instances/a/identity.pem
    owner: "10001"
    force: true

- name: Remove the identity key of a decommissioned instance
  vantage.checkpoint.checkpoint_identity:
    path: /etc/vantage/instances/b/identity.pem
    state: absent
"""

RETURN = r"""
path:
  description: The key file's path.
  returned: always
  type: str
  sample: /etc/vantage/instances/a/identity.pem
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
"""

from ansible_collections.vantage.checkpoint.plugins.module_utils._key_file import (
    KEY_FILE_ARGUMENT_SPEC,
    KeyFileManager,
    KeyFileModule,
)


class IdentityKeyManager(KeyFileManager):
    """An instance's identity key: created once, replaced only with ``force``."""

    allow_regenerate = True


def main():
    argument_spec = dict(KEY_FILE_ARGUMENT_SPEC)
    argument_spec.update(force=dict(type="bool", default=False))
    module = KeyFileModule(argument_spec=argument_spec, supports_check_mode=True)
    IdentityKeyManager(module).run()


if __name__ == "__main__":
    main()
