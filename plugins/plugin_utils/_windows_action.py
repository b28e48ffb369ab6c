# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the collection's Windows action plugins share: validated arguments, running a module on the
host, and failing closed with every reason listed."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.vantage.checkpoint.plugins.module_utils._windows_docker import DockerCli
from ansible_collections.vantage.checkpoint.plugins.module_utils._windows_host import WindowsHostError


class WindowsAction(ActionBase):
    """Base of the Windows action plugins. Subclasses implement :meth:`act`."""

    TRANSFERS_FILES = False
    ARGUMENT_SPEC = {}

    def run(self, tmp=None, task_vars=None):
        result = super(WindowsAction, self).run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)[1]
        try:
            result.update(self.act(args, task_vars or {}))
        except WindowsHostError as exc:
            result.update(failed=True, changed=False, reasons=exc.reasons, msg=self.failure_message(exc.reasons))
        return result

    def act(self, args, task_vars):
        raise NotImplementedError

    @staticmethod
    def failure_message(reasons):
        return "Refused, nothing was changed by this task: %s" % "; ".join(reasons)

    @staticmethod
    def facts(args, task_vars):
        """The host facts: the ``facts`` argument when given, else the gathered ``ansible_facts``."""
        return args.get("facts") or task_vars.get("ansible_facts") or {}

    def run_module(self, name, module_args, task_vars):
        """Run one of the collection's (or ansible.windows') modules on the host; fail the task if it failed."""
        result = self._execute_module(module_name=name, module_args=module_args, task_vars=task_vars)
        if result.get("failed"):
            raise AnsibleActionFail("%s failed: %s" % (name, result.get("msg", "no message")), result=result)
        return result

    def docker_cli(self, docker, task_vars):
        """The engine interface on the host's ``docker.exe`` (``_windows_docker.DockerCli``): each call runs
        ``win_docker_exec`` once; in check mode only commands that read are sent."""

        def run(argv):
            result = self._execute_module(module_name="vantage.checkpoint.win_docker_exec",
                                          module_args=dict(argv=list(argv), docker=docker or None), task_vars=task_vars)
            if "rc" not in result:
                raise AnsibleActionFail("win_docker_exec failed: %s" % result.get("msg", "no message"), result=result)
            return dict(rc=result["rc"], stdout=result.get("stdout") or "", stderr=result.get("stderr") or "")

        return DockerCli(run, check_mode=self._task.check_mode)
