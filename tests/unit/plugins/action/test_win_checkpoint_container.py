# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""win_checkpoint_container: the action plugin over a simulated Windows Server 2022 host."""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.action import win_checkpoint_container
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_actions import make
from ansible_collections.vantage.checkpoint.tests.unit.plugins.module_utils.test_windows_container import (
    NEW,
    OLD,
    REPO,
    host_with_images,
    params,
)
from ansible_collections.vantage.checkpoint.tests.unit.plugins.windows_docker_host import ModuleHost


def run(docker, check_mode=False, release="server2022", **changes):
    args = dict(params(**changes), facts=answers.facts(release))
    action = make(win_checkpoint_container, args, host=ModuleHost(docker), check_mode=check_mode)
    return action.run(task_vars={})


def test_the_action_deploys_the_pair_and_reads_it_back():
    docker = host_with_images()
    result = run(docker, health_timeout=1)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert [i["action"] for i in result["instances"]] == ["created", "created"]
    again = run(docker)
    assert again["changed"] is False and not again.get("failed"), again


def test_an_image_built_for_another_windows_release_is_refused_before_anything_changes():
    docker = host_with_images()
    docker.add_image("sha256:" + "7c" * 32, os_version="10.0.17763.6775")
    result = run(docker, image="%s@sha256:%s" % (REPO, "7c" * 32))
    assert result["failed"] is True
    assert "was built for ltsc2019 (OsVersion 10.0.17763.6775)" in result["msg"]
    assert "runs Windows Server 2022 (build 20348)" in result["msg"]
    assert "set checkpoint_windows_images.ltsc2022" in result["msg"]
    assert docker.mutations() == []


def test_a_missing_image_is_pulled_by_digest_and_then_checked():
    docker = host_with_images()
    digest = "sha256:" + "8b" * 32
    docker.pullable["%s@%s" % (REPO, digest)] = {"os_version": "10.0.26100.2894"}
    result = run(docker, image="%s@%s" % (REPO, digest))
    assert result["failed"] is True and "was built for ltsc2025" in result["msg"]
    assert docker.mutations() == ["image pull"]


def test_hyperv_isolation_and_a_client_edition_are_refused_with_every_reason():
    docker = host_with_images()
    result = run(docker, isolation="hyperv")
    assert result["failed"] is True and "option isolation must be process" in result["msg"]
    result = run(docker, release="windows11")
    assert result["failed"] is True and "Windows client edition" in result["msg"]
    assert docker.mutations() == []


def test_a_rolled_back_update_fails_the_task_with_the_managers_result():
    docker = host_with_images()
    run(docker)
    result = run(docker, image="%s@%s" % (REPO, "sha256:" + "6d" * 32), health_timeout=1)
    assert result["failed"] is True
    assert result["instances"][0]["action"] == "rolled_back"
    assert "previous one was restored" in result["msg"]


def test_an_instance_that_does_not_read_back_as_a_windows_instance_fails_the_task():
    docker = host_with_images()
    run(docker)
    container = docker._container("vantage-plant-b")
    container["HostConfig"]["Mounts"].append({"Type": "npipe", "Source": "\\\\.\\pipe\\docker_engine",
                                              "Target": "\\\\.\\pipe\\docker_engine"})
    result = run(docker)
    # the manager sees a mount it did not ask for and replaces b; the new b reads back clean
    assert not result.get("failed"), result
    assert [i["action"] for i in result["instances"]] == ["unchanged", "replaced"]


def test_check_mode_on_a_fresh_host_sends_only_reading_commands():
    docker = host_with_images()
    result = run(docker, check_mode=True, image="%s@%s" % (REPO, NEW))
    assert result["changed"] is True and not result.get("failed")
    assert docker.mutations() == []
    assert [i["image"] for i in result["instances"]] == [docker._image("%s@%s" % (REPO, NEW))["Id"]] * 2
    assert run(docker)["instances"][0]["image"] == docker._image("%s@%s" % (REPO, OLD))["Id"]
