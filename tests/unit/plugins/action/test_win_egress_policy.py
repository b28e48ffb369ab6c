# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""win_egress_policy: install the reconciler and its tasks, run it once, and fail closed on its report."""

from __future__ import annotations

import base64
import json

from ansible_collections.vantage.checkpoint.plugins.action import win_egress_policy
from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_tasks
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_actions import make
from ansible_collections.vantage.checkpoint.tests.unit.plugins.windows_docker_host import FakeDockerExe, ModuleHost

PROVEN = {"rc": 0, "stdout": json.dumps({"leaks": [], "unreachable": []}) + "\n", "stderr": ""}
LEAKED = {"rc": 3, "stdout": json.dumps({"leaks": [{"name": "metadata", "target": "169.254.169.254:80", "result": "connected"}],
                                         "unreachable": []}) + "\n", "stderr": ""}


class WindowsHost:
    """The modules win_egress_policy runs, answered as the host would, with the tasks and files kept between runs."""

    def __init__(self, probes):
        self.tasks = {}
        self.files = {}
        self.probes = probes
        self.applied = set()
        self.commands = []
        self.check_mode = False  # the PowerShell modules change nothing in check mode
        self.restarts = []

    def write(self, args):
        changed = False
        sddl = {}
        for item in args["directories"] + args["files"]:
            if "content" in item and self.files.get(item["path"]) != item["content"]:
                if not self.check_mode:
                    self.files[item["path"]] = item["content"]
                changed = True
            sddl[item["path"]] = item["sddl"].replace("D:P", "D:PAI")
        return {"changed": changed, "pending": [], "sddl": sddl, "revisions": {}}

    def task(self, args):
        name = args["name"]
        answer = {"changed": False, "exported": self.tasks.get(name, {}).get("xml"), "state": self.tasks.get(name, {}).get("state")}
        if args.get("register") and self.check_mode:
            answer["changed"] = True
        elif args.get("register"):
            # Task Scheduler writes durations in its own way and names SYSTEM: the comparison must not care
            xml = args["xml"].replace("<UserId>S-1-5-18</UserId>", "<UserId>SYSTEM</UserId>").replace("PT300S", "PT5M")
            self.tasks[name] = {"xml": '<?xml version="1.0" encoding="UTF-16"?>\n' + xml, "state": "Ready"}
            answer["changed"] = True
        if args.get("restart") and self.tasks[name]["state"] == "Running":
            self.restarts.append(name)
            answer["changed"] = True
        if (args.get("start") or args.get("restart")) and self.tasks[name]["state"] != "Running":
            self.tasks[name]["state"] = "Running"
            answer["changed"] = True
        return answer

    def command(self, args):
        self.commands.append(args["argv"])
        endpoints = []
        for name, probe in sorted(self.probes.items()):
            applied = name not in self.applied
            self.applied.add(name)
            endpoints.append({"container": "vantage-plant-%s" % name, "acls": 12, "applied": applied, "probe": probe,
                              "stopped": probe["rc"] == 3})
        return {"rc": 0, "stdout": json.dumps({"network": "vantage-plant", "errors": [], "endpoints": endpoints}) + "\n", "stderr": ""}

    def modules(self):
        return ModuleHost(FakeDockerExe(), win_checkpoint_files=self.write, win_scheduled_task_xml=self.task, win_command=self.command)


def run(host, check_mode=False, **changes):
    policy = answers.load("egress-policy.json")
    args = dict(checkpoint="plant", instances=["a", "b"], rules=policy["rules"], resolvers=policy["resolvers"],
                host_timeout="3600", refresh_interval="5min", script="# the reconciler\n")
    args.update(changes)
    return make(win_egress_policy, args, host=host.modules(), check_mode=check_mode).run(task_vars={"inventory_hostname": "w22"})


def test_the_policy_is_installed_applied_proven_and_a_second_run_changes_nothing():
    host = WindowsHost({"a": PROVEN, "b": PROVEN})
    result = run(host)
    assert not result.get("failed"), result
    assert result["changed"] is True
    policy = json.loads(base64.b64decode(host.files["C:\\ProgramData\\Vantage\\egress\\plant.json"]))
    assert policy["network"] == "vantage-plant" and policy["block"]["Action"] == "Block"
    assert host.commands[0][-3:] == ["-Policy", "C:\\ProgramData\\Vantage\\egress\\plant.json", "-Verify"]
    assert host.commands[0][:2] == [win_egress_policy.POWERSHELL, "-NoProfile"]
    watch = _windows_tasks.task_fields(host.tasks["Egress plant"]["xml"])
    assert watch["arguments"].endswith("-Watch") and watch["triggers"][0]["type"] == "BootTrigger"
    assert watch["restart_interval"] == 60 and watch["execution_time_limit"] == 0
    assert host.tasks["Egress plant"]["state"] == "Running"
    refresh = _windows_tasks.task_fields(host.tasks["Egress refresh plant"]["xml"])
    assert refresh["triggers"][0]["interval"] == 300 and "-Watch" not in refresh["arguments"]
    again = run(host)
    assert again["changed"] is False and not again.get("failed"), again
    assert host.restarts == []
    # a new version of the reconciler restarts the watching task, so that it runs the new script
    changed = run(host, script="# the reconciler, version 2\n")
    assert changed["changed"] is True and host.restarts == ["Egress plant"]


def test_a_leak_fails_the_play_naming_the_instance_and_the_probe():
    host = WindowsHost({"a": PROVEN, "b": LEAKED})
    result = run(host)
    assert result["failed"] is True
    assert "instance b reached 169.254.169.254:80 (connected): metadata is outside the egress policy" in result["msg"]
    assert "instance b was stopped by the reconciler" in result["msg"]
    assert "instance a" not in result["msg"]


def test_an_instance_the_reconciler_did_not_find_is_not_proven():
    host = WindowsHost({"a": PROVEN})
    result = run(host)
    assert result["failed"] is True and "instance b: no endpoint of container vantage-plant-b" in result["msg"]


def test_check_mode_installs_nothing_and_runs_nothing():
    host = WindowsHost({"a": PROVEN, "b": PROVEN})
    host.check_mode = True
    result = run(host, check_mode=True)
    assert not result.get("failed") and result["changed"] is True
    assert host.commands == [] and host.tasks == {} and host.files == {}


def test_a_bad_policy_or_schedule_is_refused_before_the_host_is_touched():
    host = WindowsHost({})
    result = run(host, rules=[{"name": "x", "cidrs": ["300.0.0.0/8"], "ports": [443]}], refresh_interval="30s",
                 directory="relative\\dir")
    assert result["failed"] is True
    assert "directory must be an absolute Windows path" in result["msg"]
    assert "egress_firewall_refresh_interval must be at least 1min" in result["msg"]
    assert "invalid CIDR '300.0.0.0/8'" in result["msg"]
    assert host.files == {} and host.tasks == {}
