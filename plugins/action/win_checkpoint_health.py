# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``checkpoint_health`` for a Windows host: the same verdict (``_health.HealthCheck``), asked from the controller.

The control plane is asked exactly as ``checkpoint_health`` asks it (from the controller, which must reach
it). The host side - each instance's container, its health, the image it runs, its identity key and the
host's clock - is read through ``docker.exe`` (``_windows_docker.DockerCli``) and ``win_acl_report``: the
identity key must have exactly its access list (``_windows_sddl`` policy ``key_file``) instead of mode
0600, and the container must be process-isolated, run as ContainerUser and mount no named pipe.
"""

from __future__ import annotations

import time

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_sddl
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import health_state
from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import container_name
from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import ControlPlaneClient
from ansible_collections.vantage.checkpoint.plugins.module_utils._health import HealthCheck, argument_spec, local_findings
from ansible_collections.vantage.checkpoint.plugins.module_utils._windows_container import container_reasons
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


class Done(Exception):
    """``HealthCheck`` ended (``exit_json`` or ``fail_json``) with ``result``."""

    def __init__(self, result):
        super(Done, self).__init__(result.get("msg", ""))
        self.result = result


class Options(object):
    """What ``HealthCheck`` uses of an ``AnsibleModule``: the options and the two ways to end."""

    _name = "win_checkpoint_health"

    def __init__(self, params):
        self.params = params

    @staticmethod
    def fail_json(**result):
        raise Done(dict(result, failed=True))

    @staticmethod
    def exit_json(**result):
        raise Done(result)


class WindowsHealthCheck(HealthCheck):
    """``HealthCheck`` whose host side is a Windows host reached through the action plugin."""

    def __init__(self, module, client, engine, read_host, **kwargs):
        self.windows_engine = engine
        self.read_host = read_host
        super(WindowsHealthCheck, self).__init__(module, client, **kwargs)

    def connect_engine(self, docker_host):
        return self.windows_engine, health_state

    def clock_offset(self):
        """The host's clock minus the control plane's: (host - controller) + (controller - control plane)."""
        controller = super(WindowsHealthCheck, self).clock_offset()
        started = time.time()
        answer = self.read_host([])
        finished = time.time()
        if controller is None or not isinstance(answer.get("now_ms"), int):
            return None
        return controller + answer["now_ms"] / 1000.0 - (started + finished) / 2.0

    def inspect(self, name):
        container = self.engine.container(container_name(self.checkpoint, name))
        image = self.engine.image(container["Image"]) if container is not None and container.get("Image") else None
        local, reasons = local_findings(self.checkpoint, name, container, image, None,
                                        health_state(container) if container is not None else "missing")
        if container is None:
            return local, reasons
        reasons.extend(container_reasons(name, container))
        key = local.get("identity_key")
        if key:
            sddl = (self.read_host([key]).get("sddl") or {}).get(key)
            local["identity_key_sddl"] = sddl
            if sddl is None:
                reasons.append("instance %s: identity key %s cannot be read on the host" % (name, key))
            else:
                reasons.extend(_windows_sddl.check_policy("key_file", sddl, "instance %s: identity key %s" % (name, key)))
        return local, reasons


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict((key, value) for key, value in argument_spec().items() if key != "docker_host")
    ARGUMENT_SPEC["docker"] = dict(type="str", default="")

    def act(self, args, task_vars):
        options = Options(dict(args, docker_host=None))
        engine = self.docker_cli(args["docker"], task_vars)

        def read_host(paths):
            return self.run_module("vantage.checkpoint.win_acl_report", dict(paths=list(paths)), task_vars)

        try:
            client = ControlPlaneClient.from_module(options)
            WindowsHealthCheck(options, client, engine, read_host).run()
        except Done as done:
            return done.result
        return dict(failed=True, msg="the health check ended without a result")
