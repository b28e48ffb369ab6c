# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The options and the manager of ``checkpoint_enrollment``: read the checkpoint at the control
plane first, then change only what differs (nothing in check mode). Credential names follow the
contract's rule (``_contract``)."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import RULES, is_valid
from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import (
    CONTROL_PLANE_ARGUMENT_SPEC,
    ControlPlaneError,
    api_path,
    check_name,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.vantage.checkpoint.plugins.module_utils._keys import key_id_from_b64


MAX_CREDENTIALS = 256


def argument_spec():
    """The options of ``checkpoint_enrollment`` (with the control plane's connection options)."""
    spec = dict(CONTROL_PLANE_ARGUMENT_SPEC)
    spec.update(
        checkpoint=dict(type="str", required=True),
        instance=dict(type="str", required=True),
        public_key=dict(type="str"),
        replace=dict(type="bool", default=False),
        create_checkpoint=dict(type="bool", default=True),
        credentials=dict(type="list", elements="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    return spec


REQUIRED_IF = [("state", "present", ["public_key"])]


def check_credential_names(names):
    """The sorted, de-duplicated names; ValueError naming a bad one (names are not secret)."""
    if len(names) > MAX_CREDENTIALS:
        raise ValueError("credentials: at most %d names, got %d" % (MAX_CREDENTIALS, len(names)))
    for name in names:
        if not is_valid("credential_name", name):
            raise ValueError(
                "credentials: %r is not a credential name (%s; names only - the secrets stay at the checkpoint)"
                % (name, RULES["credential_name"][1])
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
