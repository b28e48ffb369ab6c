"""The ``vantage.checkpoint.checkpoint_container`` module, run by ``ansible-playbook`` against the
real Docker engine of this machine.

The agent image is a stand-in built here from ``tests/images/fake-agent`` on the local base
image: its HEALTHCHECK keeps the real agent's contract (healthy = connected) at a 1 s interval,
and it logs every start and stop in its state directory. Three builds: ``v1`` and ``v2`` (healthy)
and ``bad`` (never connects, like a release that cannot reach the control plane).

Every test uses checkpoints of its own (random names) and removes their containers and networks
afterwards, failed or not; the images are removed at the end of the session.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

TOP = Path(__file__).resolve().parents[2]
FAKE_AGENT = TOP / "tests" / "images" / "fake-agent"
BASE_IMAGE = "vantage-test/debian12:bookworm"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
AGENT_UID = 10001
MODULE = "vantage.checkpoint.checkpoint_container"

pytestmark = pytest.mark.docker


# ----------------------------------------------------------------------------- engine and images


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        if os.environ.get("VANTAGE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"no Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"base image {BASE_IMAGE} missing (run `make images`)")
    yield client
    client.close()


@dataclass(frozen=True)
class Images:
    v1: str
    v2: str
    bad: str


@pytest.fixture(scope="module")
def images(engine: Any) -> Iterator[Images]:
    tag = "vantage-test/fake-agent-" + secrets.token_hex(4)
    built: dict[str, str] = {}
    try:
        for name, args in {
            "v1": {"FAKE_VERSION": "1"},
            "v2": {"FAKE_VERSION": "2"},
            "bad": {"FAKE_VERSION": "3", "FAKE_UNHEALTHY": "1"},
        }.items():
            image, _ = engine.images.build(
                path=str(FAKE_AGENT),
                tag=f"{tag}:{name}",
                buildargs={"BASE_IMAGE": BASE_IMAGE, **args},
                rm=True,
            )
            built[name] = image.id
        yield Images(**built)
    finally:
        for name in built:
            try:
                engine.images.remove(f"{tag}:{name}", force=True)
            except docker.errors.APIError:
                pass


@pytest.fixture(scope="module")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ANSIBLE_COLLECTIONS_PATH where the repository is vantage.checkpoint."""
    root = tmp_path_factory.mktemp("collections")
    link = root / "ansible_collections" / "vantage" / "checkpoint"
    link.parent.mkdir(parents=True)
    link.symlink_to(TOP)
    return root


# ----------------------------------------------------------------------------- running the module


@dataclass
class Run:
    rc: int
    result: dict[str, Any]
    output: str

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failed

    def instances(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self.result.get("instances", []) if i["action"] != "removed"}


class Ansible:
    def __init__(self, collections: Path, workdir: Path) -> None:
        self.collections = collections
        self.workdir = workdir
        self.runs = 0

    def start(
        self, args: dict[str, Any] | list[dict[str, Any]], *, check: bool = False, diff: bool = False
    ) -> subprocess.Popen[str]:
        """Run the module once per item of ``args`` (failures do not stop the play)."""
        self.runs += 1
        playbook = self.workdir / f"play-{self.runs}.yml"
        tasks = [
            {MODULE: item, "ignore_errors": True} for item in (args if isinstance(args, list) else [args])
        ]
        play = {"hosts": "localhost", "gather_facts": False, "tasks": tasks}
        playbook.write_text(json.dumps([play], indent=2))
        env = dict(os.environ)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_RETRY_FILES_ENABLED="False",
        )
        command = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                   "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]  # fmt: skip
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def finish_all(proc: subprocess.Popen[str]) -> list[Run]:
        output, _ = proc.communicate(timeout=300)
        start = output.find("{")
        try:
            document = json.loads(output[start:])
            results = [task["hosts"]["localhost"] for task in document["plays"][0]["tasks"]]
        except (ValueError, KeyError, IndexError) as exc:
            raise AssertionError(f"cannot read the module's result ({exc}):\n{output}") from None
        return [Run(proc.returncode, result, output) for result in results]

    def finish(self, proc: subprocess.Popen[str]) -> Run:
        (run,) = self.finish_all(proc)
        return run

    def run(self, args: dict[str, Any], **kwargs: Any) -> Run:
        return self.finish(self.start(args, **kwargs))

    def run_all(self, args: list[dict[str, Any]], **kwargs: Any) -> list[Run]:
        return self.finish_all(self.start(args, **kwargs))


@pytest.fixture
def ansible(collections_path: Path, tmp_path: Path) -> Ansible:
    return Ansible(collections_path, tmp_path)


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """One test checkpoint: host files for its instances and the module arguments."""

    name: str
    root: Path
    instance_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "trusted_keys.json").write_text('{"keys": []}\n')
        os.chown(self.root / "trusted_keys.json", AGENT_UID, AGENT_UID)
        for name in self.instance_names:
            self.add_instance_files(name)

    def add_instance_files(self, name: str) -> None:
        directory = self.root / name
        (directory / "state").mkdir(parents=True, exist_ok=True)
        key = directory / "identity.pem"
        key.write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
        key.chmod(0o600)
        for path in (key, directory / "state", directory):
            os.chown(path, AGENT_UID, AGENT_UID)

    def instance(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "identity_key": str(self.root / name / "identity.pem"),
            "state_dir": str(self.root / name / "state"),
        }

    def args(self, image: str, *, instances: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "checkpoint": self.name,
            "image": image,
            "control_plane_url": "https://cp.invalid",
            "trusted_keys": str(self.root / "trusted_keys.json"),
            "health_timeout": 30,
            "stop_timeout": 5,
            "instances": [self.instance(n) for n in (instances or self.instance_names)],
        }
        args.update(self.extra)
        args.update(extra)
        return args

    def events(self, instance: str) -> list[tuple[float, str, str, str]]:
        """(time, container hostname, fake version, start|stop) from the instance's state directory."""
        path = self.root / instance / "state" / "events.log"
        if not path.exists():
            return []
        result = []
        for line in path.read_text().splitlines():
            stamp, host, version, what = line.split()
            result.append((float(stamp), host, version, what))
        return result


class Checkpoints:
    def __init__(self, engine: Any, tmp_path: Path) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.created: list[Checkpoint] = []

    def new(self, instances: tuple[str, ...] = ("a", "b"), **extra: Any) -> Checkpoint:
        name = "t" + secrets.token_hex(4)
        checkpoint = Checkpoint(name, self.tmp_path / name, list(instances), extra)
        self.created.append(checkpoint)
        return checkpoint

    def containers(self, checkpoint: Checkpoint) -> list[Any]:
        return self.engine.containers.list(
            all=True, filters={"label": f"io.vantage.checkpoint={checkpoint.name}"}
        )

    def cleanup(self) -> None:
        for checkpoint in self.created:
            for container in self.containers(checkpoint):
                container.remove(force=True)
            for network in self.engine.networks.list(names=[f"vantage-{checkpoint.name}"]):
                network.remove()
            shutil.rmtree(checkpoint.root, ignore_errors=True)


@pytest.fixture
def checkpoints(engine: Any, tmp_path: Path) -> Iterator[Checkpoints]:
    made = Checkpoints(engine, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def inspect(engine: Any, name: str) -> dict[str, Any]:
    result: dict[str, Any] = engine.api.inspect_container(name)
    return result


def container_names(engine: Any, checkpoint: Checkpoint) -> set[str]:
    return {
        c.name
        for c in engine.containers.list(
            all=True, filters={"label": f"io.vantage.checkpoint={checkpoint.name}"}
        )
    }


def deploy(ansible: Ansible, checkpoint: Checkpoint, image: str) -> Run:
    run = ansible.run(checkpoint.args(image))
    assert run.ok and not run.failed, run.output
    return run


# ----------------------------------------------------------------------------- tests


def test_creates_hardened_pair_and_second_run_changes_nothing(
    engine: Any, images: Images, ansible: Ansible, checkpoints: Checkpoints
) -> None:
    cp = checkpoints.new(
        env={"VANTAGE_DP_STRIP_IPS": True, "HTTPS_PROXY": "http://user:secret@proxy.invalid:3128"}
    )
    run = ansible.run(cp.args(images.v1), diff=True)
    assert run.ok, run.output
    result = run.result
    assert result["changed"] is True
    assert result["network"] == f"vantage-{cp.name}"
    assert result["network_created"] is True
    bridge = result["bridge"]
    assert bridge.startswith("vtg-") and len(bridge) <= 15
    assert Path("/sys/class/net", bridge).exists(), "the bridge interface exists on the host"
    assert result["image"]["id"] == images.v1
    assert {n: (i["action"], i["health"]) for n, i in run.instances().items()} == {
        "a": ("created", "healthy"),
        "b": ("created", "healthy"),
    }
    # the diff masks the proxy's credentials
    assert "secret" not in json.dumps(result["diff"])
    assert (
        result["diff"]["after"]["instances"]["a"]["env"]["HTTPS_PROXY"]
        == "http://********@proxy.invalid:3128"
    )

    network = engine.api.inspect_network(f"vantage-{cp.name}")
    assert network["Driver"] == "bridge"
    assert network["Options"]["com.docker.network.bridge.name"] == bridge
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert network["Labels"]["io.vantage.checkpoint"] == cp.name

    for name in ("a", "b"):
        info = inspect(engine, f"vantage-{cp.name}-{name}")
        host, config = info["HostConfig"], info["Config"]
        assert info["State"]["Running"] and info["State"]["Health"]["Status"] == "healthy"
        assert info["Image"] == images.v1
        assert config["User"] == "10001:10001"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["Privileged"] is False and host["Init"] is True
        assert host["Memory"] == 256 * 1024**2 and host["MemorySwap"] == 256 * 1024**2
        assert host["NanoCpus"] == 10**9
        assert host["PidsLimit"] == 256
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
        assert host["NetworkMode"] == f"vantage-{cp.name}"
        assert not host["PortBindings"] and not host["PublishAllPorts"]
        assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=64m"}
        mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in info["Mounts"]}
        assert mounts == {
            "/etc/vantage/identity.pem": (str(cp.root / name / "identity.pem"), False),
            "/etc/vantage/trusted_keys.json": (str(cp.root / "trusted_keys.json"), False),
            "/var/lib/vantage": (str(cp.root / name / "state"), True),
        }
        labels = config["Labels"]
        assert labels["io.vantage.checkpoint"] == cp.name and labels["io.vantage.instance"] == name
        assert len(labels["io.vantage.config-hash"]) == 64
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["VANTAGE_CHECKPOINT"] == cp.name and env["VANTAGE_INSTANCE"] == name
        assert env["VANTAGE_IMAGE_DIGEST"] == images.v1
        assert env["VANTAGE_IDENTITY_KEY"] == "/etc/vantage/identity.pem"
        assert env["VANTAGE_DP_STRIP_IPS"] == "true"
        assert env["VANTAGE_HOST_NAME"] == engine.api.info()["Name"]  # where it runs, not the container's id
        # the agent could read its keys and write its state as uid 10001
        assert [e[3] for e in cp.events(name)] == ["start"]

    ids = {n: i["container_id"] for n, i in run.instances().items()}
    again = ansible.run(cp.args(images.v1), diff=True)
    assert again.ok, again.output
    assert again.result["changed"] is False
    assert {n: i["action"] for n, i in again.instances().items()} == {"a": "unchanged", "b": "unchanged"}
    assert {n: i["container_id"] for n, i in again.instances().items()} == ids
    assert again.result["diff"]["before"] == again.result["diff"]["after"]
    for name in ("a", "b"):
        assert [e[3] for e in cp.events(name)] == ["start"], "an unchanged instance is not restarted"


class HealthWatcher(threading.Thread):
    """Samples the engine every 0.1 s: which instances have a running, healthy container."""

    def __init__(self, engine: Any, checkpoint: Checkpoint) -> None:
        super().__init__(daemon=True)
        self.client = docker.from_env()
        self.checkpoint = checkpoint
        self.samples: list[tuple[float, dict[str, set[str]]]] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def sample(self) -> dict[str, set[str]]:
        healthy: dict[str, set[str]] = {n: set() for n in self.checkpoint.instance_names}
        for summary in self.client.api.containers(
            filters={"label": f"io.vantage.checkpoint={self.checkpoint.name}"}
        ):
            try:
                info = self.client.api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue
            state = info["State"]
            if state["Running"] and (state.get("Health") or {}).get("Status") == "healthy":
                healthy[info["Config"]["Labels"]["io.vantage.instance"]].add(info["Image"])
        return healthy

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.samples.append((time.time(), self.sample()))
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.client.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
        if self.error:
            raise self.error


def test_check_mode_then_new_image_replaces_one_instance_at_a_time(
    engine: Any, images: Images, ansible: Ansible, checkpoints: Checkpoints
) -> None:
    cp = checkpoints.new()
    first = deploy(ansible, cp, images.v1)

    # check mode: the plan, and nothing changed
    plan = ansible.run(cp.args(images.v2), check=True, diff=True)
    assert plan.ok, plan.output
    assert plan.result["changed"] is True
    planned = plan.instances()
    assert {n: i["action"] for n, i in planned.items()} == {"a": "replaced", "b": "replaced"}
    assert "image" in planned["a"]["changes"]
    diff = plan.result["diff"]
    assert diff["before"]["instances"]["a"]["image"] == images.v1
    assert diff["after"]["instances"]["a"]["image"] == images.v2
    for name in ("a", "b"):
        info = inspect(engine, f"vantage-{cp.name}-{name}")
        assert info["Image"] == images.v1
        assert info["Id"].startswith(first.instances()[name]["container_id"])
        assert [e[3] for e in cp.events(name)] == ["start"]

    # the real thing, watched
    watcher = HealthWatcher(engine, cp)
    watcher.start()
    try:
        run = ansible.finish(ansible.start(cp.args(images.v2)))
    finally:
        watcher.stop()
    assert run.ok, run.output
    instances = run.instances()
    assert {n: (i["action"], i["health"], i["image"]) for n, i in instances.items()} == {
        "a": ("replaced", "healthy", images.v2),
        "b": ("replaced", "healthy", images.v2),
    }
    for name in ("a", "b"):
        assert instances[name]["previous_container_id"] == first.instances()[name]["container_id"]
        assert instances[name]["container_id"] != first.instances()[name]["container_id"]
        assert inspect(engine, f"vantage-{cp.name}-{name}")["Image"] == images.v2
    assert container_names(engine, cp) == {f"vantage-{cp.name}-a", f"vantage-{cp.name}-b"}

    # at every moment of the update, at least one instance was running and healthy
    assert len(watcher.samples) > 20
    down = [t for t, healthy in watcher.samples if not any(healthy.values())]
    assert not down, f"no healthy instance at {len(down)} samples"
    # ...and the watcher did see the update happen, one instance after the other
    a_new_healthy = min(t for t, healthy in watcher.samples if images.v2 in healthy["a"])
    b_old_gone = min(t for t, healthy in watcher.samples if images.v1 not in healthy["b"])
    assert a_new_healthy <= b_old_gone

    # each instance's old agent stopped before its new one started (never two on one state dir),
    # and b was touched only after a's new agent ran (the watcher above shows it was healthy by then)
    for name in ("a", "b"):
        assert [(e[2], e[3]) for e in cp.events(name)] == [("1", "start"), ("1", "stop"), ("2", "start")]
    assert cp.events("a")[2][0] < cp.events("b")[1][0], "a's new agent started before b's old one stopped"


def test_unhealthy_image_rolls_back_and_leaves_old_containers_running(
    engine: Any, images: Images, ansible: Ansible, checkpoints: Checkpoints
) -> None:
    cp = checkpoints.new()
    deploy(ansible, cp, images.v1)
    before = {n: inspect(engine, f"vantage-{cp.name}-{n}") for n in ("a", "b")}
    started = time.monotonic()
    run = ansible.run(cp.args(images.bad, health_timeout=6))
    assert time.monotonic() - started < 60
    assert run.failed, run.output
    message = run.result["msg"]
    assert "instance a" in message and "did not become healthy" in message
    assert "not connected to the control plane" in message, "the reason is the new container's health output"
    assert "previous one was restored" in message
    report = run.instances()
    assert list(report) == ["a"], "instance b was not touched"
    assert report["a"]["action"] == "rolled_back"
    assert report["a"]["image"] == images.v1

    for name in ("a", "b"):
        info = inspect(engine, f"vantage-{cp.name}-{name}")
        assert info["Id"] == before[name]["Id"], "the previous container is back under its name"
        assert info["Image"] == images.v1
        assert info["State"]["Running"] is True
    assert inspect(engine, f"vantage-{cp.name}-a")["State"]["Health"]["Status"] == "healthy"
    assert inspect(engine, f"vantage-{cp.name}-b")["State"]["StartedAt"] == before["b"]["State"]["StartedAt"]
    assert container_names(engine, cp) == {f"vantage-{cp.name}-a", f"vantage-{cp.name}-b"}, (
        "no -previous left"
    )


def test_second_checkpoint_leaves_the_first_alone_and_absent_removes_only_its_own(
    engine: Any, images: Images, ansible: Ansible, checkpoints: Checkpoints
) -> None:
    first = checkpoints.new()
    deploy(ansible, first, images.v1)
    before = {n: inspect(engine, f"vantage-{first.name}-{n}") for n in ("a", "b")}

    second = checkpoints.new(instances=("a",))
    # timings only: the image's healthcheck command is kept (how the checkpoint role uses it)
    run = ansible.run(second.args(images.v2, healthcheck={"interval": 1, "retries": 2, "start_period": 0}))
    assert run.ok, run.output
    assert run.instances()["a"]["action"] == "created"
    first_network = engine.api.inspect_network(f"vantage-{first.name}")
    assert run.result["bridge"] != first_network["Options"]["com.docker.network.bridge.name"]
    healthcheck = inspect(engine, f"vantage-{second.name}-a")["Config"]["Healthcheck"]
    assert (
        healthcheck["Interval"] == 10**9
        and healthcheck["Retries"] == 2
        and healthcheck["Timeout"] == 10 * 10**9
    )
    assert healthcheck["Test"] == ["CMD", "python3", "/usr/local/lib/fake_agent.py", "healthcheck"]

    def unchanged() -> None:
        for name in ("a", "b"):
            info = inspect(engine, f"vantage-{first.name}-{name}")
            assert info["Id"] == before[name]["Id"]
            assert info["State"]["StartedAt"] == before[name]["State"]["StartedAt"]
            assert info["State"]["Running"] is True
        assert [e[3] for e in first.events("a")] == ["start"]

    unchanged()

    absent = ansible.run({"checkpoint": second.name, "state": "absent"}, diff=True)
    assert absent.ok, absent.output
    assert absent.result["changed"] is True and absent.result["network_removed"] is True
    assert [(i["name"], i["action"]) for i in absent.result["instances"]] == [("a", "removed")]
    assert container_names(engine, second) == set()
    assert not engine.networks.list(names=[f"vantage-{second.name}"])
    assert [e[3] for e in second.events("a")] == ["start", "stop"], "the agent was stopped gracefully"
    unchanged()

    again = ansible.run({"checkpoint": second.name, "state": "absent"})
    assert again.ok and again.result["changed"] is False, again.output


def test_unusable_images_fail_clearly_and_change_nothing(
    engine: Any, ansible: Ansible, checkpoints: Checkpoints
) -> None:
    cases = {
        "vantage-test/fake-agent:v1": "option image must be pinned",
        "sha256:" + "0" * 64: "option image: the engine has no image",
        "127.0.0.1:9/vantage/checkpoint@sha256:" + "0" * 64: "pulling 127.0.0.1:9/vantage/checkpoint@sha256:",
    }
    cp = checkpoints.new()
    runs = ansible.run_all([cp.args(image) for image in cases])
    for run, (image, expected) in zip(runs, cases.items(), strict=True):
        assert run.failed, (image, run.result)
        assert expected in run.result["msg"], (image, run.result["msg"])
        assert run.result.get("changed") is False, image
    assert container_names(engine, cp) == set()
    assert not engine.networks.list(names=[f"vantage-{cp.name}"])


def test_unlisted_instance_is_removed_and_interrupted_replacement_is_recovered(
    engine: Any, images: Images, ansible: Ansible, checkpoints: Checkpoints
) -> None:
    cp = checkpoints.new()
    deploy(ansible, cp, images.v1)

    # an update interrupted after "rename to -previous and stop": a has no current container
    a = engine.containers.get(f"vantage-{cp.name}-a")
    a.rename(f"vantage-{cp.name}-a-previous")
    a.stop(timeout=5)
    run = ansible.run(cp.args(images.v1, instances=["a"]))
    assert run.ok, run.output
    assert any("interrupted run" in w for w in run.result.get("warnings", [])), run.result
    actions = [(i["name"], i["action"]) for i in run.result["instances"]]
    assert actions == [("a", "started"), ("b", "removed")]
    assert run.result["instances"][0]["health"] == "healthy"
    assert container_names(engine, cp) == {f"vantage-{cp.name}-a"}
    assert engine.containers.get(f"vantage-{cp.name}-a").id == a.id

    # a stopped but otherwise matching container is started, not replaced
    a.stop(timeout=5)
    started = ansible.run(cp.args(images.v1, instances=["a"]))
    assert started.ok, started.output
    assert [(i["action"], i["health"]) for i in started.result["instances"]] == [("started", "healthy")]
    assert engine.containers.get(f"vantage-{cp.name}-a").id == a.id
