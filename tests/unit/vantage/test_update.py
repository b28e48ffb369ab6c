"""The update engine (``vantage update``) against an in-memory engine and control plane.

Manifest verification with envelopes signed by the real ``vantage.protocol`` signer (tampered,
unknown key, expired, lower version, wrong channel, wrong type...), the replacement built from
``docker inspect`` data with the collection's container code (hardening kept, the fingerprint
``checkpoint_container`` computes), pruning, the lock, and the rolling update with its gates and
rollback. The real engine runs in tests/integration/test_auto_update_command.py, and the real
engine, registry, control plane and timer in the Molecule scenario ``update``.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage._collection import _container as lib
from vantage._collection._container_engine import EngineError
from vantage.protocol import RELEASE_TYPE, make_release
from vantage.protocol.envelope import sign
from vantage.protocol.keys import key_id, public_key_b64
from vantage.update import cli
from vantage.update.config import (
    EXIT_CONFIG,
    EXIT_DEFERRED,
    EXIT_FAILED,
    EXIT_IMAGE,
    EXIT_REFUSED,
    UpdateConfig,
    UpdateError,
)
from vantage.update.updater import Updater, images_to_prune, write_json

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
IMAGE = "127.0.0.1:5000/vantage/checkpoint"
NOW = 1_700_000_000
ALL_LIMITS = {"memory": True, "swap": True, "pids": True}


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def release(key: Ed25519PrivateKey, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"channel": "stable", "version": "1.2.0", "image": IMAGE, "digest": D2, "now": NOW}
    args.update(kw)
    return make_release(key, **args)


def _tamper(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload.update(changes)
    forged = dict(envelope)
    forged["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return forged


# ----------------------------------------------------------------------------- the site


def image_inspect(image_id: str, digest: str | None, test: list[str] | None = None, **labels: str) -> dict[str, Any]:
    return {
        "Id": image_id,
        "RepoDigests": [f"{IMAGE}@{digest}"] if digest else [],
        "Config": {
            "Env": ["PATH=/usr/bin", "VANTAGE_IMAGE_VERSION=x"],
            "Healthcheck": {"Test": test or ["CMD", "vantage", "agent", "healthcheck"], "Interval": 30 * 10**9},
            "Labels": labels,
        },
    }


class FakeEngine:
    """The engine interface in memory, creating containers from settings as the Docker backend does;
    an image labelled test.health=unhealthy never becomes healthy."""

    def __init__(self) -> None:
        self.images_by_ref: dict[str, dict[str, Any]] = {}
        self.containers_by_id: dict[str, dict[str, Any]] = {}
        self.registry: dict[str, dict[str, Any]] = {}  # digest -> image that a pull brings
        self.registry_up = True
        self.enforced = dict(ALL_LIMITS)
        self.log: list[str] = []
        self.counter = 0
        self.drop_on_create: tuple[str, ...] = ()  # HostConfig keys this engine "forgets"

    def add_image(self, image: dict[str, Any], local: bool = True) -> None:
        digest = image["RepoDigests"][0].split("@")[1]
        self.registry[digest] = image
        if local:
            self.images_by_ref[image["Id"]] = image
            self.images_by_ref[image["RepoDigests"][0]] = image

    def limits(self) -> dict[str, bool]:
        return dict(self.enforced)

    def image(self, ref: str) -> dict[str, Any] | None:
        return self.images_by_ref.get(ref)

    def images(self) -> list[dict[str, Any]]:
        return list({i["Id"]: i for i in self.images_by_ref.values()}.values())

    def used_images(self) -> set[str]:
        return {c["Image"] for c in self.containers_by_id.values()}

    def pull(self, repository: str, digest: str) -> None:
        self.log.append(f"pull {digest[:9]}")
        if not self.registry_up:
            raise EngineError("pulling: Get https://127.0.0.1:5000/v2/: connection refused")
        if digest not in self.registry:
            raise EngineError(f"pulling: manifest for {repository}@{digest} not found")
        self.add_image(self.registry[digest])

    def remove_image(self, image_id: str) -> None:
        self.log.append(f"rmi {image_id[7:10]}")
        self.images_by_ref = {k: v for k, v in self.images_by_ref.items() if v["Id"] != image_id}

    def _find(self, name_or_id: str) -> dict[str, Any] | None:
        if name_or_id in self.containers_by_id:
            return self.containers_by_id[name_or_id]
        return next((c for c in self.containers_by_id.values() if c["Name"] == "/" + name_or_id), None)

    def container(self, name_or_id: str) -> dict[str, Any] | None:
        found = self._find(name_or_id)
        return copy.deepcopy(found) if found else None

    def create_container(self, name: str, settings: dict[str, Any], environment: dict[str, str],
                         labels: dict[str, str], mounts: list[tuple[str, str, bool]]) -> str:
        if self._find(name):
            raise EngineError(f"creating container {name}: the name is in use")
        self.counter += 1
        new_id = f"new{self.counter}"
        self.containers_by_id[new_id] = build_container(new_id, name, self.images_by_ref[settings["image"]],
                                                        settings, environment, labels, mounts, self.enforced)
        for key in self.drop_on_create:
            self.containers_by_id[new_id]["HostConfig"].pop(key)
        self.log.append(f"create {name} {settings['image'][7:10]}")
        return new_id

    def start(self, container_id: str) -> None:
        c = self.containers_by_id[container_id]
        image = self.images_by_ref[c["Image"]]
        status = "unhealthy" if (image["Config"].get("Labels") or {}).get("test.health") == "unhealthy" else "healthy"
        c["State"] = {"Running": True, "Status": "running", "Health": {"Status": status, "Log": [{"Output": status}]}}
        self.log.append(f"start {c['Name'][1:]} {c['Image'][7:10]}")

    def stop(self, container_id: str, timeout: int) -> None:
        c = self.containers_by_id[container_id]
        c["State"] = {"Running": False, "Status": "exited", "ExitCode": 0}
        self.log.append(f"stop {c['Name'][1:]}")

    def rename(self, container_id: str, name: str) -> None:
        self.containers_by_id[container_id]["Name"] = "/" + name

    def remove(self, container_id: str) -> None:
        self.containers_by_id.pop(container_id, None)

    def logs(self, container_id: str, lines: int = 20) -> str:
        return ""


def build_container(container_id: str, name: str, image: dict[str, Any], settings: dict[str, Any],
                    environment: dict[str, str], labels: dict[str, str], mounts: list[tuple[str, str, bool]],
                    enforced: dict[str, bool]) -> dict[str, Any]:
    """The inspect data the Docker engine shows for a container created from ``settings``."""
    env = [e for e in image["Config"]["Env"] if e.split("=")[0] not in environment]
    env += [f"{k}={v}" for k, v in environment.items()]
    hc = settings["healthcheck"]
    log = dict(settings["log_config"])
    return {
        "Id": container_id, "Name": "/" + name, "Image": image["Id"],
        "Config": {
            "User": settings["user"], "Env": env,
            "Labels": dict(image["Config"].get("Labels") or {}, **labels),
            "Healthcheck": {"Test": hc["test"], "Interval": int(hc["interval"] * 1e9),
                            "Timeout": int(hc["timeout"] * 1e9), "Retries": hc["retries"],
                            "StartPeriod": int(hc["start_period"] * 1e9)} if hc else image["Config"]["Healthcheck"],
            "StopTimeout": settings["stop_timeout"],
        },
        "HostConfig": {
            "Mounts": [{"Type": "bind", "Source": s, "Target": t, "ReadOnly": ro} for s, t, ro in mounts],
            "NetworkMode": settings["network"],
            "Memory": settings["memory"] if enforced["memory"] else 0,
            "MemorySwap": settings["memory_swap"] if enforced["swap"] and enforced["memory"] else 0,
            "NanoCpus": settings["nano_cpus"],
            "PidsLimit": settings["pids_limit"] if enforced["pids"] else 0,
            "ExtraHosts": settings["extra_hosts"] or None,
            "RestartPolicy": {"Name": settings["restart_policy"]},
            "LogConfig": {"Type": log.pop("type"), "Config": log},
            "ReadonlyRootfs": settings["read_only"], "Tmpfs": settings["tmpfs"], "CapDrop": settings["cap_drop"],
            "CapAdd": settings["cap_add"] or None, "SecurityOpt": settings["security_opt"],
            "Privileged": settings["privileged"], "Init": settings["init"],
        },
        "State": {"Running": False, "Status": "created"}, "RestartCount": 0,
    }


def deployed(engine: FakeEngine, instance: str, image: dict[str, Any], digest: str) -> dict[str, Any]:
    """A running, healthy container as checkpoint_container creates it (the module's own code)."""
    spec = lib.CheckpointSpec({
        "checkpoint": "cp", "image": f"{IMAGE}@{digest}", "control_plane_url": "https://cp:8443",
        "trusted_keys": "/etc/vantage/checkpoints/cp/trusted-keys.json", "cpus": 1.0, "pids_limit": 256,
        "log_max_file": 3, "healthcheck": {"interval": 2, "start_period": 6},
        "instances": [{"name": instance, "identity_key": f"/etc/vantage/{instance}.pem",
                       "state_dir": f"/var/lib/vantage/{instance}"}],
    })
    item = spec.instances[0]
    settings = lib.mask_unenforced(spec.desired_settings(item, image["Id"], image["Config"]), engine.enforced)
    labels = lib.instance_labels("cp", instance, settings)
    container = build_container(f"{instance}-id-{digest[7:11]}", f"vantage-cp-{instance}", image, settings,
                                spec.environment(item), labels, spec.mounts(item), engine.enforced)
    container["State"] = {"Running": True, "Status": "running", "Health": {"Status": "healthy", "Log": []}}
    engine.containers_by_id[container["Id"]] = container
    return container


def module_finds_nothing_to_change(engine: FakeEngine, container: dict[str, Any]) -> bool:
    """What checkpoint_container compares: observed settings and label vs. what it computes."""
    image = engine.image(container["Image"])
    assert image is not None
    instance = container["Config"]["Labels"]["io.vantage.instance"]
    digest = lib.image_digest_of(container)
    fresh = FakeEngine()
    fresh.enforced = engine.enforced
    fresh.add_image(image)
    expected = deployed(fresh, instance, image, str(digest))
    observed = lib.mask_unenforced(lib.observed_settings(container, image["Config"]), engine.enforced)
    wanted = lib.mask_unenforced(lib.observed_settings(expected, image["Config"]), engine.enforced)
    return observed == wanted and container["Config"]["Labels"] == expected["Config"]["Labels"]


class FakeControlPlane:
    """Health as the real one reports it: an instance whose container runs healthy is connected."""

    def __init__(self, engine: FakeEngine, envelope: dict[str, Any], remote: dict[str, bool] | None = None) -> None:
        self.engine = engine
        self.envelope = envelope
        self.remote = remote or {}  # instances on another host: name -> healthy

    def release(self, channel: str) -> dict[str, Any]:
        return self.envelope

    def health(self, checkpoint: str) -> dict[str, Any]:
        instances = []
        for c in self.engine.containers_by_id.values():
            if c["Name"].endswith("-previous"):
                continue
            ok = c["State"].get("Running") and c["State"]["Health"]["Status"] == "healthy"
            env = dict(e.split("=", 1) for e in c["Config"]["Env"])
            instances.append({"name": env["VANTAGE_INSTANCE"], "connected": bool(ok), "healthy": bool(ok),
                              "image_digest": env["VANTAGE_IMAGE_DIGEST"], "reasons": []})
        for name, healthy in self.remote.items():
            instances.append({"name": name, "connected": healthy, "healthy": healthy, "image_digest": D1,
                              "reasons": [] if healthy else [f"instance {name} is not connected"]})
        return {"checkpoint": checkpoint, "instances": instances}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def write_config(tmp_path: Path, keys: dict[str, Any], **extra: str) -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (tmp_path / "trusted-keys.json").write_text(json.dumps(keys))
    (tmp_path / "token").write_text("t\n")
    lines = {
        "checkpoint": "cp", "channel": "stable", "instances": "a b", "control_plane_url": "https://cp:8443/",
        "api_token_file": str(tmp_path / "token"), "trusted_keys": str(tmp_path / "trusted-keys.json"),
        "state_dir": str(state), "lock_file": str(tmp_path / "lock"), "health_timeout": "30",
        "gate_timeout": "20", "poll_interval": "1",
    }
    lines.update(extra)
    conf = tmp_path / "update.conf"
    conf.write_text("# managed\n[update]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items()))
    return conf


def pinned(*keys: Ed25519PrivateKey, **fields: Any) -> dict[str, Any]:
    return {"keys": [dict({"keyid": key_id(k), "public_key": public_key_b64(k), "status": "active"}, **fields)
                     for k in keys]}


@pytest.fixture
def site(tmp_path: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
    conf = write_config(tmp_path, pinned(key))
    engine = FakeEngine()
    v1 = image_inspect("sha256:" + "a" * 64, D1)
    v2 = image_inspect("sha256:" + "b" * 64, D2)
    v3 = image_inspect("sha256:" + "c" * 64, D3, **{"test.health": "unhealthy"})
    engine.add_image(v1)
    engine.add_image(v2, local=False)
    engine.add_image(v3, local=False)
    for name in ("a", "b"):
        deployed(engine, name, v1, D1)
    return {"conf": UpdateConfig.load(str(conf)), "engine": engine, "state": tmp_path / "state", "key": key,
            "tmp": tmp_path}


def updater(site: dict[str, Any], envelope: dict[str, Any] | None = None, remote: dict[str, bool] | None = None,
            now: float = NOW + 60) -> Updater:
    clock = Clock()
    cp = FakeControlPlane(site["engine"], envelope or {}, remote)
    return Updater(site["conf"], cp, site["engine"], clock=clock, sleep=clock.sleep, wall=lambda: now)


def run(site: dict[str, Any], envelope: dict[str, Any], remote: dict[str, bool] | None = None) -> tuple[Any, ...]:
    up = updater(site, envelope, remote)
    try:
        return up.run(), up
    except UpdateError as exc:
        return (exc.code, exc.result, exc.reason), up


def running(engine: FakeEngine) -> dict[str, str]:
    return {c["Name"][1:]: str(lib.image_digest_of(c)) for c in engine.containers_by_id.values()}


# ----------------------------------------------------------------------------- verification


def verify(site: dict[str, Any], envelope: Any, installed: str | None = None, now: float = NOW) -> Any:
    return updater(site, now=now).verify(envelope, {"version": installed} if installed else None)


def refusal(site: dict[str, Any], envelope: Any, **kw: Any) -> UpdateError:
    with pytest.raises(UpdateError) as info:
        verify(site, envelope, **kw)
    assert info.value.code == EXIT_REFUSED and info.value.result == "refused"
    assert info.value.reason.startswith(str(info.value.details["check"]))
    return info.value


def test_valid_manifest_verifies(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    got = verify(site, release(key), installed="1.1.9", now=NOW + 10)
    assert (got.version, got.digest, got.image) == ("1.2.0", D2, IMAGE)


def test_same_version_is_accepted(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    assert verify(site, release(key), installed="1.2").version == "1.2.0"


@pytest.mark.parametrize(
    "changes",
    [{"digest": D3}, {"version": "9.9.9"}, {"image": "evil.example/checkpoint"}, {"exp": NOW + 10**8}],
)
def test_tampered_payload_is_refused(site: dict[str, Any], key: Ed25519PrivateKey, changes: dict[str, Any]) -> None:
    assert refusal(site, _tamper(release(key), **changes)).details["check"] == "bad_signature"


def test_tampered_payload_type_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    envelope = dict(release(key), payloadType="application/vnd.vantage.instruction+json")
    assert refusal(site, envelope).details["check"] == "bad_signature"  # the type is signed too (PAE)


def test_unknown_key_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    error = refusal(site, release(Ed25519PrivateKey.generate()))
    assert error.details["check"] == "unknown_key"
    assert key_id(key) in error.reason  # names the pinned key


def test_signature_by_unknown_key_under_pinned_key_id_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    forged = release(Ed25519PrivateKey.generate())
    forged["signatures"][0]["keyid"] = key_id(key)
    assert refusal(site, forged).details["check"] == "bad_signature"


@pytest.mark.parametrize(("fields", "trusted"), [({"status": "retired"}, False), ({"not_after": NOW}, False),
                                                 ({"not_after": NOW + 1}, True)])
def test_retired_and_expired_keys_are_not_trusted(tmp_path: Path, site: dict[str, Any], key: Ed25519PrivateKey,
                                                  fields: dict[str, Any], trusted: bool) -> None:
    site["conf"] = UpdateConfig.load(str(write_config(tmp_path, pinned(key, **fields))))
    if trusted:
        assert verify(site, release(key)).digest == D2
    else:
        assert refusal(site, release(key)).details["check"] == "unknown_key"


def test_trusted_keys_with_a_wrong_key_id_are_rejected(tmp_path: Path, site: dict[str, Any],
                                                       key: Ed25519PrivateKey) -> None:
    site["conf"] = UpdateConfig.load(str(write_config(tmp_path, {"keys": [{"keyid": "0" * 16,
                                                                           "public_key": public_key_b64(key)}]})))
    with pytest.raises(UpdateError, match="does not match") as info:
        verify(site, release(key))
    assert info.value.code == EXIT_CONFIG


def test_expired_manifest_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    envelope = release(key, lifetime=3600)
    assert verify(site, envelope, now=NOW + 3600 + 300)
    assert refusal(site, envelope, now=NOW + 3600 + 301).details["check"] == "expired"


def test_manifest_from_the_future_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    assert refusal(site, release(key, now=NOW + 1000)).details["check"] == "not_yet_valid"


@pytest.mark.parametrize("installed", ["1.2.1", "1.10", "2"])
def test_lower_version_is_refused(site: dict[str, Any], key: Ed25519PrivateKey, installed: str) -> None:
    assert refusal(site, release(key), installed=installed).details["check"] == "downgrade"


def test_wrong_channel_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    assert refusal(site, release(key, channel="beta")).details["check"] == "wrong_channel"


def test_wrong_payload_type_is_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    envelope = sign("application/vnd.vantage.instruction+json", base64.b64decode(release(key)["payload"]), key)
    assert refusal(site, envelope).details["check"] == "wrong_payload_type"


@pytest.mark.parametrize(
    "envelope",
    [
        [],
        {"payloadType": "x", "payload": "!!", "signatures": [{"keyid": "a", "sig": "AA=="}]},
        {"payloadType": "x", "payload": "", "signatures": []},
    ],
)
def test_malformed_envelopes_are_refused(site: dict[str, Any], envelope: Any) -> None:
    assert refusal(site, envelope).details["check"] == "malformed_envelope"


def test_duplicate_keys_in_the_signed_payload_are_refused(site: dict[str, Any], key: Ed25519PrivateKey) -> None:
    payload = (
        b'{"channel":"stable","channel":"beta","version":"1.0","image":"i","digest":"' + D2.encode()
        + b'","iat":%d,"exp":%d}' % (NOW, NOW + 60)
    )
    assert refusal(site, sign(RELEASE_TYPE, payload, key)).details["check"] == "malformed_payload"


# ----------------------------------------------------------------------------- the replacement


def test_a_replaced_container_keeps_its_settings_and_the_module_finds_nothing_to_change(site: dict[str, Any]) -> None:
    engine = site["engine"]
    (code, result, _reason), _ = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (0, "updated")
    for c in engine.containers_by_id.values():
        assert c["Image"] == "sha256:" + "b" * 64
        assert c["HostConfig"]["CapDrop"] == ["ALL"] and c["HostConfig"]["ReadonlyRootfs"] is True
        assert c["Config"]["User"] == "10001:10001"
        assert module_finds_nothing_to_change(engine, c)


def test_the_new_images_healthcheck_command_is_taken_with_the_containers_timings(site: dict[str, Any]) -> None:
    engine = site["engine"]
    v4 = image_inspect("sha256:" + "d" * 64, "sha256:" + "4" * 64, test=["CMD-SHELL", "exit 0"])
    engine.add_image(v4, local=False)
    run(site, release(site["key"], digest="sha256:" + "4" * 64, version="1.1"))
    for c in engine.containers_by_id.values():
        assert c["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "exit 0"]
        assert (c["Config"]["Healthcheck"]["Interval"], c["Config"]["Healthcheck"]["StartPeriod"]) == (2e9, 6e9)
        assert module_finds_nothing_to_change(engine, c)


@pytest.mark.parametrize("unenforced", ["swap", "pids", "memory"])
def test_limits_the_engine_does_not_enforce_are_masked_as_the_module_masks_them(site: dict[str, Any],
                                                                                 unenforced: str) -> None:
    engine = FakeEngine()
    engine.enforced[unenforced] = False
    v1, v2 = image_inspect("sha256:" + "a" * 64, D1), image_inspect("sha256:" + "b" * 64, D2)
    engine.add_image(v1)
    engine.add_image(v2, local=False)
    for name in ("a", "b"):
        deployed(engine, name, v1, D1)
    site["engine"] = engine
    (code, result, _reason), _ = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (0, "updated")
    assert all(module_finds_nothing_to_change(engine, c) for c in engine.containers_by_id.values())


def test_a_new_container_that_loses_hardening_is_refused_before_the_old_one_stops(site: dict[str, Any]) -> None:
    engine = site["engine"]
    engine.drop_on_create = ("CapDrop", "ReadonlyRootfs")
    (code, result, reason), _ = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (EXIT_FAILED, "rolled_back")
    assert "would not keep the settings cap_drop, read_only" in reason
    assert running(engine) == {"vantage-cp-a": D1, "vantage-cp-b": D1}
    assert not [e for e in engine.log if e.startswith("stop")]


def test_prune_keeps_current_previous_and_used_images() -> None:
    images = [
        {"Id": "old1", "RepoDigests": [f"{IMAGE}@{D1}"]},
        {"Id": "prev", "RepoDigests": [f"{IMAGE}@{D2}"]},
        {"Id": "cur", "RepoDigests": [f"{IMAGE}@{D3}"]},
        {"Id": "used", "RepoDigests": [f"{IMAGE}@sha256:{'4' * 64}"]},
        {"Id": "other", "RepoDigests": [f"other/repo@sha256:{'5' * 64}"]},
        {"Id": "local", "RepoDigests": []},
    ]
    assert images_to_prune(images, IMAGE, {D2, D3}, {"used"}) == ["old1"]


def test_the_lock_keeps_a_second_run_out(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    held = cli.acquire_lock(str(path))
    assert held is not None
    code = "import sys; from vantage.update.cli import acquire_lock; print(acquire_lock(sys.argv[1]) is None)"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    held.close()
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- the rolling update


def test_update_replaces_one_instance_at_a_time_and_records_the_release(site: dict[str, Any]) -> None:
    (code, result, _reason), up = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (0, "updated")
    assert running(site["engine"]) == {"vantage-cp-a": D2, "vantage-cp-b": D2}
    log = [e for e in site["engine"].log if not e.startswith("pull")]
    # a is stopped and its replacement started before b is touched
    assert log.index("start vantage-cp-a bbb") < log.index("stop vantage-cp-b-previous")
    assert log.index("stop vantage-cp-a-previous") < log.index("start vantage-cp-a bbb")
    record = json.loads((site["state"] / "release.json").read_text())
    assert (record["version"], record["digest"], record["previous"]["digest"]) == ("1.1", D2, D1)
    assert [i["result"] for i in up.status["instances"]] == ["replaced", "replaced"]
    # a second run has nothing to do
    (code, result, _reason), _ = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (0, "up_to_date")


def test_failing_release_is_rolled_back_and_not_retried(site: dict[str, Any]) -> None:
    run(site, release(site["key"], digest=D2, version="1.1"))
    before = running(site["engine"])
    (code, result, reason), up = run(site, release(site["key"], digest=D3, version="1.2"))
    assert (code, result) == (EXIT_FAILED, "rolled_back")
    assert "not healthy within 30 s" in reason and "unhealthy" in reason
    assert running(site["engine"]) == before
    assert all(c["State"]["Health"]["Status"] == "healthy" for c in site["engine"].containers_by_id.values())
    assert json.loads((site["state"] / "release.json").read_text())["version"] == "1.1"
    # the command writes the status file; as it does, the release is not retried
    write_json(site["conf"].status_file, dict(up.status, result=result))
    (code, result, reason), _ = run(site, release(site["key"], digest=D3, version="1.2"))
    assert (code, result) == (EXIT_FAILED, "failed") and "not retried" in reason
    assert running(site["engine"]) == before


def test_second_instance_failing_moves_the_first_back(site: dict[str, Any]) -> None:
    engine = site["engine"]
    calls = {"n": 0}
    real_start = engine.start

    def start(container_id: str) -> None:
        real_start(container_id)
        c = engine.containers_by_id[container_id]
        if c["Image"] == "sha256:" + "b" * 64:
            calls["n"] += 1
            if calls["n"] == 2:  # the second instance on the new image fails
                c["State"]["Health"]["Status"] = "unhealthy"

    engine.start = start  # type: ignore[method-assign]
    (code, result, _reason), up = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (EXIT_FAILED, "rolled_back")
    assert running(engine) == {"vantage-cp-a": D1, "vantage-cp-b": D1}
    assert [i["result"] for i in up.status["instances"]] == ["replaced", "rolled_back", "rolled_back"]
    assert not (site["state"] / "release.json").exists()
    assert all(module_finds_nothing_to_change(engine, c) for c in engine.containers_by_id.values())


def test_unhealthy_partner_defers_the_update(site: dict[str, Any]) -> None:
    (code, result, reason), _ = run(site, release(site["key"], digest=D2, version="1.1"), remote={"c": False})
    assert (code, result) == (EXIT_DEFERRED, "deferred")
    assert "instance c is not connected and healthy" in reason
    assert running(site["engine"]) == {"vantage-cp-a": D1, "vantage-cp-b": D1}


@pytest.mark.parametrize("registry_up", [True, False])
def test_missing_image_changes_nothing(site: dict[str, Any], registry_up: bool) -> None:
    site["engine"].registry_up = registry_up
    missing = "sha256:" + "9" * 64
    (code, result, reason), _ = run(site, release(site["key"], digest=missing, version="1.1"))
    assert (code, result) == (EXIT_IMAGE, "image_unavailable")
    assert ("not found" if registry_up else "connection refused") in reason
    assert running(site["engine"]) == {"vantage-cp-a": D1, "vantage-cp-b": D1}
    assert not [e for e in site["engine"].log if not e.startswith("pull")]


def test_refused_manifests_change_nothing(site: dict[str, Any]) -> None:
    run(site, release(site["key"], digest=D2, version="1.1"))
    before = copy.deepcopy(site["engine"].containers_by_id)
    for envelope, check in [
        (release(site["key"], digest=D1, version="1.0"), "downgrade"),
        (_tamper(release(site["key"], digest=D2, version="1.5"), digest=D1), "bad_signature"),
        (release(Ed25519PrivateKey.generate(), digest=D1, version="2.0"), "unknown_key"),
    ]:
        (code, result, reason), _ = run(site, envelope)
        assert (code, result) == (EXIT_REFUSED, "refused")
        assert reason.startswith(check)
    assert site["engine"].containers_by_id == before


def test_prune_after_two_updates(site: dict[str, Any]) -> None:
    engine = site["engine"]
    v4 = image_inspect("sha256:" + "d" * 64, "sha256:" + "4" * 64)
    engine.add_image(v4, local=False)
    run(site, release(site["key"], digest=D2, version="1.1"))
    assert "rmi" not in " ".join(engine.log)  # v1 is the previous release: kept
    (code, result, _), up = run(site, release(site["key"], digest="sha256:" + "4" * 64, version="1.3"))
    assert (code, result) == (0, "updated")
    assert up.status["pruned"] == ["sha256:" + "a" * 64]  # v1 removed, v2 (previous) kept
    assert engine.image("sha256:" + "b" * 64) is not None


# ----------------------------------------------------------------------------- the command


def vantage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vantage", "update", *args], capture_output=True, text=True,
                          check=False)


def test_the_command_reports_config_errors(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("[update]\ncheckpoint = cp\n")
    out = vantage("--config", str(conf))
    assert out.returncode == EXIT_CONFIG
    assert "channel is required" in out.stdout


def test_the_command_refuses_plain_http_to_another_host(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    conf = write_config(tmp_path, pinned(key), control_plane_url="http://cp.example.com:8443")
    out = vantage("--config", str(conf), "--check")
    assert out.returncode == EXIT_CONFIG
    assert "http:// only to a loopback address" in out.stdout


def test_check_mode_verifies_a_manifest_file(site: dict[str, Any], tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(release(site["key"], digest=D2, version="1.1", now=int(time.time()))))
    out = vantage("--config", site["conf"].path, "--check", "--manifest-file", str(good))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.splitlines()[0])["release"]["digest"] == D2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_tamper(json.loads(good.read_text()), digest=D3)))
    out = vantage("--config", site["conf"].path, "--check", "--manifest-file", str(bad))
    assert out.returncode == EXIT_REFUSED
    assert "bad_signature" in out.stdout
