# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rolling deployment of checkpoint_container against an in-memory engine: the order of
operations, the health gates and the roll-back. (tests/integration runs it on a real engine.)"""

from __future__ import annotations

import json

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    LABEL_CHECKPOINT,
    CheckpointSpec,
    SpecError,
    healthcheck_to_engine,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_deploy import (
    CheckpointDeployment,
    DeployError,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import EngineError, bridge_interface

OLD = "sha256:" + "01" * 32
NEW = "sha256:" + "02" * 32
BROKEN = "sha256:" + "03" * 32
IMAGE_CONFIG = {
    "Env": ["PATH=/usr/bin:/bin"],
    "Healthcheck": {"Test": ["CMD", "vantage", "agent", "healthcheck"], "Interval": 10**9, "Retries": 1},
}


class Outcome:
    def __init__(self, result, failed):
        self.result = result
        self.failed = failed


def deploy(engine, values, check_mode=False):
    """What the module does with the option model and the manager (without Ansible)."""
    try:
        return Outcome(CheckpointDeployment(CheckpointSpec(values), engine, check_mode).run(), False)
    except SpecError as exc:
        return Outcome({"msg": str(exc)}, True)
    except DeployError as exc:
        return Outcome(dict(exc.result, msg=str(exc)), True)


class FakeEngine:
    """Containers are healthy once started when their image is in ``healthy``."""

    def __init__(self, healthy=(OLD, NEW)):
        self.images = dict((i, {"Id": i, "Config": IMAGE_CONFIG}) for i in (OLD, NEW, BROKEN))
        self.healthy = set(healthy)
        self.containers = {}
        self.networks = {}
        self.ops = []
        self.counter = 0

    def limits(self):
        return dict(memory=True, swap=True, pids=True)

    def image(self, reference):
        return self.images.get(reference)

    def pull(self, repository, digest):
        raise EngineError("pulling %s@%s: no registry here" % (repository, digest))

    def network(self, name):
        return self.networks.get(name)

    def create_network(self, name, bridge, checkpoint):
        self.ops.append(("create_network", name))
        self.networks[name] = {"Id": "9" * 64, "Name": name, "Driver": "bridge", "Labels": {LABEL_CHECKPOINT: checkpoint},
                               "Options": {"com.docker.network.bridge.name": bridge}, "Containers": {}}
        return self.networks[name]

    network_interface = staticmethod(bridge_interface)

    def remove_network(self, network_id):
        self.networks = dict((k, v) for k, v in self.networks.items() if v["Id"] != network_id)

    def container(self, name_or_id):
        for container in self.containers.values():
            if name_or_id in (container["Id"], container["Name"].lstrip("/")):
                return container
        return None

    def checkpoint_containers(self, checkpoint):
        return [c for c in self.containers.values() if c["Config"]["Labels"].get(LABEL_CHECKPOINT) == checkpoint]

    def create_container(self, name, settings, environment, labels, mounts):
        self.counter += 1
        container_id = "%064x" % self.counter
        image_id = settings["image"]
        env = dict(item.split("=", 1) for item in IMAGE_CONFIG["Env"])
        env.update(environment)
        log_config = dict(settings["log_config"])
        self.containers[container_id] = {
            "Id": container_id,
            "Name": "/" + name,
            "Image": image_id,
            "State": {"Running": False, "Status": "created"},
            "RestartCount": 0,
            "Config": {
                "User": settings["user"],
                "Env": ["%s=%s" % item for item in env.items()],
                "Healthcheck": dict((k.title().replace("_", ""), v) for k, v in healthcheck_to_engine(settings["healthcheck"]).items()),
                "StopTimeout": settings["stop_timeout"],
                "Labels": dict(labels),
            },
            "HostConfig": {
                "Mounts": [{"Source": s, "Target": t, "ReadOnly": ro} for s, t, ro in mounts],
                "NetworkMode": settings["network"],
                "Memory": settings["memory"],
                "MemorySwap": settings["memory_swap"],
                "NanoCpus": settings["nano_cpus"],
                "PidsLimit": settings["pids_limit"],
                "RestartPolicy": {"Name": settings["restart_policy"]},
                "LogConfig": {"Type": log_config.pop("type"), "Config": log_config},
                "ReadonlyRootfs": True,
                "Tmpfs": dict(settings["tmpfs"]),
                "CapDrop": ["ALL"],
                "SecurityOpt": list(settings["security_opt"]),
                "Init": True,
            },
        }
        self.ops.append(("create", name, image_id))
        return container_id

    def _named(self, container_id):
        return self.containers[container_id]["Name"].lstrip("/")

    def start(self, container_id):
        container = self.containers[container_id]
        self.ops.append(("start", self._named(container_id), container["Image"]))
        health = "healthy" if container["Image"] in self.healthy else "unhealthy"
        container["State"] = {"Running": True, "Status": "running", "Health": {"Status": health, "Log": [
            {"ExitCode": 0 if health == "healthy" else 1, "Output": "%s: fake" % health}]}}

    def stop(self, container_id, timeout):
        self.ops.append(("stop", self._named(container_id)))
        self.containers[container_id]["State"] = {"Running": False, "Status": "exited", "ExitCode": 0}

    def rename(self, container_id, name):
        self.ops.append(("rename", self._named(container_id), name))
        self.containers[container_id]["Name"] = "/" + name

    def remove(self, container_id):
        if container_id in self.containers:
            self.ops.append(("remove", self._named(container_id)))
            del self.containers[container_id]

    def logs(self, container_id, lines=20):
        return "fake log line"


def params(image=NEW, instances=("a", "b"), **overrides):
    value = dict(
        checkpoint="cp", state="present", image=image, control_plane_url="https://cp.example.com",
        trusted_keys="/etc/vantage/trusted_keys.json", ca_bundle=None, env=None, network=None,
        user="10001:10001", memory="256m", cpus=1.0, pids_limit=256, restart_policy="unless-stopped",
        log_max_size="10m", log_max_file=3, stop_timeout=15, health_timeout=0, healthcheck=None,
        docker_host="tcp://engine.invalid:2375", api_timeout=60,
        instances=[dict(name=n, identity_key="/keys/%s.pem" % n, state_dir="/state/%s" % n, env=None) for n in instances],
    )  # fmt: skip
    value.update(overrides)
    return value


def run(engine, check_mode=False, **kwargs):
    return deploy(engine, params(**kwargs), check_mode)


def deployed(image=OLD, **kwargs):
    engine = FakeEngine()
    outcome = run(engine, image=image, **kwargs)
    assert not outcome.failed, outcome.result
    engine.ops = []
    return engine


def actions(outcome):
    return [(i["name"], i["action"]) for i in outcome.result["instances"]]


def test_creates_instances_one_after_the_other_then_changes_nothing():
    engine = FakeEngine()
    outcome = run(engine, image=OLD)
    assert not outcome.failed and outcome.result["changed"]
    assert actions(outcome) == [("a", "created"), ("b", "created")]
    assert outcome.result["network_created"] and outcome.result["bridge"].startswith("vtg-")
    assert [op[:2] for op in engine.ops] == [
        ("create_network", "vantage-cp"), ("create", "vantage-cp-a"), ("start", "vantage-cp-a"),
        ("create", "vantage-cp-b"), ("start", "vantage-cp-b"),
    ]  # fmt: skip
    engine.ops = []
    again = run(engine, image=OLD)
    assert not again.result["changed"] and actions(again) == [("a", "unchanged"), ("b", "unchanged")]
    assert engine.ops == []


def test_replacement_stops_the_old_before_starting_the_new_and_keeps_it_until_healthy():
    engine = deployed()
    outcome = run(engine)
    assert actions(outcome) == [("a", "replaced"), ("b", "replaced")]
    assert outcome.result["instances"][0]["changes"] == ["env", "image"]
    assert engine.ops[:6] == [
        ("rename", "vantage-cp-a", "vantage-cp-a-previous"),
        ("create", "vantage-cp-a", NEW),
        ("stop", "vantage-cp-a-previous"),
        ("start", "vantage-cp-a", NEW),
        ("remove", "vantage-cp-a-previous"),
        ("rename", "vantage-cp-b", "vantage-cp-b-previous"),
    ]


def test_check_mode_plans_without_touching_the_engine():
    engine = deployed()
    outcome = run(engine, check_mode=True)
    assert outcome.result["changed"] and actions(outcome) == [("a", "replaced"), ("b", "replaced")]
    assert outcome.result["instances"][0]["health"] is None
    assert outcome.result["diff"]["before"]["instances"]["a"]["image"] == OLD
    assert outcome.result["diff"]["after"]["instances"]["a"]["image"] == NEW
    assert engine.ops == []


def test_an_unhealthy_new_container_is_rolled_back_and_the_next_instance_not_touched():
    engine = deployed()
    outcome = run(engine, image=BROKEN)
    assert outcome.failed
    assert "instance a" in outcome.result["msg"] and "unhealthy: fake" in outcome.result["msg"]
    assert actions(outcome) == [("a", "rolled_back")]
    assert engine.ops[-3:] == [
        ("remove", "vantage-cp-a"),
        ("rename", "vantage-cp-a-previous", "vantage-cp-a"),
        ("start", "vantage-cp-a", OLD),
    ]
    assert not any("vantage-cp-b" in op[1] for op in engine.ops)
    assert sorted(c["Name"] for c in engine.containers.values()) == ["/vantage-cp-a", "/vantage-cp-b"]
    assert all(c["Image"] == OLD and c["State"]["Running"] for c in engine.containers.values())


def test_a_new_instance_that_never_gets_healthy_is_removed():
    engine = FakeEngine()
    outcome = run(engine, image=BROKEN)
    assert outcome.failed and actions(outcome) == [("a", "failed")]
    assert engine.containers == {}


def test_unhealthy_instances_go_first_and_results_keep_the_option_order():
    engine = deployed()
    engine.containers[engine.container("vantage-cp-b")["Id"]]["State"]["Health"]["Status"] = "unhealthy"
    outcome = run(engine)
    assert not outcome.failed, outcome.result
    starts = [op[1] for op in engine.ops if op[0] == "start"]
    assert starts == ["vantage-cp-b", "vantage-cp-a"]
    assert actions(outcome) == [("a", "replaced"), ("b", "replaced")]


def test_the_last_healthy_instance_is_not_stopped():
    engine = deployed()
    # a matches the desired settings but is unhealthy; b is healthy and needs replacing
    engine.containers[engine.container("vantage-cp-a")["Id"]]["State"]["Health"]["Status"] = "unhealthy"
    instances = [dict(name="a", identity_key="/keys/a.pem", state_dir="/state/a", env=None),
                 dict(name="b", identity_key="/keys/b.pem", state_dir="/state/b", env={"VANTAGE_LOG_LEVEL": "DEBUG"})]
    outcome = deploy(engine, params(image=OLD, instances=()) | {"instances": instances})
    assert outcome.failed
    assert "refusing to replace instance b" in outcome.result["msg"]
    assert "a: unhealthy" in outcome.result["msg"]
    assert engine.ops == []


def test_unlisted_instances_are_removed_after_the_listed_ones_converged():
    engine = deployed()
    outcome = run(engine, image=OLD, instances=("a",))
    assert actions(outcome) == [("a", "unchanged"), ("b", "removed")]
    assert engine.ops == [("stop", "vantage-cp-b"), ("remove", "vantage-cp-b")]


def test_a_container_of_another_checkpoint_with_our_name_is_refused():
    engine = deployed(checkpoint="cp-x", instances=("a",))  # its container is vantage-cp-x-a
    outcome = run(engine, image=OLD, instances=("x-a",))  # checkpoint cp, instance x-a: the same name
    assert outcome.failed and "does not belong to checkpoint cp" in outcome.result["msg"]
    assert "checkpoint cp-x" in outcome.result["msg"]


def test_absent_removes_the_containers_and_the_network():
    engine = deployed()
    outcome = deploy(engine, dict(params(), state="absent"))
    assert actions(outcome) == [("a", "removed"), ("b", "removed")]
    assert outcome.result["network_removed"] and engine.containers == {} and engine.networks == {}


def test_an_image_without_healthcheck_needs_the_option():
    engine = FakeEngine()
    engine.images[NEW] = {"Id": NEW, "Config": {"Env": []}}
    outcome = run(engine)
    assert outcome.failed and "has no HEALTHCHECK" in outcome.result["msg"]
    assert engine.ops == []
    with_option = run(engine, healthcheck=dict(test=["true"], interval=1, timeout=1, retries=1, start_period=0))
    assert not with_option.failed, with_option.result
    assert engine.container("vantage-cp-a")["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]


CANARY = "canary-pw-5e1f0c"


def local_files(tmp_path, instances=("a", "b")):
    """Host files for a unix:// engine, whose paths the module checks and reads."""
    (tmp_path / "trusted_keys.json").write_text("{}")
    files = {}
    for name in instances:
        (tmp_path / ("%s.pem" % name)).write_bytes(b"identity key of " + name.encode())
        (tmp_path / ("state-%s" % name)).mkdir()
    files["instances"] = [dict(name=n, identity_key=str(tmp_path / ("%s.pem" % n)), state_dir=str(tmp_path / ("state-%s" % n)),
                               env=None) for n in instances]  # fmt: skip
    files["trusted_keys"] = str(tmp_path / "trusted_keys.json")
    files["docker_host"] = "unix:///var/run/docker.sock"
    return files


def run_local(engine, files, **kwargs):
    return deploy(engine, dict(params(**kwargs), **files))


def write_credentials(path, password):
    path.write_text(json.dumps({"credentials": {"db": {"username": "probe", "password": password}}}, sort_keys=True))


def test_new_credentials_replace_the_instances_one_at_a_time_and_are_never_shown(tmp_path):
    files = local_files(tmp_path)
    credentials = tmp_path / "credentials.json"
    write_credentials(credentials, CANARY)
    engine = FakeEngine()
    first = run_local(engine, files, image=OLD)
    assert not first.failed and actions(first) == [("a", "created"), ("b", "created")]
    engine.ops = []
    added = run_local(engine, files, image=OLD, credentials_file=str(credentials))
    assert not added.failed, added.result
    assert actions(added) == [("a", "replaced"), ("b", "replaced")]
    assert added.result["instances"][0]["changes"] == ["env", "mounts"]
    container = engine.container("vantage-cp-a")
    assert {"Source": str(credentials), "Target": "/etc/vantage/credentials.json", "ReadOnly": True} in container["HostConfig"]["Mounts"]
    env = dict(item.split("=", 1) for item in container["Config"]["Env"])
    assert env["VANTAGE_CREDENTIALS_FILE"] == "/etc/vantage/credentials.json"
    revision_a = env["CHECKPOINT_CREDENTIALS_REVISION"]
    env_b = dict(item.split("=", 1) for item in engine.container("vantage-cp-b")["Config"]["Env"])
    assert revision_a != env_b["CHECKPOINT_CREDENTIALS_REVISION"]  # keyed per instance
    engine.ops = []
    again = run_local(engine, files, image=OLD, credentials_file=str(credentials))
    assert not again.result["changed"] and engine.ops == []
    write_credentials(credentials, CANARY + "-rotated")
    rotated = run_local(engine, files, image=OLD, credentials_file=str(credentials))
    assert actions(rotated) == [("a", "replaced"), ("b", "replaced")]
    assert rotated.result["instances"][0]["changes"] == ["env"]
    assert [op[:2] for op in engine.ops[:5]] == [
        ("rename", "vantage-cp-a"), ("create", "vantage-cp-a"), ("stop", "vantage-cp-a-previous"),
        ("start", "vantage-cp-a"), ("remove", "vantage-cp-a-previous"),
    ]  # fmt: skip
    for outcome in (added, again, rotated):
        text = json.dumps(outcome.result)
        assert CANARY not in text and "probe" not in text
        assert revision_a not in text  # masked in the diff too
    removed = run_local(engine, files, image=OLD)
    assert actions(removed) == [("a", "replaced"), ("b", "replaced")]
    assert all(m["Target"] != "/etc/vantage/credentials.json" for m in engine.container("vantage-cp-a")["HostConfig"]["Mounts"])


def test_a_missing_credentials_file_fails_naming_the_option(tmp_path):
    files = local_files(tmp_path)
    engine = FakeEngine()
    outcome = run_local(engine, files, image=OLD, credentials_file=str(tmp_path / "nope.json"))
    assert outcome.failed and outcome.result["msg"].startswith("option credentials_file: ")
    assert engine.ops == []
