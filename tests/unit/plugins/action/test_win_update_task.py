# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Scheduled updates of a Windows host: the schedule check, the task definition field by field, update.conf,
the Windows Update policy, and win_update_task over a simulated host."""

from __future__ import annotations

import base64
from xml.etree import ElementTree

import pytest

from ansible_collections.vantage.checkpoint.plugins.action import win_update_task
from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host, _windows_tasks, _windows_update
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_actions import make
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_egress_policy import WindowsHost

NS = {"t": _windows_tasks.NAMESPACE}


def params(**changes):
    values = dict(checkpoint="plant", instances=["a", "b"], channel="stable-ltsc2022",
                  control_plane_url="https://cp.example.com:8443/", ca=True, validate_certs="true", health_timeout="180",
                  gate_timeout=300, schedule="daily 04:00", randomized_delay="1h", max_interval_days="14", enabled="yes",
                  config_dir="/etc/vantage/checkpoints", state_dir="", bin_dir="C:\\ProgramData\\Vantage\\bin",
                  lock_dir="C:\\ProgramData\\Vantage\\lock", docker="", os_updates=True, os_reboot="false",
                  os_update_hour="3")
    values.update(changes)
    return values


def test_the_task_definition_field_by_field():
    plan = _windows_update.update_plan(params())
    root = ElementTree.fromstring(plan["task_xml"])

    def text(path):
        return root.find(path, NS).text

    assert root.tag == "{%s}Task" % _windows_tasks.NAMESPACE
    assert text("t:Principals/t:Principal/t:UserId") == "S-1-5-18"  # SYSTEM
    assert text("t:Principals/t:Principal/t:RunLevel") == "HighestAvailable"
    assert text("t:Settings/t:MultipleInstancesPolicy") == "IgnoreNew"  # no overlapping runs
    assert text("t:Settings/t:StartWhenAvailable") == "true"  # a missed run is made up (Persistent=true)
    assert text("t:Settings/t:Enabled") == "true"
    assert text("t:Settings/t:DisallowStartIfOnBatteries") == "false"
    # (gate 300 + 2 x health 180) x 2 instances x 2 + 600 s = 54 min, as the Linux unit's TimeoutStartSec
    assert text("t:Settings/t:ExecutionTimeLimit") == "PT54M"
    trigger = root.find("t:Triggers/t:CalendarTrigger", NS)
    assert len(root.find("t:Triggers", NS)) == 1
    assert trigger.find("t:StartBoundary", NS).text == "2025-01-01T04:00:00"
    assert trigger.find("t:RandomDelay", NS).text == "PT1H"
    assert trigger.find("t:ScheduleByDay/t:DaysInterval", NS).text == "1"
    assert text("t:Actions/t:Exec/t:Command") == "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    assert text("t:Actions/t:Exec/t:Arguments") == (
        '-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "C:\\ProgramData\\Vantage\\bin\\vantage-checkpoint-update.ps1" '
        '-Config "C:\\ProgramData\\Vantage\\checkpoints\\plant\\update.conf"')
    assert plan["task_name"] == "Update plant" and plan["longest_gap_days"] == 1


@pytest.mark.parametrize("schedule, gap", [
    ("daily 04:00", 1), ("every 14 days 23:59", 14), ("weekly mon,thu 02:30", 4), ("weekly sun", 7),
    ("weekly mon,tue,wed,thu,fri,sat,sun 00:00", 1),
])
def test_schedules_up_to_two_weeks_apart_are_accepted(schedule, gap):
    plan = _windows_update.update_plan(params(schedule=schedule))
    assert plan["longest_gap_days"] == gap


@pytest.mark.parametrize("schedule, max_days, words", [
    ("every 15 days 04:00", 14, "leaves up to 15 days between runs"),
    ("weekly sun", 5, "leaves up to 7 days between runs"),
    ("*-*-* 04:00:00", 14, "must be 'daily HH:MM'"),
    ("daily 25:00", 14, "is not a time of day"),
    ("weekly mon,xyz 04:00", 14, "names unknown days xyz"),
])
def test_schedules_that_run_too_rarely_or_do_not_parse_are_refused(schedule, max_days, words):
    with pytest.raises(_windows_host.WindowsHostError) as refused:
        _windows_update.update_plan(params(schedule=schedule, max_interval_days=max_days))
    assert words in str(refused.value)


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(_windows_host.WindowsHostError) as refused:
        _windows_update.update_plan(params(checkpoint="Plant", channel="", control_plane_url="http://cp.example.com",
                                           max_interval_days="30", randomized_delay="soon", enabled="maybe",
                                           os_update_hour="24", lock_dir="lock", instances=[]))
    text = str(refused.value)
    for words in ("auto_update_checkpoint_name must be", "auto_update_channel must be", "auto_update_control_plane_url must be",
                  "auto_update_max_interval_days must be at most 14", "auto_update_randomized_delay must be a time span",
                  "auto_update_enabled must be true or false", "auto_update_os_update_hour must be at most 23",
                  "auto_update_windows_lock_dir must be an absolute Windows path", "auto_update_instances must list"):
        assert words in text, words


def test_update_conf_points_the_engine_at_the_pipe_and_the_lock_directory():
    conf = _windows_update.update_plan(params())["update_conf"]
    values = dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line and not line.startswith("#"))
    assert values == {
        "checkpoint": "plant", "channel": "stable-ltsc2022", "instances": "a b",
        "control_plane_url": "https://cp.example.com:8443",
        "api_token_file": "C:\\ProgramData\\Vantage\\checkpoints\\plant\\update-token",
        "ca_file": "C:\\ProgramData\\Vantage\\checkpoints\\plant\\ca.pem", "validate_certs": "true",
        "trusted_keys": "C:\\ProgramData\\Vantage\\checkpoints\\plant\\trusted-keys.json",
        "state_dir": "C:\\ProgramData\\Vantage\\state\\plant", "health_timeout": "180", "gate_timeout": "300",
        "docker_host": "npipe:////./pipe/docker_engine", "lock_file": "C:\\ProgramData\\Vantage\\lock\\update.lock",
    }


def test_windows_update_installs_daily_and_restarts_only_when_allowed():
    no_reboot = dict((v["name"], v["data"]) for v in _windows_update.windows_update_policy(False, 3))
    assert no_reboot == {"NoAutoUpdate": 0, "AUOptions": 4, "ScheduledInstallDay": 0, "ScheduledInstallTime": 3,
                         "NoAutoRebootWithLoggedOnUsers": 1, "AlwaysAutoRebootAtScheduledTime": 0}
    reboot = dict((v["name"], v["data"]) for v in _windows_update.windows_update_policy(True, 2))
    assert reboot["AlwaysAutoRebootAtScheduledTime"] == 1 and reboot["AlwaysAutoRebootAtScheduledTimeMinutes"] == 15
    assert reboot["NoAutoRebootWithLoggedOnUsers"] == 0 and reboot["ScheduledInstallTime"] == 2
    assert {v["path"] for v in _windows_update.windows_update_policy(True, 2)} == {
        "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU"}
    assert _windows_update.update_plan(params(os_updates="no"))["windows_update"] == []


def test_the_action_writes_registers_and_a_second_run_changes_nothing():
    host = WindowsHost({})
    registry = {}

    def regedit(args):
        changed = registry.get(args["name"]) != args["data"]
        registry[args["name"]] = args["data"]
        return {"changed": changed}

    modules = host.modules()
    modules.handlers["win_regedit"] = regedit
    args = dict(params(), api_token="vt_update-token-0123456789", script="# the command\n")
    result = make(win_update_task, args, host=modules).run(task_vars={})
    assert not result.get("failed"), result
    assert result["changed"] is True and result["task"] == "\\Vantage\\Update plant"
    token = base64.b64decode(host.files["C:\\ProgramData\\Vantage\\checkpoints\\plant\\update-token"]).decode()
    assert token == "vt_update-token-0123456789\n"
    assert "vt_update-token" not in repr(result)
    fields = _windows_tasks.task_fields(host.tasks["Update plant"]["xml"])
    assert fields["user"] == "SYSTEM" and fields["multiple_instances"] == "IgnoreNew"
    assert registry["AUOptions"] == 4
    again = make(win_update_task, args, host=modules).run(task_vars={})
    assert again["changed"] is False, again


def test_the_action_refuses_an_empty_token_before_touching_the_host():
    host = WindowsHost({})
    result = make(win_update_task, dict(params(), api_token=" ", script="#"), host=host.modules()).run(task_vars={})
    assert result["failed"] is True and "auto_update_api_token is empty" in result["msg"]
    assert host.files == {} and host.tasks == {}
