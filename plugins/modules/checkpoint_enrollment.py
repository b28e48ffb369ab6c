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

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import (
    CONTROL_PLANE_ARGUMENT_SPEC,
    ControlPlaneClient,
    ControlPlaneError,
    api_path,
    check_name,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.vantage.checkpoint.plugins.module_utils._keys import key_id_from_b64

#: the agent's and the control plane's rule for credential names
CREDENTIAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_CREDENTIALS = 256


def check_credential_names(names):
    """The sorted, de-duplicated names; ValueError naming a bad one (names are not secret)."""
    if len(names) > MAX_CREDENTIALS:
        raise ValueError("credentials: at most %d names, got %d" % (MAX_CREDENTIALS, len(names)))
    for name in names:
        if not isinstance(name, str) or not CREDENTIAL_NAME_RE.match(name):
            raise ValueError(
                "credentials: %r is not a credential name (1-64 characters A-Z, a-z, 0-9, '_', '.', '-', starting with "
                "a letter or digit; names only - the secrets stay at the checkpoint)" % (name,)
            )
    return sorted(set(names))


class EnrollmentManager:
    """Reads the checkpoint first, then changes only what differs (and nothing in check mode)."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.check_mode = module.check_mode
        params = module.params
        self.state = params["state"]
        self.replace = params["replace"]
        self.create_checkpoint = params["create_checkpoint"]
        try:
            self.checkpoint = check_name(params["checkpoint"], "checkpoint")
            self.instance = check_name(params["instance"], "instance")
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        self.credentials = None
        if params.get("credentials") is not None and self.state == "present":
            try:
                self.credentials = check_credential_names(params["credentials"])
            except ValueError as exc:
                module.fail_json(msg=str(exc))
        self.public_key = None
        self.key_id = None
        if self.state == "present":
            self.public_key = params["public_key"].strip()
            try:
                self.key_id = key_id_from_b64(self.public_key)
            except ValueError as exc:
                module.fail_json(msg="public_key: %s" % exc)
        self.label = "%s/%s" % (self.checkpoint, self.instance)
        self.diff = DifferenceTracker()
        self.changed = False
        self.checkpoint_created = False
        self.result_instance = None
        self.result_key_id = None
        self.result_credentials = None
        self.credentials_changed = False

    # --- control plane ---------------------------------------------------------------------------

    def get_checkpoint(self):
        """The checkpoint as the control plane reports it, or ``None`` when it does not exist."""
        status, data = self.client.request("GET", api_path("checkpoints", self.checkpoint), accept=(200, 404))
        if status == 404:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
            raise ControlPlaneError("GET %s: unexpected answer from the control plane (no instances list)" % api_path("checkpoints", self.checkpoint))
        return data

    def find_instance(self, checkpoint):
        for entry in checkpoint["instances"]:
            if isinstance(entry, dict) and entry.get("name") == self.instance:
                return self.normalize(entry, name_field="name")
        return None

    def normalize(self, entry, name_field):
        """One documented shape for the GET listing entry and the PUT answer."""
        public_key = entry.get("public_key")
        entry_key_id = entry.get("keyid")
        if not entry_key_id and isinstance(public_key, str):
            try:
                entry_key_id = key_id_from_b64(public_key)
            except ValueError:
                entry_key_id = None
        return dict(
            checkpoint=entry.get("checkpoint", self.checkpoint),
            name=entry.get(name_field, self.instance),
            public_key=public_key,
            key_id=entry_key_id,
            enrolled_at=entry.get("enrolled_at"),
        )

    def declared(self, checkpoint, method):
        names = checkpoint.get("credentials") if isinstance(checkpoint, dict) else None
        if not isinstance(names, list):
            raise ControlPlaneError(
                "%s %s: the control plane does not report the checkpoint's credentials (is it older than the "
                "credentials feature?)" % (method, api_path("checkpoints", self.checkpoint))
            )
        return sorted(names)

    def converge_credentials(self, checkpoint):
        """Declare exactly ``self.credentials`` at an existing checkpoint (PUT only when they differ)."""
        before = self.declared(checkpoint, "GET")
        self.diff.add("credentials", before, self.credentials)
        self.result_credentials = before
        if before == self.credentials:
            return
        self.changed = self.credentials_changed = True
        self.result_credentials = list(self.credentials)
        if self.check_mode:
            return
        dummy, answer = self.client.request(
            "PUT", api_path("checkpoints", self.checkpoint), body={"credentials": self.credentials}, accept=(200, 201)
        )
        self.result_credentials = self.declared(answer, "PUT")

    def conflict(self, enrolled_key_id):
        self.module.fail_json(
            msg="instance %s is already enrolled with key id %s (the given public_key has key id %s); "
            "set replace=true to replace it" % (self.label, enrolled_key_id or "(unknown)", self.key_id),
            enrolled_key_id=enrolled_key_id,
            key_id=self.key_id,
        )

    # --- states ----------------------------------------------------------------------------------

    def present(self):
        checkpoint = self.get_checkpoint()
        self.diff.add("checkpoint_exists", checkpoint is not None, True)
        current = None
        if checkpoint is None:
            if not self.create_checkpoint:
                self.module.fail_json(
                    msg="checkpoint %s does not exist at the control plane %s; create it first or set create_checkpoint=true"
                    % (self.checkpoint, self.client.base_url)
                )
            self.changed = self.checkpoint_created = True
            if not self.check_mode:
                body = {} if self.credentials is None else {"credentials": self.credentials}
                dummy, answer = self.client.request("PUT", api_path("checkpoints", self.checkpoint), body=body, accept=(200, 201))
                if self.credentials is not None:
                    self.result_credentials = self.declared(answer, "PUT")
            elif self.credentials is not None:
                self.result_credentials = list(self.credentials)
            if self.credentials is not None:
                self.diff.add("credentials", [], self.credentials)
        else:
            current = self.find_instance(checkpoint)

        self.diff.add("enrolled", current is not None, True)
        self.diff.add("key_id", current["key_id"] if current else None, self.key_id)

        if current is not None and current["public_key"] != self.public_key and not self.replace:
            self.conflict(current["key_id"])  # before any change
        if checkpoint is not None and self.credentials is not None:
            self.converge_credentials(checkpoint)
        if current is not None and current["public_key"] == self.public_key:
            self.result_instance = current
            self.result_key_id = current["key_id"]
            return

        self.changed = True
        self.result_key_id = self.key_id
        if self.check_mode:
            self.result_instance = dict(
                checkpoint=self.checkpoint, name=self.instance, public_key=self.public_key, key_id=self.key_id, enrolled_at=None
            )
            return
        status, answer = self.client.request(
            "PUT",
            api_path("checkpoints", self.checkpoint, "instances", self.instance),
            body={"public_key": self.public_key, "replace": self.replace},
            accept=(200, 201, 409),
        )
        if status == 409:  # somebody enrolled another key between our GET and PUT
            again = self.get_checkpoint()
            found = self.find_instance(again) if again is not None else None
            self.conflict(found["key_id"] if found else None)
        if not isinstance(answer, dict):
            raise ControlPlaneError("PUT %s: unexpected answer from the control plane" % api_path("checkpoints", self.checkpoint, "instances", self.instance))
        self.result_instance = self.normalize(answer, name_field="instance")
        self.result_key_id = self.result_instance["key_id"]
        if status == 200 and answer.get("changed") is False and not self.checkpoint_created and not self.credentials_changed:
            # the same key was enrolled meanwhile: nothing changed after all
            self.changed = False
            self.diff.add("enrolled", True, True)
            self.diff.add("key_id", self.key_id, self.key_id)

    def absent(self):
        checkpoint = self.get_checkpoint()
        current = self.find_instance(checkpoint) if checkpoint is not None else None
        self.diff.add("enrolled", current is not None, False)
        self.diff.add("key_id", current["key_id"] if current else None, None)
        if current is None:
            return
        self.changed = True
        if not self.check_mode:
            status, dummy = self.client.request(
                "DELETE", api_path("checkpoints", self.checkpoint, "instances", self.instance), accept=(200, 204, 404)
            )
            if status == 404:  # removed by somebody else meanwhile
                self.changed = False
                self.diff.add("enrolled", False, False)
                self.diff.add("key_id", None, None)

    def run(self):
        try:
            if self.state == "present":
                self.present()
            else:
                self.absent()
        except ControlPlaneError as exc:
            self.module.fail_json(msg=self.client.scrub(exc.msg), status=exc.status)
        result = dict(
            changed=self.changed,
            key_id=self.result_key_id,
            instance=self.result_instance,
            checkpoint_created=self.checkpoint_created,
            credentials=self.result_credentials,
        )
        if self.module._diff:
            result["diff"] = self.diff.diff()
        self.module.exit_json(**result)


def main():
    argument_spec = dict(CONTROL_PLANE_ARGUMENT_SPEC)
    argument_spec.update(
        checkpoint=dict(type="str", required=True),
        instance=dict(type="str", required=True),
        public_key=dict(type="str"),
        replace=dict(type="bool", default=False),
        create_checkpoint=dict(type="bool", default=True),
        credentials=dict(type="list", elements="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "present", ["public_key"])],
    )
    client = ControlPlaneClient.from_module(module)
    EnrollmentManager(module, client).run()


if __name__ == "__main__":
    main()
