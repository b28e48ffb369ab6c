# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Windows container path: the shared manager on ``docker.exe`` (``_windows_docker``) with the Windows
option model (``_windows_container``), driven by a simulated Windows Server 2022 host (windows_docker_host.py)."""

from __future__ import annotations

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    LABEL_CONFIG_HASH,
    SpecError,
    observed_settings,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_deploy import (
    CheckpointDeployment,
    DeployError,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import EngineError
from ansible_collections.vantage.checkpoint.plugins.module_utils._windows_container import (
    WindowsCheckpointSpec,
    instance_reasons,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._windows_docker import (
    DockerCli,
    cpus_text,
    create_arguments,
    not_found,
)
from ansible_collections.vantage.checkpoint.tests.unit.plugins.windows_docker_host import FakeDockerExe

OLD = "sha256:" + "4f" * 32
NEW = "sha256:" + "5e" * 32
BAD = "sha256:" + "6d" * 32
REPO = "registry.example.com/vantage/checkpoint"
CONFIG = "C:\\ProgramData\\Vantage\\checkpoints\\plant"
STATE = "C:\\ProgramData\\Vantage\\state\\plant"


def params(**changes):
    values = dict(
        checkpoint="plant",
        image="%s@%s" % (REPO, OLD),
        control_plane_url="https://cp.example.com:8443",
        instances=[dict(name=name, config_dir="%s\\%s" % (CONFIG, name), state_dir="%s\\%s" % (STATE, name))
                   for name in ("a", "b")],
        ca_bundle=True,
        credentials=False,
        healthcheck=dict(interval=5, start_period=15),
        health_timeout=30,
    )
    values.update(changes)
    return values


def host_with_images():
    host = FakeDockerExe()
    host.add_image(OLD)
    host.add_image(NEW)
    host.add_image(BAD, healthy=False)
    return host


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def deploy(host, check_mode=False, **changes):
    clock = Clock()
    spec = WindowsCheckpointSpec(params(**changes))
    return CheckpointDeployment(spec, DockerCli(host, check_mode=check_mode), check_mode, clock=clock, sleep=clock.sleep).run()


def verbs(host, start=0):
    return [" ".join(call[:2]) + (" " + call[-1] if call[:2] in (["container", "start"], ["container", "stop"]) else "")
            for call in host.calls[start:] if call[:2] not in (
                ["image", "inspect"], ["container", "inspect"], ["container", "ls"], ["network", "ls"], ["network", "inspect"],
                ["container", "logs"])]


def test_a_new_pair_gets_a_nat_network_and_two_process_isolated_instances():
    host = host_with_images()
    result = deploy(host)
    created = [(i["name"], i["action"], i["health"]) for i in result["instances"]]
    assert created == [("a", "created", "healthy"), ("b", "created", "healthy")]
    network = list(host.networks.values())[0]
    assert (network["Name"], network["Driver"]) == ("vantage-plant", "nat")
    # the HNS network gets the contract's interface name: the same name the Linux bridge has
    assert result["bridge"] == network["Options"]["com.docker.network.windowsshim.networkname"] == "vtg-" + result["bridge"][4:]
    create = [call for call in host.calls if call[:2] == ["container", "create"]][0]
    assert create[create.index("--isolation") + 1] == "process"
    assert create[create.index("--user") + 1] == "ContainerUser"
    assert create[create.index("--network") + 1] == "vantage-plant"
    assert create[create.index("--memory") + 1] == str(256 * 1024 ** 2)
    assert create[create.index("--cpus") + 1] == "1"
    mounts = [create[i + 1] for i, arg in enumerate(create) if arg == "--mount"]
    assert mounts == ["type=bind,source=%s\\a,target=C:\\vantage\\config,readonly" % CONFIG,
                      "type=bind,source=%s\\a,target=C:\\vantage\\state" % STATE]
    for linux_only in ("--read-only", "--tmpfs", "--cap-drop", "--security-opt", "--init", "--pids-limit", "--memory-swap",
                       "--privileged", "--health-cmd"):
        assert linux_only not in create
    env = dict(create[i + 1].split("=", 1) for i, arg in enumerate(create) if arg == "--env")
    assert env["VANTAGE_IDENTITY_KEY"] == "C:\\vantage\\config\\identity.pem"
    assert env["VANTAGE_TRUSTED_KEYS"] == "C:\\vantage\\config\\trusted-keys.json"
    assert env["VANTAGE_CA_BUNDLE"] == "C:\\vantage\\config\\ca.pem"
    assert env["VANTAGE_IMAGE_DIGEST"] == OLD
    assert env["VANTAGE_STATE_DIR"] == "C:\\vantage\\state"
    assert "VANTAGE_CREDENTIALS_FILE" not in env
    # the health command is the image's (exec form), with the role's timings
    container = host._container("vantage-plant-a")
    assert container["Config"]["Healthcheck"]["Test"][0] == "CMD"
    assert container["Config"]["Healthcheck"]["Interval"] == 5 * 10 ** 9
    spec = WindowsCheckpointSpec(params())
    for instance in spec.instances:
        assert instance_reasons(spec, instance, host._container("vantage-plant-" + instance["name"])) == []
    # PID and swap limits do not exist for Windows containers: said, not silently dropped
    assert any("pids" in w for w in result["warnings"])


def test_a_second_run_changes_nothing_and_starts_nothing():
    host = host_with_images()
    deploy(host)
    before = len(host.calls)
    result = deploy(host)
    assert not result["changed"]
    assert [i["action"] for i in result["instances"]] == ["unchanged", "unchanged"]
    assert verbs(host, before) == []


def test_the_fingerprint_is_the_settings_read_back_from_windows_inspect():
    host = host_with_images()
    deploy(host)
    spec = WindowsCheckpointSpec(params())
    container = host._container("vantage-plant-a")
    image = host._image(container["Image"])
    observed = observed_settings(container, image["Config"])
    assert observed["isolation"] == "process" and observed["user"] == "ContainerUser"
    assert observed["read_only"] is False and observed["cap_drop"] == [] and observed["init"] is False
    assert container["Config"]["Labels"][LABEL_CONFIG_HASH]


def test_a_new_image_replaces_one_instance_at_a_time_behind_the_health_gate():
    host = host_with_images()
    deploy(host)
    before = len(host.calls)
    result = deploy(host, image="%s@%s" % (REPO, NEW))
    assert [(i["name"], i["action"]) for i in result["instances"]] == [("a", "replaced"), ("b", "replaced")]
    steps = verbs(host, before)
    old_a = [c for c in host.calls[before:] if c[:2] == ["container", "rename"]][0][2]
    new_a = host._container("vantage-plant-a")["Id"]
    assert steps[:5] == ["container rename", "container create", "container stop " + old_a,
                         "container start " + new_a, "container rm"]
    # b is only touched after a's replacement passed its gate and the previous container was removed
    assert steps[5] == "container rename"
    assert sorted(c["Name"] for c in host.containers.values()) == ["/vantage-plant-a", "/vantage-plant-b"]
    assert all(c["Image"] == host._image("%s@%s" % (REPO, NEW))["Id"] for c in host.containers.values())


def test_an_unhealthy_new_image_is_rolled_back_and_the_other_instance_is_not_touched():
    host = host_with_images()
    deploy(host)
    old_ids = sorted(host.containers)
    before = len(host.calls)
    with pytest.raises(DeployError) as failed:
        deploy(host, image="%s@%s" % (REPO, BAD))
    assert "previous one was restored" in str(failed.value)
    entries = failed.value.result["instances"]
    assert entries[0]["action"] == "rolled_back" and entries[0]["health"] == "healthy"
    assert "unhealthy: not connected" in entries[0]["reason"]
    assert sorted(host.containers) == old_ids
    assert {c["Name"] for c in host.containers.values()} == {"/vantage-plant-a", "/vantage-plant-b"}
    renames = [c for c in host.calls[before:] if c[:2] == ["container", "rename"]]
    assert [r[3] for r in renames] == ["vantage-plant-a-previous", "vantage-plant-a"]


def test_check_mode_plans_and_sends_only_commands_that_read():
    host = host_with_images()
    result = deploy(host, check_mode=True)
    assert result["changed"] and result["network_created"]
    assert [i["action"] for i in result["instances"]] == ["created", "created"]
    assert host.mutations() == []


def test_a_network_of_another_driver_is_refused():
    host = host_with_images()
    host.add_network("vantage-plant", driver="transparent")
    with pytest.raises(DeployError) as failed:
        deploy(host)
    assert "uses driver transparent; a Windows checkpoint needs a nat network" in str(failed.value)
    assert host.mutations() == []


@pytest.mark.parametrize("changes, words", [
    (dict(user="ContainerAdministrator"), "option user must be ContainerUser"),
    (dict(isolation="hyperv"), "option isolation must be process"),
    (dict(instances=[dict(name="a", config_dir="/etc/vantage/a", state_dir="C:\\s\\a")]),
     "instances[a].config_dir must be an absolute Windows path"),
    (dict(image="%s:1.0" % REPO), "option image must be pinned"),
    (dict(instances=[dict(name="A_b", config_dir="C:\\c\\a", state_dir="C:\\s\\a")]), "must be 1 to 63 characters"),
    (dict(control_plane_url="http://cp.example.com"), "option control_plane_url must be an https:// URL"),
    (dict(network="nat"), "option network must name a dedicated network"),
])
def test_bad_options_are_refused_before_the_host_is_asked(changes, words):
    with pytest.raises(SpecError) as refused:
        WindowsCheckpointSpec(params(**changes))
    assert words in str(refused.value)


@pytest.mark.parametrize("setting, value, words", [
    ("read_only", True, "read-only root file system"),
    ("cap_drop", ["ALL"], "dropping capabilities"),
    ("security_opt", ["no-new-privileges:true"], "security options"),
    ("pids_limit", 256, "a PID limit"),
    ("memory_swap", 268435456, "a swap limit"),
    ("init", True, "an init process"),
    ("isolation", "hyperv", "hyperv isolation"),
    ("network", "nat", "the built-in network nat"),
])
def test_what_windows_containers_lack_is_refused_not_dropped(setting, value, words):
    spec = WindowsCheckpointSpec(params())
    settings = spec.desired_settings(spec.instances[0], "sha256:" + "9" * 64, None)
    settings.update(memory_swap=None, pids_limit=None)
    settings[setting] = value
    with pytest.raises(EngineError) as refused:
        create_arguments("vantage-plant-a", settings, {}, {}, [])
    assert words in str(refused.value)


def test_an_exec_form_health_command_other_than_the_images_cannot_be_given_through_docker_exe():
    spec = WindowsCheckpointSpec(params(healthcheck=dict(test=["python", "-c", "0"])))
    settings = dict(spec.desired_settings(spec.instances[0], "sha256:" + "9" * 64, None), memory_swap=None, pids_limit=None)
    with pytest.raises(EngineError) as refused:
        create_arguments("vantage-plant-a", settings, {}, {}, [])
    assert "only in shell form" in str(refused.value)
    settings["healthcheck"] = dict(settings["healthcheck"], test=["CMD-SHELL", "exit 0"])
    argv = create_arguments("vantage-plant-a", settings, {}, {}, [])
    assert argv[argv.index("--health-cmd") + 1] == "exit 0"


def test_a_mount_path_the_csv_syntax_would_misread_is_refused():
    spec = WindowsCheckpointSpec(params(instances=[dict(name="a", config_dir="C:\\a,b", state_dir="C:\\s\\a")]))
    settings = dict(spec.desired_settings(spec.instances[0], "sha256:" + "9" * 64, None), memory_swap=None, pids_limit=None)
    with pytest.raises(EngineError):
        create_arguments("vantage-plant-a", settings, {}, {}, spec.mounts(spec.instances[0]))


def test_the_host_read_back_fails_closed_on_a_pipe_mount_hyperv_or_another_user():
    host = host_with_images()
    deploy(host)
    spec = WindowsCheckpointSpec(params())
    container = host._container("vantage-plant-a")
    container["HostConfig"]["Isolation"] = "hyperv"
    container["Config"]["User"] = "ContainerAdministrator"
    container["HostConfig"]["Mounts"].append({"Type": "npipe", "Source": "\\\\.\\pipe\\docker_engine",
                                              "Target": "\\\\.\\pipe\\docker_engine"})
    reasons = instance_reasons(spec, spec.instances[0], container)
    assert any("isolation 'hyperv'" in r for r in reasons)
    assert any("runs as 'ContainerAdministrator'" in r for r in reasons)
    assert any("mounts the named pipe" in r for r in reasons)
    assert instance_reasons(spec, spec.instances[1], None) == ["instance b: its container does not exist after the deployment"]


def test_docker_exe_answers_are_read_as_upstream_prints_them():
    assert not_found({"rc": 1, "stderr": "Error: No such container: vantage-plant-a"})
    assert not_found({"rc": 1, "stderr": "Error response from daemon: network vantage-plant not found"})
    assert not not_found({"rc": 1, "stderr": "error during connect: open //./pipe/docker_engine: Access is denied."})
    assert [cpus_text(n) for n in (1000000000, 500000000, 1250000000, 10000000)] == ["1", "0.5", "1.25", "0.01"]
    host = FakeDockerExe()
    engine = DockerCli(lambda argv: {"rc": 1, "stdout": "", "stderr": "error during connect: Access is denied."})
    with pytest.raises(EngineError) as failed:
        engine.container("vantage-plant-a")
    assert "inspecting container vantage-plant-a: docker.exe exited 1: error during connect" in str(failed.value)
    assert DockerCli(host).container("vantage-plant-a") is None
    with pytest.raises(EngineError) as failed:
        DockerCli(lambda argv: {"rc": 0, "stdout": "not json", "stderr": ""}).image("x")
    assert "did not print JSON" in str(failed.value)


def test_a_previous_container_left_by_an_interrupted_run_is_put_back_and_started():
    host = host_with_images()
    deploy(host)
    interrupted = host._container("vantage-plant-a")
    host.do_container_stop([interrupted["Id"]])
    host.do_container_rename([interrupted["Id"], "vantage-plant-a-previous"])
    result = deploy(host)
    assert any("restored vantage-plant-a from vantage-plant-a-previous" in w for w in result["warnings"])
    outcome = [(i["name"], i["action"], i["health"]) for i in result["instances"]]
    assert outcome == [("a", "started", "healthy"), ("b", "unchanged", "healthy")]
    assert host._container("vantage-plant-a")["Id"] == interrupted["Id"]
    assert host._container("vantage-plant-a-previous") is None


def test_state_absent_removes_the_instances_and_the_network_made_for_the_checkpoint():
    host = host_with_images()
    deploy(host)
    clock = Clock()
    spec = WindowsCheckpointSpec(dict(checkpoint="plant", state="absent"))
    result = CheckpointDeployment(spec, DockerCli(host), False, clock=clock, sleep=clock.sleep).run()
    assert result["network_removed"] is True and [i["action"] for i in result["instances"]] == ["removed", "removed"]
    assert host.containers == {} and host.networks == {}
