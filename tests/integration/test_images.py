"""The ``vantage/checkpoint`` and ``vantage/control-plane`` images, built and run for real.

``images/build.sh`` builds both images on the local Debian 12 base (``$VANTAGE_BASE_IMAGE``, by
default ``vantage-test/debian12:bookworm``) or reuses them when their inputs have not changed.
Then a control plane and two agent instances run on a user-defined Docker network of their own
with the hardened settings the collection uses: ``--read-only`` (``/tmp`` a tmpfs),
``--cap-drop ALL``, ``no-new-privileges``, user 10001, ``--init``, memory / PID / CPU limits, a
named volume for each state directory. TLS comes from a private CA whose server certificate is
for the control plane's name on that network (``vantage-cp``) and for 127.0.0.1, where the port
is published for the test's REST calls (loopback only).

The images' own HEALTHCHECK commands run; only their interval is shortened (``--health-interval``)
so that the containers turn ``healthy`` within seconds.  Every container, volume and network
carries a random suffix and is removed afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vantage.protocol import generate_key, public_key_b64, write_private_key

pytestmark = pytest.mark.docker

TOP = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = TOP / "images" / "build.sh"
BASE_IMAGE = os.environ.get("VANTAGE_BASE_IMAGE") or "vantage-test/debian12:bookworm"
UID = 10001
CP_ALIAS = "vantage-cp"
CP_PORT = 8443
CHECKPOINT = "img-site"
INSTANCES = ("i1", "i2")
HEARTBEAT = 2
HARDENING = [
    "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=16m",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "--user", f"{UID}:{UID}", "--init",
    "--memory", "256m", "--memory-swap", "256m", "--pids-limit", "256", "--cpus", "1",
    "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
    "--health-interval", "1s", "--health-start-period", "60s",
]  # fmt: skip
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def inspect(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(docker("inspect", name).stdout)[0]
    return data


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", check=False, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Images:
    checkpoint: str
    control_plane: str


@pytest.fixture(scope="module")
def images() -> Images:
    if not engine_answers():
        pytest.skip("no Docker engine answers on this machine (`docker info` fails)")
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"base image {BASE_IMAGE} is missing (run `make images`)")
    result = subprocess.run(
        [str(BUILD_SCRIPT), "--base-image", BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"images/build.sh failed:\n{result.stderr[-4000:]}"
    tags = {
        line.split()[0].split(":")[0]: line.split()[0] for line in result.stdout.splitlines() if line.strip()
    }
    return Images(tags["vantage/checkpoint"], tags["vantage/control-plane"])


# ----------------------------------------------------------------------------- the deployment


@dataclass
class Deployment:
    workdir: Path
    images: Images
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    network: str | None = None
    base_url: str = ""
    client_context: ssl.SSLContext | None = None

    @property
    def cp(self) -> str:
        return f"vantage-img-cp-{self.suffix}"

    def agent(self, instance: str) -> str:
        return f"vantage-img-{instance}-{self.suffix}"

    @property
    def all_containers(self) -> list[str]:
        return [self.cp, *(self.agent(i) for i in INSTANCES)]

    # -- REST, through the port published on 127.0.0.1 ------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        request = urllib.request.Request(self.base_url + path, method=method)
        if auth:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.client_context)
        )
        try:
            with opener.open(request, data, timeout=10) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}"
            ) from None
        return json.loads(text) if text else None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", f"/api/v1/checkpoints/{CHECKPOINT}/health")
        return result

    def logs(self) -> str:
        parts = []
        for name in self.all_containers:
            result = docker("logs", "--tail", "30", name, check=False)
            parts.append(f"--- {name}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)

    # -- set-up ------------------------------------------------------------------------------

    def volume(self, role: str) -> str:
        name = f"vantage-img-{role}-{self.suffix}"
        docker("volume", "create", name)
        self.volumes.append(name)
        return name

    def start(self) -> None:
        import trustme

        pki = self.workdir / "pki"
        pki.mkdir()
        ca = trustme.CA()
        cert = ca.issue_cert(CP_ALIAS, "127.0.0.1")
        ca.cert_pem.write_to_path(str(pki / "ca.pem"))
        cert.private_key_pem.write_to_path(str(pki / "server.key"))
        for index, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(pki / "server.pem"), append=index > 0)
        (pki / "admin-token").write_text(self.admin_token + "\n")
        self.client_context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        share_with_container_user(pki)

        self.network = f"vantage-img-net-{self.suffix}"
        docker("network", "create", "--driver", "bridge", self.network)
        docker(
            "run", "--detach", "--name", self.cp, "--network", self.network, "--network-alias", CP_ALIAS,
            *HARDENING,
            "--publish", f"127.0.0.1::{CP_PORT}",
            "--volume", f"{self.volume('cp')}:/var/lib/vantage",
            "--volume", f"{pki}:/etc/vantage/tls:ro",
            "--volume", f"{pki / 'admin-token'}:/run/secrets/vantage-admin-token:ro",
            "--env", "VANTAGE_TLS_CERT=/etc/vantage/tls/server.pem",
            "--env", "VANTAGE_TLS_KEY=/etc/vantage/tls/server.key",
            "--env", f"VANTAGE_PUBLIC_URL=https://{CP_ALIAS}:{CP_PORT}",
            "--env", f"VANTAGE_HEARTBEAT_INTERVAL={HEARTBEAT}",
            "--env", "VANTAGE_SCHEDULER_TICK=0.5",
            self.images.control_plane,
        )  # fmt: skip
        self.containers.append(self.cp)
        host_port = docker("port", self.cp, f"{CP_PORT}/tcp").stdout.split()[0].rsplit(":", 1)[1]
        self.base_url = f"https://127.0.0.1:{host_port}"

        def answering() -> bool:
            if not inspect(self.cp)["State"]["Running"]:
                raise AssertionError(f"the control plane container stopped:\n{self.logs()}")
            try:
                return bool(self.api("GET", "/api/v1/status", auth=False)["status"] == "ok")
            except (OSError, AssertionError):
                return False

        wait_until(answering, 60, "the control plane to answer on its published port")

        self.api("PUT", f"/api/v1/checkpoints/{CHECKPOINT}", {})
        trusted = {"keys": self.api("GET", "/api/v1/signing-keys", auth=False)["keys"]}
        for instance in INSTANCES:
            config = self.workdir / instance
            config.mkdir()
            key = generate_key()
            write_private_key(config / "identity.pem", key)
            (config / "trusted_keys.json").write_text(json.dumps(trusted))
            shutil.copy(pki / "ca.pem", config / "ca.pem")
            share_with_container_user(config)
            self.api(
                "PUT",
                f"/api/v1/checkpoints/{CHECKPOINT}/instances/{instance}",
                {"public_key": public_key_b64(key)},
            )
            docker(
                "run", "--detach", "--name", self.agent(instance), "--network", self.network,
                *HARDENING,
                "--volume", f"{self.volume(instance)}:/var/lib/vantage",
                "--volume", f"{config}:/etc/vantage:ro",
                "--env", f"VANTAGE_CONTROL_PLANE_URL=https://{CP_ALIAS}:{CP_PORT}",
                "--env", f"VANTAGE_CHECKPOINT={CHECKPOINT}",
                "--env", f"VANTAGE_INSTANCE={instance}",
                "--env", "VANTAGE_IDENTITY_KEY=/etc/vantage/identity.pem",
                "--env", "VANTAGE_TRUSTED_KEYS=/etc/vantage/trusted_keys.json",
                "--env", "VANTAGE_CA_BUNDLE=/etc/vantage/ca.pem",
                self.images.checkpoint,
            )  # fmt: skip
            self.containers.append(self.agent(instance))

    def remove(self) -> None:
        for name in self.containers:
            docker("rm", "--force", "--volumes", name, check=False)
        for name in self.volumes:
            docker("volume", "rm", "--force", name, check=False)
        if self.network:
            docker("network", "rm", self.network, check=False)


def share_with_container_user(directory: Path) -> None:
    """Let UID 10001 read what is mounted from ``directory`` (as the collection's roles do)."""
    for path in [directory, *directory.iterdir()]:
        if os.geteuid() == 0:
            os.chown(path, UID, UID)
        else:  # cannot give files away: make them readable instead (test keys only)
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def deployment(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("images")
    workdir.chmod(0o755)  # the bind-mounted directories below must be reachable for UID 10001
    deployment = Deployment(workdir, images)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.remove()


def _connected(deployment: Deployment) -> dict[str, Any] | None:
    health = deployment.health()
    connected = {i["name"] for i in health["instances"] if i["connected"] and i["last_heartbeat"]}
    return health if connected == set(INSTANCES) else None


# ----------------------------------------------------------------------------- the tests


def test_images_declare_user_volume_entrypoint_and_healthcheck(images: Images) -> None:
    for tag, command, healthcheck in (
        (images.checkpoint, ["agent", "run"], ["CMD", "/opt/vantage/bin/vantage", "agent", "healthcheck"]),
        (
            images.control_plane,
            ["control-plane", "serve"],
            ["CMD", "/opt/vantage/bin/python", "-I", "/opt/vantage/libexec/healthcheck.py"],
        ),
    ):
        config = inspect(tag)["Config"]
        assert config["User"] == f"{UID}:{UID}", tag
        assert config["Entrypoint"] == ["/opt/vantage/bin/vantage"], tag
        assert config["Cmd"] == command, tag
        assert config["Healthcheck"]["Test"] == healthcheck, tag
        assert "/var/lib/vantage" in (config["Volumes"] or {}), tag
        assert config["WorkingDir"] == "/var/lib/vantage", tag
        assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"], tag
        labels = config["Labels"]
        assert labels["org.opencontainers.image.version"] == tag.rsplit(":", 1)[1], tag
        assert labels["org.opencontainers.image.revision"] not in ("", "unknown"), tag
        assert labels["org.opencontainers.image.source"], tag
        assert len(labels["io.vantage.inputs-hash"]) == 64, tag


def test_images_hold_no_compiler_and_no_pip(images: Images) -> None:
    for tag in (images.checkpoint, images.control_plane):
        probe = docker(
            "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL", "--entrypoint", "/bin/sh", tag,
            "-c", "for t in gcc cc c++ make pip pip3 /opt/vantage/bin/pip; do command -v $t; done; "
                  "/opt/vantage/bin/vantage version",
        )  # fmt: skip
        lines = probe.stdout.split()
        assert lines == [tag.rsplit(":", 1)[1]], f"{tag}: unexpected tools or version: {lines}"


def test_control_plane_image_carries_the_postgres_driver(images: Images) -> None:
    docker("run", "--rm", "--network", "none", "--entrypoint", "/opt/vantage/bin/python", images.control_plane,
           "-c", "import psycopg; psycopg.pq.version()")  # fmt: skip


def test_both_agents_connect_through_the_hardened_containers(deployment: Deployment) -> None:
    try:
        health = wait_until(lambda: _connected(deployment), 60, "both instances connected, with a heartbeat")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{deployment.logs()}") from None
    assert health is not None
    assert health["state"] == "active", health
    for instance in health["instances"]:
        assert instance["version"], instance
        assert instance["healthy"], instance


def test_containers_run_with_the_hardening_flags(deployment: Deployment) -> None:
    for name in deployment.all_containers:
        data = inspect(name)
        host = data["HostConfig"]
        assert data["Config"]["User"] == f"{UID}:{UID}", name
        assert host["ReadonlyRootfs"] is True, name
        assert host["CapDrop"] == ["ALL"], name
        assert not host["CapAdd"], name
        assert host["Privileged"] is False, name
        assert "no-new-privileges" in host["SecurityOpt"], name
        assert data["Config"]["Healthcheck"]["Test"][0] == "CMD", name
        assert data["State"]["Running"], name


def test_containers_become_healthy(deployment: Deployment) -> None:
    def all_healthy() -> bool:
        states = {
            name: inspect(name)["State"].get("Health", {}).get("Status") for name in deployment.all_containers
        }
        return all(state == "healthy" for state in states.values())

    try:
        wait_until(all_healthy, 90, "every container to become healthy")
    except AssertionError as exc:
        details = {name: inspect(name)["State"].get("Health") for name in deployment.all_containers}
        raise AssertionError(f"{exc}: {json.dumps(details, indent=1)[-3000:]}\n{deployment.logs()}") from None
    for name in deployment.all_containers:
        log = inspect(name)["State"]["Health"]["Log"]
        assert log and log[-1]["ExitCode"] == 0 and "healthy" in log[-1]["Output"], (name, log)


def test_inside_the_containers_uid_and_read_only_root(deployment: Deployment) -> None:
    for name in deployment.all_containers:
        assert docker("exec", name, "id", "-u").stdout.strip() == str(UID), name
        for path in ("/probe", "/opt/vantage/probe", "/etc/probe"):
            write = docker("exec", name, "touch", path, check=False)
            assert write.returncode != 0, f"{name}: writing {path} succeeded"
            assert "Read-only file system" in write.stderr, (name, write.stderr)
        docker("exec", name, "touch", "/tmp/probe", "/var/lib/vantage/.probe")
        docker("exec", name, "rm", "/tmp/probe", "/var/lib/vantage/.probe")
        caps = docker("exec", name, "grep", "^CapEff", "/proc/self/status").stdout.split()
        assert caps == ["CapEff:", "0000000000000000"], (name, caps)


def test_agent_keeps_its_state_in_the_volume(deployment: Deployment) -> None:
    listing = docker("exec", deployment.agent(INSTANCES[0]), "ls", "-A", "/var/lib/vantage").stdout.split()
    assert "status.json" in listing, listing


def test_a_check_runs_from_the_hardened_agents(deployment: Deployment) -> None:
    """An HTTPS check from the agents to the control plane's own status page, on that network."""
    monitor = deployment.api(
        "POST",
        "/api/v1/monitors",
        {
            "name": "image-status",
            "checkpoint": CHECKPOINT,
            "type": "http",
            "target": f"https://{CP_ALIAS}:{CP_PORT}/api/v1/status",
            "interval_s": 1,
            "timeout_s": 5,
        },
    )
    try:

        def ok_results() -> list[dict[str, Any]]:
            results = deployment.api("GET", f"/api/v1/monitors/{monitor['id']}/results?limit=50")["results"]
            return [r for r in results if r["ok"]]

        try:
            results = wait_until(ok_results, 45, "a successful check result")
        except AssertionError as exc:
            last = deployment.api("GET", f"/api/v1/monitors/{monitor['id']}/results?limit=5")
            raise AssertionError(f"{exc}: {last}\n{deployment.logs()}") from None
        assert results[0]["instance"] in INSTANCES
    finally:
        deployment.api("DELETE", f"/api/v1/monitors/{monitor['id']}")
