#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_enrollment
short_description: Enroll, replace or remove a checkpoint instance's public key at the control plane
version_added: 0.1.0
description:
  - Makes sure that an instance of a checkpoint is enrolled at the control plane with the given public identity key
    (or is not enrolled, with O(state=absent)), through the control plane's REST API.
  - The module first reads the checkpoint (C(GET /api/v1/checkpoints/{checkpoint})) and decides from what it finds,
    so check mode predicts the outcome without sending any request that changes something. Then, only when needed,
    it creates the checkpoint (C(PUT /api/v1/checkpoints/{checkpoint})), enrolls or replaces the key
    (C(PUT /api/v1/checkpoints/{checkpoint}/instances/{instance})) or removes the instance (C(DELETE) on the same path).
  - An instance enrolled with another key is only re-enrolled with O(replace=true); otherwise the module fails and
    names the key id that is enrolled. Replacing a key disconnects the instance's current session.
  - With O(credentials), the module also makes the names of the check credentials the checkpoint declares equal to
    that list (C(PUT /api/v1/checkpoints/{checkpoint}) with C(credentials), only when they differ).
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
  - vantage.checkpoint.attributes.actiongroup_checkpoint
  - vantage.checkpoint.control_plane
attributes:
  check_mode:
    support: full
    details:
      - Check mode sends only C(GET) requests.
  diff_mode:
    support: full
    details:
      - The diff shows whether the checkpoint exists, whether the instance is enrolled, and the key id before and after;
        with O(credentials), also the declared credential names.
  platform:
    support: full
    platforms: posix
options:
  checkpoint:
    description:
      - Name of the checkpoint (1-63 characters V(a-z), V(0-9) and V(-), starting with a letter or digit).
    type: str
    required: true
  instance:
    description:
      - Name of the instance within the checkpoint (same rules as O(checkpoint)).
    type: str
    required: true
  public_key:
    description:
      - The instance's public identity key, standard padded base64 of the raw 32-byte Ed25519 public key, as
        M(vantage.checkpoint.checkpoint_identity) returns it.
      - Required with O(state=present); ignored with O(state=absent).
    type: str
  replace:
    description:
      - Whether an instance already enrolled with another key gets O(public_key) instead.
      - With V(false) such an instance makes the module fail, so that a second host cannot take over an instance
        name by accident.
    type: bool
    default: false
  create_checkpoint:
    description:
      - Whether to create the checkpoint when it does not exist yet (with O(state=present)).
      - With V(false) a missing checkpoint makes the module fail.
      - An existing checkpoint is not modified, except for its credential names with O(credentials).
    type: bool
    default: true
  credentials:
    description:
      - The names of the credentials for checks that log in which the checkpoint holds in its credentials file
        (see M(vantage.checkpoint.checkpoint_container) O(vantage.checkpoint.checkpoint_container#module:credentials_file)).
        The control plane accepts monitors naming only declared credentials.
      - B(Names only) - the secrets never go to the control plane. Each name is 1-64 characters V(A-Z), V(a-z), V(0-9),
        V(_), V(.) and V(-), starting with a letter or digit; order and duplicates do not matter.
      - The checkpoint's declared names become exactly this list (V([]) removes them all). When not set, the names are
        left as they are.
      - Only with O(state=present). Every instance of a checkpoint must be given the same list, or the runs for
        different instances undo each other.
    type: list
    elements: str
  state:
    description:
      - V(present) enrolls the instance with O(public_key).
      - V(absent) removes the instance from the checkpoint (its session is closed); the checkpoint itself stays.
    type: str
    choices: [present, absent]
    default: present
notes:
  - The API token needs the C(enroll) (or C(admin)) scope.
seealso:
  - module: vantage.checkpoint.checkpoint_identity
"""

EXAMPLES = r"""
- name: Create instance a's identity key on its host
  vantage.checkpoint.checkpoint_identity:
    path: /etc/vantage/instances/a/identity.pem
    owner: "10001"
  register: identity

- name: Enroll instance a (creates the checkpoint when needed)
  vantage.checkpoint.checkpoint_enrollment:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_enroll_token }}"
    ca_path: /etc/vantage/control-plane-ca.pem
    checkpoint: office-berlin
    instance: a
    public_key: "{{ identity.public_key }}"

- name: Enroll a new key after the identity key was regenerated
  vantage.checkpoint.checkpoint_enrollment:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_enroll_token }}"
    checkpoint: office-berlin
    instance: a
    public_key: "{{ identity.public_key }}"
    replace: true

- name: Enroll instance a and declare the checkpoint's credential names (the secrets stay on the host)
  vantage.checkpoint.checkpoint_enrollment:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_enroll_token }}"
    checkpoint: office-berlin
    instance: a
    public_key: "{{ identity.public_key }}"
    credentials: "{{ checkpoint_credentials | list }}"

- name: Set the connection once for the whole play
  module_defaults:
    group/vantage.checkpoint.checkpoint:
      control_plane_url: https://cp.example.com:8443
      api_token: "{{ vantage_enroll_token }}"
  block:
    - name: Remove instance b
      vantage.checkpoint.checkpoint_enrollment:
        checkpoint: office-berlin
        instance: b
        state: absent
"""

RETURN = r"""
key_id:
  description:
    - Key id of the key enrolled for the instance after the module ran (first 16 hex digits of SHA-256 over the raw
      public key).
    - V(null) with O(state=absent).
  returned: always
  type: str
  sample: 5d1c0f3e8a9b7c21
instance:
  description:
    - The instance as the control plane reports it after the module ran; V(null) when it is not enrolled.
    - In check mode, when the instance would be enrolled or replaced, the predicted values with RV(instance.enrolled_at=null).
  returned: always
  type: dict
  contains:
    checkpoint:
      description: Name of the checkpoint.
      type: str
      sample: office-berlin
    name:
      description: Name of the instance.
      type: str
      sample: a
    public_key:
      description: The enrolled public key (base64 of the raw 32 bytes).
      type: str
      sample: 2Ng3sQqz5c2f5oYc1VfRq8N2i3Pq9m1uV5eG0S8Jx7I=
    key_id:
      description: Key id of the enrolled public key.
      type: str
      sample: 5d1c0f3e8a9b7c21
    enrolled_at:
      description: When the key was enrolled (Unix seconds, as the control plane reports it).
      type: float
      sample: 1763787600.25
checkpoint_created:
  description: Whether the checkpoint was created (or, in check mode, would be).
  returned: always
  type: bool
  sample: false
credentials:
  description:
    - The credential names the checkpoint declares after the module ran (sorted; in check mode, the predicted names).
    - V(null) when O(credentials) is not set or with O(state=absent).
  returned: always
  type: list
  elements: str
  sample: [mail-probe, sftp-probe]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import ControlPlaneClient
from ansible_collections.vantage.checkpoint.plugins.module_utils._enrollment import (
    REQUIRED_IF,
    EnrollmentManager,
    argument_spec,
)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, required_if=REQUIRED_IF)
    EnrollmentManager(module, ControlPlaneClient.from_module(module)).run()


if __name__ == "__main__":
    main()
