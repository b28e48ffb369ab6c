# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""win_checkpoint_health: checkpoint_health's verdict with a Windows host side (simulated docker.exe and access
lists), against the fake control plane over real HTTP on loopback."""

from __future__ import annotations

import time

from ansible_collections.vantage.checkpoint.plugins.action import win_checkpoint_health
from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_sddl
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_actions import make
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_checkpoint_container import run as deploy
from ansible_collections.vantage.checkpoint.tests.unit.plugins.module_utils.test_windows_container import (
    OLD,
    host_with_images,
)
from ansible_collections.vantage.checkpoint.tests.unit.plugins.modules import test_checkpoint_health as linux_health
from ansible_collections.vantage.checkpoint.tests.unit.plugins.windows_docker_host import ModuleHost

health = linux_health.health
instance = linux_health.instance
cp = linux_health.cp  # the fixture: the fake control plane with the health, status and alerts endpoints

KEY = "C:\\ProgramData\\Vantage\\checkpoints\\plant\\%s\\identity.pem"


def answer_acl(acls, skew=0.0):
    def report(args):
        return {"changed": False, "sddl": dict((path, acls.get(path, _windows_sddl.KEY_FILE.replace("D:P", "D:PAI")))
                                               for path in args["paths"]),
                "now_ms": int((time.time() + skew) * 1000)}
    return report


def check(cp, docker, acls=None, skew=0.0, **changes):
    cp.health["plant"] = health(instances=[instance("a", digest=OLD, now=time.time()), instance("b", digest=OLD, now=time.time())])
    args = dict(control_plane_url=cp.url, api_token=cp.READ_TOKEN, checkpoint="plant", instances=["a", "b"],
                local_engine=True, local_instances=["a", "b"], timeout=10)
    args.update(changes)
    host = ModuleHost(docker, win_acl_report=answer_acl(acls or {}, skew))
    return make(win_checkpoint_health, args, host=host).run(task_vars={}), host


def test_a_healthy_windows_pair_is_reported_like_a_linux_one(cp):
    docker = host_with_images()
    deploy(docker)
    deployed = len(docker.mutations())
    result, host = check(cp, docker)
    assert not result.get("failed"), result
    assert result["healthy"] is True and result["reasons"] == []
    local = result["report"]["instances"][0]["local"]
    assert local["container"] == "vantage-plant-a" and local["health"] == "healthy" and local["running"] is True
    assert local["identity_key"] == KEY % "a"
    assert local["identity_key_sddl"].startswith("D:PAI")
    assert abs(result["report"]["clock_offset_s"]) < 2
    assert "win_acl_report" in host.modules()
    assert len(docker.mutations()) == deployed  # it only reads
    assert cp.READ_TOKEN not in repr(result)


def test_every_windows_reason_fails_the_check(cp):
    docker = host_with_images()
    deploy(docker)
    docker._container("vantage-plant-b")["HostConfig"]["Isolation"] = "hyperv"
    result, _host = check(cp, docker, acls={KEY % "a": _windows_sddl.KEY_FILE + "(A;;FR;;;BU)"}, skew=-90)
    assert result["failed"] is True and result["healthy"] is False
    text = "; ".join(result["reasons"])
    assert "instance a: identity key %s grants Users (S-1-5-32-545) access" % (KEY % "a") in text
    assert "instance b runs with isolation 'hyperv', not process" in text
    # the control plane's Date header has a resolution of one second
    assert "s behind the control plane's (more than 30" in text
    assert -91.5 < result["report"]["clock_offset_s"] < -88.5


def test_a_missing_container_is_named(cp):
    docker = host_with_images()
    result, _host = check(cp, docker, fail_on_unhealthy=False)
    assert not result.get("failed")
    assert "instance a: container vantage-plant-a does not exist on this host" in result["reasons"]
