# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Judge a Windows host's engine report on the controller; fail closed with every reason."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_engine, _windows_host
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


class ActionModule(WindowsAction):
    _requires_connection = False
    ARGUMENT_SPEC = dict(
        plan=dict(type="dict", required=True),
        info=dict(type="dict", required=True),
        service_enabled=dict(type="raw", default=True),
    )

    def act(self, args, task_vars):
        plan, info = args["plan"], args["info"]
        enabled = _windows_host.to_bool(args["service_enabled"], "docker_host_service_enabled")
        reasons = _windows_engine.verify_engine(info, plan["engine"], plan["host"], plan["daemon_config"], enabled)
        if reasons:
            raise _windows_host.WindowsHostError(reasons)
        version = _windows_engine.parse_docker_json(info.get("docker_version"), "docker version")[0]
        docker_info = _windows_engine.parse_docker_json(info.get("docker_info"), "docker info")[0]
        return {
            "changed": False,
            "engine": {
                "version": version["Server"].get("Version"),
                "api_version": version["Server"].get("ApiVersion"),
                "os_version": docker_info.get("OSVersion") or docker_info.get("KernelVersion"),
                "isolation": docker_info.get("Isolation"),
                "pipe": plan["engine"]["pipe"],
                "pipe_sddl": (info.get("pipe") or {}).get("sddl"),
                "tcp_listeners": info.get("tcp_listeners"),
            },
        }

    @staticmethod
    def failure_message(reasons):
        return "The container engine failed its self-check, so nothing will run on it: %s" % "; ".join(reasons)
