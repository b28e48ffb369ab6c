# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A directory on a Windows host with exactly the access list of a named policy, checked after it is set."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host, _windows_sddl
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction

DIRECTORY_POLICIES = ("admin_only_directory", "key_directory")


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        path=dict(type="str", required=True),
        policy=dict(type="str", default="admin_only_directory", choices=list(DIRECTORY_POLICIES)),
    )

    def act(self, args, task_vars):
        if not _windows_host.is_windows_path(args["path"]):
            raise _windows_host.WindowsHostError(["path must be an absolute Windows path, got %r" % args["path"]])
        sddl = _windows_sddl.POLICIES[args["policy"]]["sddl"]
        result = self.run_module("vantage.checkpoint.win_secure_directory", dict(path=args["path"], sddl=sddl), task_vars)
        reasons = []
        if not (self._task.check_mode and result.get("changed")):
            reasons = _windows_sddl.check_policy(args["policy"], result.get("sddl"), "the directory %s" % args["path"])
        if reasons:
            raise _windows_host.WindowsHostError(reasons)
        return {"changed": result.get("changed", False), "path": args["path"], "created": result.get("created", []),
                "sddl": result.get("sddl"), "policy": args["policy"]}

    @staticmethod
    def failure_message(reasons):
        return "The directory's access list is not what was set, so nothing will be stored in it: %s" % "; ".join(reasons)
