# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run a checkpoint's instances on a Windows host: the same manager as ``checkpoint_container``, on ``docker.exe``.

The desired state, the fingerprint label, the one-at-a-time replacement behind the health gate and the
rollback are ``_container_deploy.CheckpointDeployment``'s, with the Windows option model
(``_windows_container.WindowsCheckpointSpec``) and the Windows engine backend (``_windows_docker.DockerCli``).
Before anything changes, the image must be the pinned one built for the host's Windows build; after the
run, every instance is read back and must be process-isolated, run as ContainerUser and mount nothing
but its two directories - otherwise the task fails.
"""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host
from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    HEALTHCHECK_DEFAULTS,
    RESTART_POLICIES,
    SpecError,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_deploy import (
    CheckpointDeployment,
    DeployError,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import EngineError
from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import CONTAINER_DEFAULTS, container_name
from ansible_collections.vantage.checkpoint.plugins.module_utils._windows_container import (
    CONTAINER_USER,
    INSTANCE_OPTIONS,
    WindowsCheckpointSpec,
    instance_reasons,
)
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        facts=dict(type="dict"),
        docker=dict(type="str", default=""),
        checkpoint=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        instances=dict(type="list", elements="dict", options=INSTANCE_OPTIONS),
        image=dict(type="str"),
        control_plane_url=dict(type="str"),
        ca_bundle=dict(type="bool", default=False),
        credentials=dict(type="bool", default=False),
        credentials_revisions=dict(type="dict", default={}),
        env=dict(type="dict"),
        network=dict(type="str"),
        user=dict(type="str", default=CONTAINER_USER),
        isolation=dict(type="str", default="process"),
        memory=dict(type="str", default=CONTAINER_DEFAULTS["memory"]),
        cpus=dict(type="float", default=CONTAINER_DEFAULTS["cpus"]),
        extra_hosts=dict(type="dict", default={}),
        restart_policy=dict(type="str", default="unless-stopped", choices=RESTART_POLICIES),
        log_max_size=dict(type="str", default="10m"),
        log_max_file=dict(type="int", default=3),
        stop_timeout=dict(type="int", default=15),
        health_timeout=dict(type="int", default=CONTAINER_DEFAULTS["health_timeout"]),
        healthcheck=dict(type="dict", options=dict(
            test=dict(type="list", elements="str"),
            interval=dict(type="int", default=HEALTHCHECK_DEFAULTS["interval"]),
            timeout=dict(type="int", default=HEALTHCHECK_DEFAULTS["timeout"]),
            retries=dict(type="int", default=HEALTHCHECK_DEFAULTS["retries"]),
            start_period=dict(type="int", default=HEALTHCHECK_DEFAULTS["start_period"]),
        )),
    )

    def act(self, args, task_vars):
        host = _windows_host.host_platform(self.facts(args, task_vars))
        try:
            spec = WindowsCheckpointSpec(args)
        except SpecError as exc:
            raise _windows_host.WindowsHostError([str(exc)])
        engine = self.docker_cli(args["docker"], task_vars)
        try:
            if spec.state == "present":
                self.check_image(engine, spec, host)
            result = CheckpointDeployment(spec, engine, self._task.check_mode).run()
        except EngineError as exc:
            return dict(failed=True, changed=False, msg=str(exc))
        except DeployError as exc:
            return dict(exc.result, failed=True, msg=str(exc))
        if spec.state == "present" and not self._task.check_mode:
            reasons = []
            for instance in spec.instances:
                reasons.extend(instance_reasons(spec, instance, engine.container(container_name(spec.checkpoint, instance["name"]))))
            if reasons:
                return dict(result, failed=True, reasons=reasons,
                            msg="The instances do not run as a Windows checkpoint must, so the task fails: %s" % "; ".join(reasons))
        if not self._task.diff:
            result.pop("diff", None)
        return result

    def check_image(self, engine, spec, host):
        """The pinned image, pulled when missing (not in check mode), must be built for the host's build."""
        reference = spec.image.reference
        inspect = engine.image(reference)
        if inspect is None and spec.image.pullable and not self._task.check_mode:
            engine.pull(spec.image.repository, spec.image.digest)
            inspect = engine.image(reference)
        if inspect is not None:
            _windows_host.check_image(inspect, spec.image.text, host)
