"""The logic of roles/auto_update/files/vantage-checkpoint-update, imported by path.

Manifest verification against envelopes signed by the real ``vantage.protocol`` signer (tampered,
unknown key, expired, lower version, wrong channel, wrong type...), the replacement plan built from
``docker inspect`` data (hardening kept, fingerprint the one ``checkpoint_container`` computes),
pruning, the lock, and the rolling update with its gates and rollback against an in-memory engine
and control plane. The real engine, registry and control plane run in Molecule scenario ``update``.
"""

from __future__ import annotations

import base64
import copy
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import make_release
from vantage.protocol.keys import key_id, public_key_b64

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/auto_update/files/vantage-checkpoint-update"
LIB_DIR = ROOT / "plugins/module_utils"


def _load(name: str, path: Path) -> Any:
    sys.dont_write_bytecode = True  # no __pycache__ inside the role's files/
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


upd = _load("vantage_checkpoint_update", SCRIPT)
lib = upd.load_container_lib(str(LIB_DIR))

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
IMAGE = "127.0.0.1:5000/vantage/checkpoint"
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def trusted(*keys: Ed25519PrivateKey) -> dict[str, bytes]:
    doc = {"keys": [{"keyid": key_id(k), "public_key": public_key_b64(k), "status": "active"} for k in keys]}
    return upd.load_trusted_keys(doc, NOW)


def release(key: Ed25519PrivateKey, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"channel": "stable", "version": "1.2.0", "image": IMAGE, "digest": D2, "now": NOW}
    args.update(kw)
    return make_release(key, **args)


# ----------------------------------------------------------------------------- verification


def test_valid_manifest_verifies(key: Ed25519PrivateKey) -> None:
    got = upd.verify_release(release(key), trusted(key), "stable", installed_version="1.1.9", now=NOW + 10)
    assert got["version"] == "1.2.0"
    assert got["digest"] == D2
    assert got["image"] == IMAGE


def test_same_version_is_accepted(key: Ed25519PrivateKey) -> None:
    assert upd.verify_release(release(key), trusted(key), "stable", installed_version="1.2", now=NOW)


def _tamper(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload.update(changes)
    forged = dict(envelope)
    forged["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return forged


@pytest.mark.parametrize(
    "changes",
    [{"digest": D3}, {"version": "9.9.9"}, {"image": "evil.example/checkpoint"}, {"exp": NOW + 10**8}],
)
def test_tampered_payload_is_refused(key: Ed25519PrivateKey, changes: dict[str, Any]) -> None:
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(_tamper(release(key), **changes), trusted(key), "stable", now=NOW)
    assert info.value.check == "bad_signature"
    assert info.value.code == upd.EXIT_REFUSED


def test_tampered_payload_type_is_refused(key: Ed25519PrivateKey) -> None:
    envelope = dict(release(key), payloadType="application/vnd.vantage.instruction+json")
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(envelope, trusted(key), "stable", now=NOW)
    assert info.value.check == "bad_signature"  # the type is signed too (PAE)


def test_unknown_key_is_refused(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(release(other), trusted(key), "stable", now=NOW)
    assert info.value.check == "unknown_key"
    assert key_id(key) in info.value.reason  # names the pinned key


def test_signature_by_unknown_key_under_pinned_key_id_is_refused(key: Ed25519PrivateKey) -> None:
    forged = release(Ed25519PrivateKey.generate())
    forged["signatures"][0]["keyid"] = key_id(key)
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(forged, trusted(key), "stable", now=NOW)
    assert info.value.check == "bad_signature"


def test_retired_and_expired_keys_are_not_trusted(key: Ed25519PrivateKey) -> None:
    entry = {"keyid": key_id(key), "public_key": public_key_b64(key)}
    assert upd.load_trusted_keys({"keys": [dict(entry, status="retired")]}, NOW) == {}
    assert upd.load_trusted_keys({"keys": [dict(entry, not_after=NOW)]}, NOW) == {}
    assert key_id(key) in upd.load_trusted_keys({"keys": [dict(entry, not_after=NOW + 1)]}, NOW)


def test_trusted_keys_with_a_wrong_key_id_are_rejected(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="does not match"):
        upd.load_trusted_keys({"keys": [{"keyid": "0" * 16, "public_key": public_key_b64(key)}]}, NOW)


def test_expired_manifest_is_refused(key: Ed25519PrivateKey) -> None:
    envelope = release(key, lifetime=3600)
    assert upd.verify_release(envelope, trusted(key), "stable", now=NOW + 3600 + 300)
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(envelope, trusted(key), "stable", now=NOW + 3600 + 301)
    assert info.value.check == "expired"


def test_manifest_from_the_future_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(release(key, now=NOW + 1000), trusted(key), "stable", now=NOW)
    assert info.value.check == "not_yet_valid"


@pytest.mark.parametrize("installed", ["1.2.1", "1.10", "2"])
def test_lower_version_is_refused(key: Ed25519PrivateKey, installed: str) -> None:
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(release(key), trusted(key), "stable", installed_version=installed, now=NOW)
    assert info.value.check == "downgrade"


def test_wrong_channel_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(release(key, channel="beta"), trusted(key), "stable", now=NOW)
    assert info.value.check == "wrong_channel"


def test_wrong_payload_type_is_refused(key: Ed25519PrivateKey) -> None:
    from vantage.protocol.envelope import sign

    payload = base64.b64decode(release(key)["payload"])
    envelope = sign("application/vnd.vantage.instruction+json", payload, key)
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(envelope, trusted(key), "stable", now=NOW)
    assert info.value.check == "wrong_payload_type"


@pytest.mark.parametrize(
    ("envelope", "check"),
    [
        ([], "malformed_envelope"),
        ({"payloadType": "x", "payload": "!!", "signatures": [{"keyid": "a", "sig": "AA=="}]}, "malformed_envelope"),
        ({"payloadType": "x", "payload": "", "signatures": []}, "malformed_envelope"),
    ],
)
def test_malformed_envelopes_are_refused(key: Ed25519PrivateKey, envelope: Any, check: str) -> None:
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(envelope, trusted(key), "stable", now=NOW)
    assert info.value.check == check


def test_duplicate_keys_in_the_signed_payload_are_refused(key: Ed25519PrivateKey) -> None:
    from vantage.protocol.envelope import sign

    payload = (
        b'{"channel":"stable","channel":"beta","version":"1.0","image":"i","digest":"' + D2.encode()
        + b'","iat":%d,"exp":%d}' % (NOW, NOW + 60)
    )
    with pytest.raises(upd.Refused) as info:
        upd.verify_release(sign(upd.RELEASE_TYPE, payload, key), trusted(key), "stable", now=NOW)
    assert info.value.check == "malformed_payload"


def test_versions_compare_numerically() -> None:
    assert upd.compare_versions("1.10", "1.9") == 1
    assert upd.compare_versions("1.4", "1.4.0") == 0
    assert upd.compare_versions("0.9.9", "1") == -1
    with pytest.raises(ValueError):
        upd.parse_version("v1.2")


# ----------------------------------------------------------------------------- containers


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


def container_inspect(name: str, instance: str, image: dict[str, Any], digest: str, mask: tuple[str, ...] = ()) -> dict[str, Any]:
    """A container as checkpoint_container creates it, with the label it computes."""
    env = {
        "VANTAGE_CHECKPOINT": "cp",
        "VANTAGE_INSTANCE": instance,
        "VANTAGE_IMAGE_DIGEST": digest,
        "VANTAGE_CONTROL_PLANE_URL": "https://cp:8443",
    }
    container: dict[str, Any] = {
        "Id": f"{name}-id-{digest[7:11]}",
        "Name": "/" + name,
        "Image": image["Id"],
        "Config": {
            "User": "10001:10001",
            "Env": ["PATH=/usr/bin", "VANTAGE_IMAGE_VERSION=x"] + [f"{k}={v}" for k, v in env.items()],
            "Labels": {"io.vantage.checkpoint": "cp", "io.vantage.instance": instance, "image.label": "from-image"},
            "Healthcheck": {
                "Test": list(image["Config"]["Healthcheck"]["Test"]),
                "Interval": 2 * 10**9, "Timeout": 10 * 10**9, "Retries": 3, "StartPeriod": 6 * 10**9,
            },
            "StopTimeout": 15,
        },
        "HostConfig": {
            "Mounts": [{"Type": "bind", "Source": f"/etc/vantage/{instance}.pem", "Target": "/etc/vantage/identity.pem",
                        "ReadOnly": True}],
            "NetworkMode": "vantage-cp",
            "Memory": 268435456, "MemorySwap": 268435456, "NanoCpus": 10**9, "PidsLimit": 256,
            "RestartPolicy": {"Name": "unless-stopped"},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            "ReadonlyRootfs": True, "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
            "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"], "Privileged": False, "Init": True,
        },
        "State": {"Running": True, "Status": "running", "Health": {"Status": "healthy", "Log": []}},
        "RestartCount": 0,
    }
    settings = lib.observed_settings(container, image["Config"])
    for item in mask:
        settings[item] = None
    container["Config"]["Labels"]["io.vantage.config-hash"] = lib.config_hash(settings)
    return container


def test_replacement_keeps_the_hardening_and_computes_the_module_fingerprint() -> None:
    v1 = image_inspect("sha256:" + "a" * 64, D1)
    v2 = image_inspect("sha256:" + "b" * 64, D2)
    old = container_inspect("vantage-cp-a", "a", v1, D1)
    create, host_config, network, expected, label = upd.replacement_plan(lib, old, v1, v2, D2)
    assert host_config == old["HostConfig"] and host_config is not old["HostConfig"]
    assert network == "vantage-cp"
    assert create["environment"]["VANTAGE_IMAGE_DIGEST"] == D2
    assert "PATH" not in create["environment"]  # the image's own variables are not pinned
    assert create["user"] == "10001:10001"
    assert create["labels"] == {"io.vantage.checkpoint": "cp", "io.vantage.instance": "a", "io.vantage.config-hash": label}
    # what the module would compute for a container made from the new image with these settings
    new = container_inspect("vantage-cp-a", "a", v2, D2)
    assert new["Config"]["Labels"]["io.vantage.config-hash"] == label
    assert expected == lib.observed_settings(new, v2["Config"])


def test_replacement_takes_the_new_images_healthcheck_command_and_keeps_timings() -> None:
    v1 = image_inspect("sha256:" + "a" * 64, D1)
    v3 = image_inspect("sha256:" + "c" * 64, D3, test=["CMD-SHELL", "exit 1"])
    old = container_inspect("vantage-cp-a", "a", v1, D1)
    create, *_ = upd.replacement_plan(lib, old, v1, v3, D3)
    assert create["healthcheck"]["test"] == ["CMD-SHELL", "exit 1"]
    assert create["healthcheck"]["interval"] == 2 * 10**9
    assert create["healthcheck"]["start_period"] == 6 * 10**9


def test_replacement_keeps_the_mask_of_limits_the_engine_does_not_enforce() -> None:
    v1 = image_inspect("sha256:" + "a" * 64, D1)
    v2 = image_inspect("sha256:" + "b" * 64, D2)
    old = container_inspect("vantage-cp-a", "a", v1, D1, mask=("memory_swap",))
    *_, label = upd.replacement_plan(lib, old, v1, v2, D2)
    assert container_inspect("vantage-cp-a", "a", v2, D2, mask=("memory_swap",))["Config"]["Labels"][
        "io.vantage.config-hash"] == label


def test_hardening_differences_are_detected() -> None:
    v1 = image_inspect("sha256:" + "a" * 64, D1)
    old = container_inspect("vantage-cp-a", "a", v1, D1)
    weaker = copy.deepcopy(old)
    weaker["HostConfig"].update(CapDrop=[], ReadonlyRootfs=False, Privileged=True)
    before = lib.observed_settings(old, v1["Config"])
    after = lib.observed_settings(weaker, v1["Config"])
    assert upd.hardening_differences(lib, before, after) == ["read_only", "cap_drop", "privileged"]


def test_prune_keeps_current_previous_and_used_images() -> None:
    images = [
        {"Id": "old1", "RepoDigests": [f"{IMAGE}@{D1}"]},
        {"Id": "prev", "RepoDigests": [f"{IMAGE}@{D2}"]},
        {"Id": "cur", "RepoDigests": [f"{IMAGE}@{D3}"]},
        {"Id": "used", "RepoDigests": [f"{IMAGE}@sha256:{'4' * 64}"]},
        {"Id": "other", "RepoDigests": [f"other/repo@sha256:{'5' * 64}"]},
        {"Id": "local", "RepoDigests": []},
    ]
    assert upd.images_to_prune(images, IMAGE, {D2, D3}, {"used"}) == ["old1"]


def test_the_lock_keeps_a_second_run_out(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    held = upd.acquire_lock(str(path))
    assert held is not None
    code = "import sys; sys.path.insert(0, ''); " \
           "import importlib.machinery as m; u = m.SourceFileLoader('u', sys.argv[1]).load_module(); " \
           "print(u.acquire_lock(sys.argv[2]) is None)"
    out = subprocess.run([sys.executable, "-c", code, str(SCRIPT), str(path)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"
    held.close()
    out = subprocess.run([sys.executable, "-c", code, str(SCRIPT), str(path)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- the rolling update


class FakeEngine:
    """Containers and images in memory; an image labelled test.health=unhealthy never becomes healthy."""

    def __init__(self) -> None:
        self.images_by_ref: dict[str, dict[str, Any]] = {}
        self.containers_by_id: dict[str, dict[str, Any]] = {}
        self.registry: dict[str, dict[str, Any]] = {}  # digest -> image that a pull brings
        self.registry_up = True
        self.log: list[str] = []
        self.counter = 0

    def add_image(self, image: dict[str, Any], local: bool = True) -> None:
        digest = image["RepoDigests"][0].split("@")[1]
        self.registry[digest] = image
        if local:
            self.images_by_ref[image["Id"]] = image
            self.images_by_ref[image["RepoDigests"][0]] = image

    def image(self, ref: str) -> dict[str, Any] | None:
        return self.images_by_ref.get(ref)

    def images(self) -> list[dict[str, Any]]:
        return list({i["Id"]: i for i in self.images_by_ref.values()}.values())

    def pull(self, repository: str, digest: str) -> None:
        self.log.append(f"pull {digest[:9]}")
        if not self.registry_up:
            raise upd.EngineError("pulling: Get https://127.0.0.1:5000/v2/: connection refused")
        if digest not in self.registry:
            raise upd.EngineError(f"pulling: manifest for {repository}@{digest} not found")
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

    def containers(self) -> list[dict[str, Any]]:
        return [{"Id": c["Id"], "ImageID": c["Image"]} for c in self.containers_by_id.values()]

    def create(self, name: str, image_id: str, config: dict[str, Any], host_config: dict[str, Any], network: str) -> str:
        self.counter += 1
        image = self.images_by_ref[image_id]
        new_id = f"new{self.counter}"
        env = [e for e in image["Config"]["Env"] if e.split("=")[0] not in config["environment"]]
        env += [f"{k}={v}" for k, v in config["environment"].items()]
        hc = config.get("healthcheck")
        self.containers_by_id[new_id] = {
            "Id": new_id, "Name": "/" + name, "Image": image_id,
            "Config": {"User": config["user"], "Env": env,
                       "Labels": dict(image["Config"].get("Labels") or {}, **config["labels"]),
                       "Healthcheck": {"Test": hc["test"], "Interval": hc["interval"], "Timeout": hc["timeout"],
                                       "Retries": hc["retries"], "StartPeriod": hc["start_period"]} if hc else None,
                       "StopTimeout": config["stop_timeout"]},
            "HostConfig": copy.deepcopy(host_config),
            "State": {"Running": False, "Status": "created"}, "RestartCount": 0,
        }
        self.log.append(f"create {name} {image_id[7:10]}")
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

    def logs(self, container_id: str, lines: int = 10) -> str:
        return ""


class FakeControlPlane:
    """Health as the real one reports it: an instance whose container runs healthy is connected."""

    def __init__(self, engine: FakeEngine, envelope: dict[str, Any], remote: dict[str, bool] | None = None) -> None:
        self.engine = engine
        self.envelope = envelope
        self.remote = remote or {}  # instances on another host: name -> healthy
        self.health_calls = 0

    def release(self, channel: str) -> dict[str, Any]:
        return self.envelope

    def health(self, checkpoint: str) -> dict[str, Any]:
        self.health_calls += 1
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


@pytest.fixture
def site(tmp_path: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
    state = tmp_path / "state"
    state.mkdir()
    keys = tmp_path / "trusted-keys.json"
    keys.write_text(json.dumps({"keys": [{"keyid": key_id(key), "public_key": public_key_b64(key)}]}))
    token = tmp_path / "token"
    token.write_text("t\n")
    conf = tmp_path / "update.conf"
    conf.write_text(
        "# managed\n[update]\ncheckpoint = cp\nchannel = stable\ninstances = a b\n"
        f"control_plane_url = https://cp:8443/\napi_token_file = {token}\ntrusted_keys = {keys}\n"
        f"state_dir = {state}\nlib_dir = {LIB_DIR}\nlock_file = {tmp_path / 'lock'}\n"
        "health_timeout = 30\ngate_timeout = 20\npoll_interval = 1\n"
    )
    engine = FakeEngine()
    v1 = image_inspect("sha256:" + "a" * 64, D1)
    v2 = image_inspect("sha256:" + "b" * 64, D2)
    v3 = image_inspect("sha256:" + "c" * 64, D3, **{"test.health": "unhealthy"})
    engine.add_image(v1)
    engine.add_image(v2, local=False)
    engine.add_image(v3, local=False)
    for name in ("a", "b"):
        c = container_inspect(f"vantage-cp-{name}", name, v1, D1)
        engine.containers_by_id[c["Id"]] = c
    return {"conf": upd.Config(str(conf)), "engine": engine, "state": state, "key": key}


def run(site: dict[str, Any], envelope: dict[str, Any], remote: dict[str, bool] | None = None) -> tuple[Any, ...]:
    clock = Clock()
    cp = FakeControlPlane(site["engine"], envelope, remote)
    updater = upd.Updater(site["conf"], cp, site["engine"], lib, clock=clock, sleep=clock.sleep,
                          wall=lambda: NOW + 60)
    try:
        return updater.run(), updater
    except upd.UpdateError as exc:
        return (exc.code, exc.result, exc.reason), updater


def running(engine: FakeEngine) -> dict[str, str]:
    return {c["Name"][1:]: dict(e.split("=", 1) for e in c["Config"]["Env"])["VANTAGE_IMAGE_DIGEST"]
            for c in engine.containers_by_id.values()}


def test_update_replaces_one_instance_at_a_time_and_records_the_release(site: dict[str, Any]) -> None:
    (code, result, _reason), updater = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (0, "updated")
    assert running(site["engine"]) == {"vantage-cp-a": D2, "vantage-cp-b": D2}
    log = [e for e in site["engine"].log if not e.startswith("pull")]
    # a is stopped and its replacement started before b is touched
    assert log.index("start vantage-cp-a bbb") < log.index("stop vantage-cp-b-previous")
    record = json.loads((site["state"] / "release.json").read_text())
    assert (record["version"], record["digest"], record["previous"]["digest"]) == ("1.1", D2, D1)
    assert [i["result"] for i in updater.status["instances"]] == ["replaced", "replaced"]
    # the new containers carry the fingerprint checkpoint_container computes
    for c in site["engine"].containers_by_id.values():
        settings = lib.observed_settings(c, site["engine"].image(c["Image"])["Config"])
        assert c["Config"]["Labels"]["io.vantage.config-hash"] == lib.config_hash(settings)
        assert c["HostConfig"]["CapDrop"] == ["ALL"] and c["HostConfig"]["ReadonlyRootfs"] is True
    # a second run has nothing to do
    (code, result, _reason), _ = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (0, "up_to_date")


def test_failing_release_is_rolled_back_and_not_retried(site: dict[str, Any]) -> None:
    run(site, release(site["key"], digest=D2, version="1.1"))
    before = running(site["engine"])
    (code, result, reason), updater = run(site, release(site["key"], digest=D3, version="1.2"))
    assert (code, result) == (upd.EXIT_FAILED, "rolled_back")
    assert "not healthy within 30 s" in reason and "unhealthy" in reason
    assert running(site["engine"]) == before
    assert all(c["State"]["Health"]["Status"] == "healthy" for c in site["engine"].containers_by_id.values())
    assert json.loads((site["state"] / "release.json").read_text())["version"] == "1.1"
    # the runner writes the status file; emulate it and check the release is not retried
    upd.write_json(site["conf"].status_file, dict(updater.status, result=result))
    (code, result, reason), _ = run(site, release(site["key"], digest=D3, version="1.2"))
    assert (code, result) == (upd.EXIT_FAILED, "failed") and "not retried" in reason
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
    (code, result, _reason), updater = run(site, release(site["key"], digest=D2, version="1.1"))
    assert (code, result) == (upd.EXIT_FAILED, "rolled_back")
    assert running(engine) == {"vantage-cp-a": D1, "vantage-cp-b": D1}
    assert [i["result"] for i in updater.status["instances"]] == ["replaced", "rolled_back", "rolled_back"]
    assert not (site["state"] / "release.json").exists()


def test_unhealthy_partner_defers_the_update(site: dict[str, Any]) -> None:
    (code, result, reason), _ = run(site, release(site["key"], digest=D2, version="1.1"), remote={"c": False})
    assert (code, result) == (upd.EXIT_DEFERRED, "deferred")
    assert "instance c is not connected and healthy" in reason
    assert running(site["engine"]) == {"vantage-cp-a": D1, "vantage-cp-b": D1}


@pytest.mark.parametrize("registry_up", [True, False])
def test_missing_image_changes_nothing(site: dict[str, Any], registry_up: bool) -> None:
    site["engine"].registry_up = registry_up
    missing = "sha256:" + "9" * 64
    (code, result, reason), _ = run(site, release(site["key"], digest=missing, version="1.1"))
    assert (code, result) == (upd.EXIT_IMAGE, "image_unavailable")
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
        assert (code, result) == (upd.EXIT_REFUSED, "refused")
        assert reason.startswith(check)
    assert site["engine"].containers_by_id == before


def test_prune_after_two_updates(site: dict[str, Any]) -> None:
    engine = site["engine"]
    v4 = image_inspect("sha256:" + "d" * 64, "sha256:" + "4" * 64)
    engine.add_image(v4, local=False)
    run(site, release(site["key"], digest=D2, version="1.1"))
    assert "rmi" not in " ".join(engine.log)  # v1 is the previous release: kept
    (code, result, _), updater = run(site, release(site["key"], digest="sha256:" + "4" * 64, version="1.3"))
    assert (code, result) == (0, "updated")
    assert updater.status["pruned"] == ["sha256:" + "a" * 64]  # v1 removed, v2 (previous) kept
    assert engine.image("sha256:" + "b" * 64) is not None


def test_main_reports_config_errors(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("[update]\ncheckpoint = cp\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "--config", str(conf)], capture_output=True, text=True, check=False)
    assert out.returncode == upd.EXIT_CONFIG
    assert "channel is required" in out.stdout


def test_main_check_mode_verifies_a_manifest_file(site: dict[str, Any], tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(release(site["key"], digest=D2, version="1.1", now=int(time.time()))))
    out = subprocess.run([sys.executable, str(SCRIPT), "--config", site["conf"].path, "--check",
                          "--manifest-file", str(good)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.splitlines()[0])["release"]["digest"] == D2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_tamper(json.loads(good.read_text()), digest=D3)))
    out = subprocess.run([sys.executable, str(SCRIPT), "--config", site["conf"].path, "--check",
                          "--manifest-file", str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode == upd.EXIT_REFUSED
    assert "bad_signature" in out.stdout
