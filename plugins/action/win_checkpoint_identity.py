# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Create or read an instance's identity key on a Windows host with the checkpoint image; fail closed."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host, _windows_identity, _windows_sddl
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        path=dict(type="str", required=True),
        image=dict(type="str", required=True),
        docker=dict(type="str", default=""),
    )

    def act(self, args, task_vars):
        if not _windows_host.is_windows_path(args["path"]):
            raise _windows_host.WindowsHostError(["path must be an absolute Windows path, got %r" % args["path"]])
        result = self.run_module("vantage.checkpoint.win_checkpoint_identity", dict(
            path=args["path"], image=args["image"], docker=args["docker"] or None,
            directory_sddl=_windows_sddl.KEY_DIRECTORY, file_sddl=_windows_sddl.KEY_FILE,
            keygen_sddl=_windows_sddl.KEYGEN_DIRECTORY), task_vars)
        identity, reasons = _windows_identity.check_identity(result, check_mode=self._task.check_mode)
        if reasons:
            raise _windows_host.WindowsHostError(reasons)
        answer = {"changed": result.get("changed", False), "path": args["path"], "created": result.get("created", False)}
        if identity is not None:
            answer.update(public_key=identity["public_key"], key_id=identity["key_id"])
        return answer

    @staticmethod
    def failure_message(reasons):
        return "The instance's identity key failed its self-check and must not be used: %s" % "; ".join(reasons)
