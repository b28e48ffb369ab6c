# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A Windows checkpoint's egress policy: rendered as HNS endpoint ACLs on the controller, kept applied by a
reconciler on the host, and proven from inside every instance before the task succeeds (``_windows_egress``)."""

from __future__ import annotations

import base64
import json
import ntpath

from ansible.errors import AnsibleActionFail

from ansible_collections.vantage.checkpoint.plugins.module_utils import (
    _windows_checkpoint,
    _windows_egress,
    _windows_host,
    _windows_sddl,
    _windows_tasks,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import container_name, default_network
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction

POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
SCRIPT = "vantage-egress.ps1"
TASK_PATH = "\\Vantage\\"


def quote(value):
    """A value for the task's command line (the paths the role uses contain no double quotes)."""
    if '"' in value:
        raise _windows_host.WindowsHostError(["%r cannot be quoted on a command line" % value])
    return '"%s"' % value


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        checkpoint=dict(type="str", required=True),
        network=dict(type="str"),
        instances=dict(type="list", elements="str", required=True),
        rules=dict(type="list", elements="dict", required=True),
        resolvers=dict(type="list", elements="str", default=[]),
        host_timeout=dict(type="raw", default=3600),
        refresh_interval=dict(type="str", default="5min"),
        directory=dict(type="str", default="C:\\ProgramData\\Vantage\\egress"),
        bin_dir=dict(type="str", default="C:\\ProgramData\\Vantage\\bin"),
        script=dict(type="str", required=True),
        python=dict(type="str", default=_windows_egress.IMAGE_PYTHON),
        docker=dict(type="str", default=""),
    )

    def act(self, args, task_vars):
        reasons = []
        for key in ("directory", "bin_dir"):
            if not _windows_host.is_windows_path(args[key]):
                reasons.append("%s must be an absolute Windows path, got %r" % (key, args[key]))
        try:
            refresh = _windows_tasks.duration(args["refresh_interval"], "egress_firewall_refresh_interval")
            if refresh is None or _windows_tasks.iso_seconds(refresh) < 60:
                reasons.append("egress_firewall_refresh_interval must be at least 1min on Windows (Task Scheduler), "
                               "got %r" % args["refresh_interval"])
        except _windows_tasks.TaskError as exc:
            reasons.append(str(exc))
        network = args["network"] or default_network(args["checkpoint"])
        try:
            document = _windows_egress.render([dict((k, v) for k, v in rule.items() if v is not None) for rule in args["rules"]],
                                              args["resolvers"], args["checkpoint"], network,
                                              _windows_host.to_int(args["host_timeout"], "egress_firewall_host_timeout", 60))
            document["probe_argv"] = _windows_egress.probe_argv(document["probe"], args["python"])
        except (_windows_egress.EgressError, _windows_host.WindowsHostError) as exc:
            reasons.extend(getattr(exc, "problems", None) or exc.reasons)
        if reasons:
            raise _windows_host.WindowsHostError(reasons)

        script = ntpath.join(args["bin_dir"], SCRIPT)
        policy = ntpath.join(args["directory"], "%s.json" % args["checkpoint"])
        installed = self.install(args, task_vars, script, policy, document)
        changed = installed
        command = "-NoProfile -NonInteractive -ExecutionPolicy Bypass -File %s -Policy %s%s" % (
            quote(script), quote(policy), " -Docker %s" % quote(args["docker"]) if args["docker"] else "")
        tasks = [
            ("Egress %s" % args["checkpoint"], _windows_tasks.task_xml(
                "Vantage: keep the egress ACLs of checkpoint %s on its container endpoints" % args["checkpoint"],
                POWERSHELL, command + " -Watch", [{"type": "boot"}], "PT0S", restart_interval="PT1M"), True),
            ("Egress refresh %s" % args["checkpoint"], _windows_tasks.task_xml(
                "Vantage: resolve the egress policy's names of checkpoint %s again and re-apply" % args["checkpoint"],
                POWERSHELL, command, [{"type": "repeat", "interval": refresh}], "PT10M"), False),
        ]
        for name, xml, start in tasks:
            changed = self.register(name, xml, start, installed, task_vars) or changed
        result = {"changed": changed, "policy": policy, "network": network, "acls": len(document["acls"]),
                  "hosts": sorted(set(item["host"] for item in document["hosts"])), "skipped": document["skipped"],
                  "probe": document["probe"]}
        if self._task.check_mode:
            return result
        report = self.reconcile(script, policy, args["docker"], task_vars)
        result["report"] = report
        result["changed"] = changed or any(item.get("applied") for item in report.get("endpoints") or [])
        problems = _windows_egress.judge_report(
            report, [(name, container_name(args["checkpoint"], name)) for name in args["instances"]])
        if problems:
            return dict(result, failed=True, reasons=problems, msg=(
                "The egress policy of checkpoint %s is not proven on %s, so the play fails (an instance that leaked "
                "was stopped): %s" % (args["checkpoint"], task_vars.get("inventory_hostname", "the host"), "; ".join(problems))))
        return result

    def install(self, args, task_vars, script, policy, document):
        """The reconciler and the policy, in directories only SYSTEM and Administrators may change."""
        plan = {
            "directories": [dict(path=path, sddl=_windows_sddl.ADMIN_ONLY_DIRECTORY, policy="admin_only_directory")
                            for path in (args["bin_dir"], args["directory"])],
            "files": [dict(path=path, sddl=_windows_sddl.ADMIN_ONLY_FILE, policy="admin_only_file",
                           content=base64.b64encode(text.encode("utf-8")).decode("ascii"))
                      for path, text in ((script, args["script"]),
                                         (policy, json.dumps(document, indent=2, sort_keys=True) + "\n"))],
            "remove": [],
        }
        report = self.run_module("vantage.checkpoint.win_checkpoint_files", dict(
            directories=[dict(path=d["path"], sddl=d["sddl"]) for d in plan["directories"]],
            files=[dict(path=f["path"], content=f["content"], sddl=f["sddl"]) for f in plan["files"]],
            remove=[], revisions=[]), task_vars)
        problems = _windows_checkpoint.check_report(plan, report, check_mode=self._task.check_mode)
        if problems:
            raise _windows_host.WindowsHostError(problems)
        return bool(report.get("changed"))

    def register(self, name, xml, start, restart, task_vars):
        """The task as rendered; a task to ``start`` is started when it does not run, and restarted when the
        script or policy it runs changed (``restart``)."""
        current = self.run_module("vantage.checkpoint.win_scheduled_task_xml",
                                  dict(path=TASK_PATH, name=name), task_vars)
        changed = False
        if not _windows_tasks.same_task(current.get("exported"), xml):
            self.run_module("vantage.checkpoint.win_scheduled_task_xml",
                            dict(path=TASK_PATH, name=name, xml=xml, register=True), task_vars)
            changed = True
        if start and not self._task.check_mode and (changed or restart or current.get("state") != "Running"):
            started = self.run_module("vantage.checkpoint.win_scheduled_task_xml",
                                      dict(path=TASK_PATH, name=name, restart=True), task_vars)
            changed = changed or bool(started.get("changed"))
        return changed

    def reconcile(self, script, policy, docker, task_vars):
        """One pass of the reconciler with every instance probed; its JSON report."""
        argv = [POWERSHELL, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", script,
                "-Policy", policy, "-Verify"]
        if docker:
            argv += ["-Docker", docker]
        result = self._execute_module(module_name="ansible.windows.win_command", module_args=dict(argv=argv),
                                      task_vars=task_vars)
        lines = [line for line in str(result.get("stdout") or "").splitlines() if line.strip()]
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            raise AnsibleActionFail("the egress reconciler printed no report (exit %s): %s" % (
                result.get("rc"), str(result.get("stderr") or result.get("msg") or "")[-1000:]))

    @staticmethod
    def failure_message(reasons):
        return "The egress policy was refused, nothing was changed by this task: %s" % "; ".join(reasons)
