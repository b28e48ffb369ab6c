# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Decide, on the controller, what docker_host does to a Windows host, or refuse with every reason."""

from __future__ import annotations

import ntpath

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_engine, _windows_host
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction

ENGINE_OPTIONS = ("engine_source", "engine_version", "engine_sha256", "engine_url", "engine_src", "install_dir",
                  "isolation", "pipe_group", "allow_reboot", "reboot_timeout")
DAEMON_OPTIONS = ("log_driver", "log_max_size", "log_max_file", "insecure_registries", "registry_mirrors",
                  "data_root", "daemon_options")


class ActionModule(WindowsAction):
    _requires_connection = False
    ARGUMENT_SPEC = dict(
        facts=dict(type="dict"),
        engine_info=dict(type="dict", required=True),
        engine_source=dict(type="str", default="static"),
        engine_version=dict(type="str", default=""),
        engine_sha256=dict(type="str", default=""),
        engine_url=dict(type="str", default=""),
        engine_src=dict(type="str", default=""),
        install_dir=dict(type="str", default="C:\\Program Files\\docker"),
        isolation=dict(type="str", default="process"),
        pipe_group=dict(type="str", default=""),
        allow_reboot=dict(type="raw", default=True),
        reboot_timeout=dict(type="raw", default=1800),
        log_driver=dict(type="str", default="json-file"),
        log_max_size=dict(type="str", default="10m"),
        log_max_file=dict(type="raw", default=3),
        insecure_registries=dict(type="list", elements="str", default=[]),
        registry_mirrors=dict(type="list", elements="str", default=[]),
        data_root=dict(type="str", default=""),
        daemon_options=dict(type="dict", default={}),
    )

    def act(self, args, task_vars):
        info = args["engine_info"]
        reasons = _windows_host.Reasons()
        host = reasons.attempt(_windows_host.host_platform, self.facts(args, task_vars))
        engine = reasons.attempt(_windows_host.engine_settings, dict((k, args[k]) for k in ENGINE_OPTIONS))
        config = containers = None
        if engine is not None:
            config = reasons.attempt(_windows_host.daemon_config, dict((k, args[k]) for k in DAEMON_OPTIONS), engine)
            containers = reasons.attempt(_windows_host.reboot_plan, info.get("containers_feature"), engine["allow_reboot"])
            if engine["source"] == "preinstalled" and not (info.get("service") or {}).get("exists"):
                reasons.items.append(
                    "docker_host_windows_engine_source=preinstalled but the host has no service named %s: install the "
                    "engine (for example Mirantis Container Runtime) first, or use the static source" % engine["service"])
        reasons.raise_any()

        if engine["source"] == "static":
            current, install_reason = _windows_engine.installed_engine(info, engine)
        else:
            current, install_reason = True, "the engine is managed outside this role (preinstalled)"
        daemon_json = info.get("daemon_json_path") or "C:\\ProgramData\\docker\\config\\daemon.json"
        return {
            "changed": False,
            "plan": {
                "host": host,
                "engine": engine,
                "daemon_config": config,
                "daemon_json": daemon_json,
                "config_dir": ntpath.dirname(daemon_json),
                "containers": containers,
                "install_needed": not current,
                "install_reason": install_reason,
            },
        }
