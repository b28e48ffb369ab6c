# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Decide, on the controller, where a checkpoint lives on a Windows host and which image it runs."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract, _windows_checkpoint, _windows_host
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


def _check_settings(args):
    """The names and the control-plane URL by the collection's one set of rules (module_utils/_contract.py)."""
    reasons = []
    checks = [("name", args["checkpoint"], "checkpoint_name")]
    checks.extend(("name", instance, "checkpoint_instances entry") for instance in args["instances"])
    for rule, value, what in checks:
        try:
            _contract.check(rule, value, what)
        except _contract.ContractError as exc:
            reasons.append(str(exc))
    if not args["instances"]:
        reasons.append("checkpoint_instances must list at least one instance")
    url = None
    if args["control_plane_url"] is not None:
        try:
            url = _contract.control_plane_url(args["control_plane_url"], "checkpoint_control_plane_url")
        except _contract.ContractError as exc:
            reasons.append(str(exc))
    return url, reasons


def signing_keys(answer, url, trusted_key_ids):
    """The pinned keys from the controller's ``GET /api/v1/signing-keys`` (an ``ansible.builtin.uri`` result)."""
    if answer.get("status") != 200:
        raise _windows_checkpoint.FilesError([
            "cannot reach the control plane at %s from the controller: %s (HTTP status %s)"
            % (url, answer.get("msg") or "no answer", answer.get("status", -1))])
    return _windows_checkpoint.pinned_keys(answer.get("json"), trusted_key_ids)


class ActionModule(WindowsAction):
    _requires_connection = False
    ARGUMENT_SPEC = dict(
        facts=dict(type="dict"),
        checkpoint=dict(type="str", required=True),
        instances=dict(type="list", elements="str", required=True),
        image=dict(type="str", default=""),
        windows_images=dict(type="dict", default={}),
        config_dir=dict(type="str", default=""),
        state_dir=dict(type="str", default=""),
        control_plane_url=dict(type="str"),
        signing_keys=dict(type="dict"),
        trusted_key_ids=dict(type="list", elements="str"),
        credentials=dict(type="dict", default={}, no_log=True),
    )

    def act(self, args, task_vars):
        reasons = _windows_host.Reasons()
        host = reasons.attempt(_windows_host.host_platform, self.facts(args, task_vars))
        url, problems = _check_settings(args)
        reasons.items.extend(problems)
        image = None
        if host is not None:
            image = reasons.attempt(_windows_host.select_image, host["ltsc"], args["image"], args["windows_images"])
        keys = None
        if args["signing_keys"] is not None:
            keys = reasons.attempt(self.checked, signing_keys, args["signing_keys"], url, args["trusted_key_ids"])
        credentials = reasons.attempt(self.checked, _windows_checkpoint.clean_credentials, args["credentials"])
        reasons.raise_any()
        layout = _contract.host_layout(
            args["checkpoint"], args["instances"], platform="windows",
            config_dir=args["config_dir"] if _windows_host.is_windows_path(args["config_dir"]) else None,
            state_dir=args["state_dir"] if _windows_host.is_windows_path(args["state_dir"]) else None)
        plan = {"host": host, "image": image["image"], "image_source": image["source"], "layout": layout,
                "control_plane_url": url, "credential_names": sorted(credentials or {}),
                "instances": [dict(name=name, config_dir=layout["instances"][name]["config_dir"],
                                   state_dir=layout["instances"][name]["state_dir"]) for name in args["instances"]]}
        if keys is not None:
            plan["keys"] = keys
        return {"changed": False, "plan": plan}

    @staticmethod
    def checked(check, *values):
        try:
            return check(*values)
        except _windows_checkpoint.FilesError as exc:
            raise _windows_host.WindowsHostError(exc.reasons)
