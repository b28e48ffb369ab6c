# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write a checkpoint's pinned keys, CA, credentials and state directories on a Windows host, with their access
lists, and check every list read back (``_windows_checkpoint``); fail closed."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_checkpoint, _windows_host
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        layout=dict(type="dict", required=True),
        instances=dict(type="list", elements="str", required=True),
        keys=dict(type="list", elements="dict", required=True),
        ca_cert=dict(type="str", default=""),
        credentials=dict(type="dict", default={}, no_log=True),
    )

    def act(self, args, task_vars):
        keys = args["keys"]
        if not keys:
            raise _windows_host.WindowsHostError(["keys is empty: no signing key would be trusted"])
        credentials = self.checked(_windows_checkpoint.clean_credentials, args["credentials"])
        plan = _windows_checkpoint.files_plan(args["layout"], args["instances"], keys, args["ca_cert"], credentials)
        report = self.run_module("vantage.checkpoint.win_checkpoint_files", dict(
            directories=[dict(path=d["path"], sddl=d["sddl"]) for d in plan["directories"]],
            files=[dict(path=f["path"], content=f["content"], sddl=f["sddl"]) for f in plan["files"]],
            remove=plan["remove"], revisions=plan["revisions"]), task_vars)
        problems = _windows_checkpoint.check_report(plan, report, check_mode=self._task.check_mode)
        if problems:
            raise _windows_host.WindowsHostError(problems)
        return {
            "changed": bool(report.get("changed")),
            "trusted_keys": [key["keyid"] for key in keys],
            "ca_bundle": bool(args["ca_cert"]),
            "credentials": bool(credentials),
            "credential_names": sorted(credentials),
            "credentials_revisions": report.get("revisions") or {},
            "written": sorted(report.get("pending") or []),
        }

    @staticmethod
    def checked(check, *values):
        try:
            return check(*values)
        except _windows_checkpoint.FilesError as exc:
            raise _windows_host.WindowsHostError(exc.reasons)

    @staticmethod
    def failure_message(reasons):
        return "The checkpoint's files on the host are not what they must be, so no instance will use them: %s" % "; ".join(reasons)
