# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Schedule a Windows checkpoint's updates and the host's Windows Update, decided on the controller (``_windows_update``)."""

from __future__ import annotations

import base64

from ansible_collections.vantage.checkpoint.plugins.module_utils import (
    _windows_checkpoint,
    _windows_host,
    _windows_sddl,
    _windows_tasks,
    _windows_update,
)
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


def _file(path, text):
    return dict(path=path, sddl=_windows_sddl.ADMIN_ONLY_FILE, policy="admin_only_file",
                content=base64.b64encode(text.encode("utf-8")).decode("ascii"))


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        checkpoint=dict(type="str", required=True),
        instances=dict(type="list", elements="str", required=True),
        channel=dict(type="str", default="stable"),
        control_plane_url=dict(type="str", required=True),
        api_token=dict(type="str", required=True, no_log=True),
        ca=dict(type="bool", default=False),
        validate_certs=dict(type="raw", default=True),
        health_timeout=dict(type="raw", default=180),
        gate_timeout=dict(type="raw", default=300),
        schedule=dict(type="str", default="daily 04:00"),
        randomized_delay=dict(type="str", default="1h"),
        max_interval_days=dict(type="raw", default=14),
        enabled=dict(type="raw", default=True),
        config_dir=dict(type="str", default=""),
        state_dir=dict(type="str", default=""),
        bin_dir=dict(type="str", default="C:\\ProgramData\\Vantage\\bin"),
        lock_dir=dict(type="str", default="C:\\ProgramData\\Vantage\\lock"),
        script=dict(type="str", required=True),
        docker=dict(type="str", default=""),
        os_updates=dict(type="raw", default=True),
        os_reboot=dict(type="raw", default=False),
        os_update_hour=dict(type="raw", default=3),
    )

    def act(self, args, task_vars):
        if not args["api_token"].strip():
            raise _windows_host.WindowsHostError(["auto_update_api_token is empty"])
        plan = _windows_update.update_plan(args)
        layout = plan["layout"]
        files = {
            "directories": [dict(path=path, sddl=_windows_sddl.ADMIN_ONLY_DIRECTORY, policy="admin_only_directory")
                            for path in (args["bin_dir"], args["lock_dir"], layout["config_dir"], layout["state_dir"])],
            "files": [_file(plan["script"], args["script"]), _file(layout["update_config"], plan["update_conf"]),
                      _file(layout["update_token"], args["api_token"].strip() + "\n")],
            "remove": [],
        }
        report = self.run_module("vantage.checkpoint.win_checkpoint_files", dict(
            directories=[dict(path=d["path"], sddl=d["sddl"]) for d in files["directories"]],
            files=[dict(path=f["path"], content=f["content"], sddl=f["sddl"]) for f in files["files"]],
            remove=[], revisions=[]), task_vars)
        problems = _windows_checkpoint.check_report(files, report, check_mode=self._task.check_mode)
        if problems:
            raise _windows_host.WindowsHostError(problems)
        changed = bool(report.get("changed"))
        task = dict(path=_windows_update.TASK_PATH, name=plan["task_name"])
        current = self.run_module("vantage.checkpoint.win_scheduled_task_xml", task, task_vars)
        if not _windows_tasks.same_task(current.get("exported"), plan["task_xml"]):
            self.run_module("vantage.checkpoint.win_scheduled_task_xml", dict(task, xml=plan["task_xml"], register=True),
                            task_vars)
            changed = True
        for value in plan["windows_update"]:
            result = self.run_module("ansible.windows.win_regedit", value, task_vars)
            changed = changed or bool(result.get("changed"))
        return {"changed": changed, "task": task["path"] + task["name"], "schedule": plan["schedule"],
                "longest_gap_days": plan["longest_gap_days"], "update_config": layout["update_config"],
                "windows_update": plan["windows_update"]}
