"""The update engine (``vantage update``) on the real Docker engine of this machine.

Instances are created as ``checkpoint_container`` creates them (its option model and the Docker
backend the package carries), from the fake-agent images of the module's tests; the update engine
then replaces them one at a time behind its gates (a control plane that reports what the engine
shows), and the module's comparison finds nothing to change in the new containers. A release
that never becomes healthy is rolled back to the very same containers. The signed manifest, the
pull from a registry with authentication and the timer run in the Molecule scenario ``update``;
the logic of every step is unit-tested in tests/unit/vantage/test_update.py.

The command the timer starts (the role's template) is run with a recording stand-in for
``docker``: it runs ``vantage update`` from the image of the first instance, with only the
documented mounts.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from test_module_checkpoint_container import Images, engine, images  # noqa: F401 - the module tests' fixtures

from vantage._collection._container import (
    LABEL_CHECKPOINT,
    LABEL_CONFIG_HASH,
    CheckpointSpec,
    config_hash,
    image_digest_of,
    instance_labels,
    mask_unenforced,
    observed_settings,
)
from vantage._collection._container_engine import DockerEngine, health_state, wait_healthy
from vantage.contract import bridge_name, container_name
from vantage.update.config import UpdateConfig
from vantage.update.updater import Updater

AGENT_UID = 10001
TOP = Path(__file__).resolve().parents[2]
WRAPPER = TOP / "roles" / "auto_update" / "templates" / "vantage-checkpoint-update.sh.j2"


class EngineControlPlane:
    """A control plane that sees each instance connected when its container is healthy."""

    def __init__(self, backend: DockerEngine, checkpoint: str, instances: list[str]) -> None:
        self.engine, self.checkpoint, self.instances = backend, checkpoint, instances

    def release(self, channel: str) -> Any:
        raise AssertionError("the test hands the image to the updater")

    def health(self, checkpoint: str) -> dict[str, Any]:
        entries = []
        for name in self.instances:
            container = self.engine.container(container_name(checkpoint, name))
            ok = health_state(container) == "healthy"
            entries.append({"name": name, "connected": ok, "healthy": ok, "image_digest": image_digest_of(container)})
        return {"checkpoint": checkpoint, "instances": entries}


@pytest.fixture
def site(engine: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:  # noqa: F811
    checkpoint = "upd-" + secrets.token_hex(3)
    backend = DockerEngine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), 120)
    (tmp_path / "trusted-keys.json").write_text('{"keys": []}')
    (tmp_path / "token").write_text("t\n")
    options: dict[str, Any] = {
        "checkpoint": checkpoint, "control_plane_url": "https://cp.example.com",
        "trusted_keys": str(tmp_path / "trusted-keys.json"), "cpus": 0.5, "pids_limit": 64, "log_max_file": 2,
        "memory": "128m", "healthcheck": {"interval": 1, "retries": 2, "start_period": 0}, "instances": [],
    }
    for name in ("a", "b"):
        key, state = tmp_path / f"{name}.pem", tmp_path / f"state-{name}"
        key.write_text("identity key of " + name)
        state.mkdir()
        os.chown(state, AGENT_UID, AGENT_UID)
        options["instances"].append({"name": name, "identity_key": str(key), "state_dir": str(state)})
    conf = tmp_path / "update.conf"
    conf.write_text(
        f"[update]\ncheckpoint = {checkpoint}\nchannel = stable\ninstances = a b\n"
        f"control_plane_url = https://cp.example.com\napi_token_file = {tmp_path / 'token'}\n"
        f"trusted_keys = {tmp_path / 'trusted-keys.json'}\nstate_dir = {tmp_path}\n"
        "health_timeout = 60\ngate_timeout = 60\npoll_interval = 1\n"
    )
    config = UpdateConfig.load(str(conf))
    updater = Updater(config, EngineControlPlane(backend, checkpoint, ["a", "b"]), backend)
    updater.limits = backend.limits()
    try:
        yield {"checkpoint": checkpoint, "engine": backend, "options": options, "updater": updater}
    finally:
        for container in backend.checkpoint_containers(checkpoint):
            backend.remove(container["Id"])
        network = backend.network("vantage-" + checkpoint)
        if network is not None:
            backend.remove_network(network["Id"])


def deploy(site: dict[str, Any], image_id: str) -> CheckpointSpec:
    """Create and start the instances as checkpoint_container does (its option model, the backend)."""
    backend: DockerEngine = site["engine"]
    spec = CheckpointSpec(dict(site["options"], image=image_id))
    backend.create_network(spec.network, bridge_name(spec.network), spec.checkpoint)
    image = backend.image(image_id)
    assert image is not None
    for instance in spec.instances:
        settings = mask_unenforced(spec.desired_settings(instance, image_id, image["Config"]), backend.limits())
        name = container_name(spec.checkpoint, instance["name"])
        container_id = backend.create_container(name, settings, spec.environment(instance),
                                                instance_labels(spec.checkpoint, instance["name"], settings),
                                                spec.mounts(instance))
        backend.start(container_id)
        ok, outcome = wait_healthy(backend, container_id, 60)
        assert ok, outcome
    return spec


def module_changes(site: dict[str, Any], image_id: str) -> dict[str, list[str]]:
    """What checkpoint_container would change per instance for ``image_id`` (its comparison)."""
    backend: DockerEngine = site["engine"]
    spec = CheckpointSpec(dict(site["options"], image=image_id))
    image = backend.image(image_id)
    assert image is not None
    changes = {}
    for instance in spec.instances:
        container = backend.container(container_name(spec.checkpoint, instance["name"]))
        assert container is not None
        desired = mask_unenforced(spec.desired_settings(instance, image_id, image["Config"]), backend.limits())
        observed = mask_unenforced(observed_settings(container, image["Config"]), backend.limits())
        found = [key for key in desired if desired[key] != observed.get(key)]
        if container["Config"]["Labels"].get(LABEL_CONFIG_HASH) != config_hash(desired):
            found.append("config-hash")
        changes[instance["name"]] = found
    return changes


@pytest.mark.docker
def test_replaced_instances_are_ones_the_module_finds_nothing_to_change_in(site: dict[str, Any],
                                                                           images: Images) -> None:  # noqa: F811
    backend: DockerEngine = site["engine"]
    deploy(site, images.v1)
    new = backend.image(images.v2)
    assert new is not None
    for instance in ("a", "b"):
        site["updater"].wait_peers(instance)
        ok, reason, old = site["updater"].replace(instance, new, images.v2)
        assert ok, reason
        assert backend.container(old["Id"]) is None
    assert module_changes(site, images.v2) == {"a": [], "b": []}
    for container in backend.checkpoint_containers(site["checkpoint"]):
        assert container["Config"]["Labels"][LABEL_CHECKPOINT] == site["checkpoint"]
        assert container["HostConfig"]["CapDrop"] == ["ALL"] and container["HostConfig"]["ReadonlyRootfs"]
        assert container["Config"]["User"] == f"{AGENT_UID}:{AGENT_UID}"
        assert health_state(container) == "healthy"


@pytest.mark.docker
def test_a_release_that_never_gets_healthy_is_rolled_back_to_the_same_containers(site: dict[str, Any],
                                                                                  images: Images) -> None:  # noqa: F811
    backend: DockerEngine = site["engine"]
    deploy(site, images.v1)
    before = {c["Name"]: c["Id"] for c in backend.checkpoint_containers(site["checkpoint"])}
    bad = backend.image(images.bad)
    assert bad is not None
    site["updater"].config = UpdateConfig(**dict(vars(site["updater"].config), health_timeout=8))
    ok, reason, _old = site["updater"].replace("a", bad, images.bad)
    assert not ok and "not healthy within 8 s" in reason
    after = backend.checkpoint_containers(site["checkpoint"])
    assert {c["Name"]: c["Id"] for c in after} == before
    assert all(health_state(c) == "healthy" for c in after)
    assert module_changes(site, images.v1) == {"a": [], "b": []}


def test_the_command_runs_the_engine_from_the_instances_image_with_only_its_mounts(tmp_path: Path) -> None:
    script = tmp_path / "vantage-checkpoint-update"
    environment = jinja2.Environment(keep_trailing_newline=True)
    environment.filters["comment"] = lambda text: "# " + text  # Ansible's filter, for one line
    script.write_text(environment.from_string(WRAPPER.read_text()).render(ansible_managed="managed",
                                                                          auto_update_config_dir="/etc/x"))
    script.chmod(0o755)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = inspect ]; then [ "$4" = vantage-cp-b ] && echo sha256:feed && exit 0; exit 1; fi\n'
        'printf "%s\\n" "$@" > "$RECORD"\n'
    )
    (bin_dir / "docker").chmod(0o755)
    conf_dir, state = tmp_path / "conf", tmp_path / "state"
    conf_dir.mkdir()
    lock = tmp_path / "lock" / "update.lock"
    conf = conf_dir / "update.conf"
    conf.write_text(f"[update]\ncheckpoint = cp\ninstances = a b\nstate_dir = {state}\nca_file = {conf_dir}/ca.pem\n"
                    f"lock_file = {lock}\n")
    manifest = tmp_path / "m.json"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", RECORD=str(tmp_path / "args"))
    run = subprocess.run([str(script), "--config", str(conf), "--check", f"--manifest-file={manifest}"],
                         env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[0] == "run"
    image = args.index("sha256:feed")  # instance a has no container: b's image
    assert args[image + 1:] == ["update", "--config", str(conf), "--check", f"--manifest-file={manifest}"]
    options = args[1:image]
    mounts = sorted(options[i + 1] for i, arg in enumerate(options) if arg == "--volume")
    assert mounts == sorted([
        "/var/run/docker.sock:/var/run/docker.sock", f"{conf_dir}:{conf_dir}:ro", f"{state}:{state}",
        f"{lock}:{lock}", f"{manifest}:{manifest}:ro",
    ] + (["/root/.docker/config.json:/run/vantage/docker/config.json:ro"]
         if Path("/root/.docker/config.json").is_file() else []))
    for hardening in (["--read-only"], ["--cap-drop", "ALL"], ["--security-opt", "no-new-privileges:true"],
                      ["--network", "host"], ["--rm"], ["--user", "0:0"]):
        assert any(options[i:i + len(hardening)] == hardening for i in range(len(options))), hardening
    assert "--privileged" not in options
    assert lock.exists() and state.is_dir()
    (conf_dir / "update.conf").write_text("[update]\ncheckpoint = other\ninstances = a\n")
    run = subprocess.run([str(script), "--config", str(conf)], env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 4 and "deploy the checkpoint with Ansible first" in run.stdout
