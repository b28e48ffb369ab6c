# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""checkpoint_health: the verdict on its own, and the module against a fake control plane served
over real HTTP on loopback (with a stand-in engine for the local checks)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from ansible_collections.vantage.checkpoint.plugins.modules import checkpoint_health
from ansible_collections.vantage.checkpoint.plugins.module_utils import _health

DIGEST = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64


def instance(name, connected=True, healthy=True, digest=DIGEST, heartbeat_ago=2.0, reasons=None, now=1000000.0):
    return dict(
        name=name,
        connected=connected,
        healthy=healthy,
        last_heartbeat=now - heartbeat_ago if heartbeat_ago is not None else None,
        version="0.1.0",
        image_digest=digest,
        reasons=list(reasons or []),
        host={},
        data_protection={},
    )


def health(state="active", instances=None, reasons=None):
    return dict(checkpoint="office", state=state, healthy=state == "active", reasons=list(reasons or []),
                instances=instances if instances is not None else [instance("a"), instance("b")])


def report(answer, alerts=None, **kwargs):
    kwargs.setdefault("now", 1000000.0)
    return _health.build_report("office", "https://cp.test", answer, alerts or [], **kwargs)


# ----------------------------------------------------------------------------- the verdict


def test_healthy_pair():
    result = report(health(), clock_offset=0.4, max_clock_offset=30)
    assert (result["healthy"], result["state"], result["degraded"], result["reasons"]) == (True, "active", False, [])
    assert (result["healthy_instances"], result["min_healthy"]) == (2, 2)
    assert result["checked_at"] == "1970-01-12T13:46:40Z" and result["clock_offset_s"] == 0.4
    a = result["instances"][0]
    assert a == dict(name="a", connected=True, healthy=True, last_heartbeat_age_s=1.6, version="0.1.0",
                     image_digest=DIGEST, reasons=[], local=None)


def test_one_instance_down_is_degraded_and_unhealthy_unless_min_healthy_allows_it():
    down = instance("b", connected=False, healthy=False, heartbeat_ago=40, reasons=["instance b is not connected (last heartbeat 40 s ago)"])
    result = report(health(instances=[instance("a"), down]))
    assert result["healthy"] is False and result["degraded"] is True and result["state"] == "active"
    assert result["reasons"] == [
        "checkpoint office has 1 healthy instance of 2 expected, at least 2 required",
        "instance b is not connected (last heartbeat 40 s ago)",
    ]
    assert result["instances"][1]["last_heartbeat_age_s"] == 40.0
    tolerant = report(health(instances=[instance("a"), down]), min_healthy=1)
    assert tolerant["healthy"] is True and tolerant["degraded"] is True
    assert tolerant["reasons"] == ["instance b is not connected (last heartbeat 40 s ago)"]


def test_unavailable_lists_every_reason_and_the_alert():
    instances = [instance(n, connected=False, healthy=False, heartbeat_ago=None, reasons=["instance %s is not connected (last heartbeat never)" % n])
                 for n in ("a", "b")]
    alert = dict(kind="checkpoint_unavailable", opened_at=5.0, message="no instance of checkpoint office has been connected for 12 s")
    result = report(health("unavailable", instances), alerts=[alert])
    assert result["healthy"] is False and result["degraded"] is False
    assert result["reasons"] == [
        "checkpoint office is unavailable at the control plane",
        "checkpoint office has an open checkpoint_unavailable alert: no instance of checkpoint office has been connected for 12 s",
        "checkpoint office has 0 healthy instances of 2 expected, at least 2 required",
        "instance a is not connected (last heartbeat never)",
        "instance b is not connected (last heartbeat never)",
    ]
    assert result["instances"][0]["last_heartbeat_age_s"] is None


def test_disabled_unknown_instance_digest_and_clock():
    answer = health("disabled", reasons=["checkpoint is disabled: maintenance window"])
    result = report(answer, expected=["a", "c"], min_healthy=1, image_digest=OTHER, clock_offset=-45.0, max_clock_offset=30)
    assert result["healthy"] is False
    assert result["reasons"] == [
        "checkpoint office is disabled at the control plane: maintenance window",
        "the clock of this host is 45.0 s behind the control plane's (more than 30 s): signed instructions live 5 minutes "
        "and may be refused; fix the time synchronisation",
        "checkpoint office has 0 healthy instances of 2 expected, at least 1 required",
        "instance a runs image %s, expected %s" % (DIGEST, OTHER),
        "instance c is not enrolled at the control plane",
    ]
    # without max_clock_offset (no local engine) the offset is reported, not judged
    assert report(health(), clock_offset=-45.0)["healthy"] is True


def test_no_instance_at_all_is_unhealthy():
    result = report(health(instances=[]))
    assert result["healthy"] is False and result["reasons"][0] == "checkpoint office has no enrolled instance"


# ----------------------------------------------------------------------------- local findings


class Stat:
    def __init__(self, mode, size=119):
        self.st_mode = mode
        self.st_size = size


def container(instance_name="a", running=True, health_status="healthy", image=DIGEST, key="/etc/vantage/checkpoints/office/a/identity.pem", labels=None):
    return {
        "Id": "c" * 64,
        "Image": image,
        "State": {"Running": running, "Status": "running" if running else "exited", "ExitCode": 0 if running else 143,
                  "Health": {"Status": health_status}},
        "Config": {"Labels": labels if labels is not None else {"io.vantage.checkpoint": "office", "io.vantage.instance": instance_name}},
        "Mounts": [{"Destination": "/etc/vantage/identity.pem", "Source": key}] if key else [],
    }


def test_local_findings_of_a_good_instance():
    local, reasons = _health.local_findings("office", "a", container(), {"RepoDigests": ["reg/vantage/checkpoint@" + OTHER]}, Stat(0o100600), "healthy")
    assert reasons == []
    assert local == dict(container="vantage-office-a", running=True, health="healthy", image_id=DIGEST,
                         image_digests=sorted([DIGEST, OTHER]), identity_key="/etc/vantage/checkpoints/office/a/identity.pem",
                         identity_key_mode="0600")


def test_local_findings_list_every_problem():
    local, reasons = _health.local_findings(
        "office", "a", container(running=False, labels={"io.vantage.checkpoint": "other"}), None, Stat(0o100644), "exited"
    )
    assert local["running"] is False and local["identity_key_mode"] == "0644"
    assert reasons == [
        "instance a: container vantage-office-a is not labelled as instance a of checkpoint office (io.vantage.checkpoint=other, "
        "io.vantage.instance=None); it was not made by checkpoint_container",
        "instance a: container vantage-office-a is not running (state exited, exit code 143)",
        "instance a: identity key /etc/vantage/checkpoints/office/a/identity.pem has mode 0644, expected 0600 (readable by others)",
    ]
    missing = OSError(2, "No such file or directory")
    dummy, reasons = _health.local_findings("office", "a", container(health_status="unhealthy"), None, missing, "unhealthy")
    assert reasons == [
        "instance a: container vantage-office-a is unhealthy according to its Docker health check",
        "instance a: identity key /etc/vantage/checkpoints/office/a/identity.pem cannot be read: No such file or directory",
    ]
    dummy, reasons = _health.local_findings("office", "a", container(key=None), None, None, "healthy")
    assert reasons == ["instance a: container vantage-office-a mounts no identity key at /etc/vantage/identity.pem"]
    local, reasons = _health.local_findings("office", "a", None, None, None, "missing")
    assert local["health"] == "missing" and reasons == ["instance a: container vantage-office-a does not exist on this host"]


def test_local_image_must_be_what_the_control_plane_reports():
    local = _health.local_findings("office", "a", container(image=OTHER), None, Stat(0o100600), "healthy")
    result = report(health(), expected=["a"], local={"a": local}, image_digest=DIGEST)
    assert result["healthy"] is False
    assert result["instances"][0]["reasons"] == [
        "instance a: the control plane reports image %s but container vantage-office-a runs %s" % (DIGEST, OTHER),
        "instance a: container vantage-office-a runs %s, expected image %s" % (OTHER, DIGEST),
    ]


# ----------------------------------------------------------------------------- the module


@pytest.fixture
def cp(control_plane):
    """The fake control plane, with the health, status and alerts endpoints of the contract."""
    control_plane.health = {"office": health(instances=[instance("a", now=time.time()), instance("b", now=time.time())])}
    control_plane.alerts = []
    control_plane.health_answers = []  # answers served (in order) before control_plane.health
    plain = control_plane.handle

    def handle(method, path, body, authorization):
        if path == "/api/v1/status":
            control_plane.requests.append((method, path, body, authorization))
            return 200, {"status": "ok", "version": "0.1.0"}, {}
        if path.startswith("/api/v1/checkpoints/") and path.endswith("/health") or path.startswith("/api/v1/alerts"):
            if authorization not in ("Bearer " + control_plane.GOOD_TOKEN, "Bearer " + control_plane.READ_TOKEN):
                control_plane.requests.append((method, path, body, authorization))
                return 401, {"error": "invalid token"}, {}
            control_plane.requests.append((method, path, body, authorization))
            if path.startswith("/api/v1/alerts"):
                return 200, {"alerts": control_plane.alerts}, {}
            name = path.split("/")[4]
            if name not in control_plane.health:
                return 404, {"error": "unknown checkpoint %r" % name, "field": "checkpoint"}, {}
            if control_plane.health_answers:
                return 200, control_plane.health_answers.pop(0), {}
            return 200, control_plane.health[name], {}
        return plain(method, path, body, authorization)

    control_plane.handle = handle
    return control_plane


@pytest.fixture
def check(run_module, cp):
    def run(check_mode=False, **args):
        params = dict(control_plane_url=cp.url, api_token=cp.READ_TOKEN, checkpoint="office", timeout=10)
        params.update(args)
        outcome = run_module(checkpoint_health.main, params, check_mode=check_mode)
        for token in (cp.GOOD_TOKEN, cp.READ_TOKEN, "wrong-token-abcdefghijklmnop"):
            assert token not in outcome.output
        return outcome

    return run


def test_module_healthy_read_only_and_in_check_mode(check, cp):
    for check_mode in (False, True):
        run = check(check_mode=check_mode)
        assert not run.failed and run.result["changed"] is False
        assert run.result["healthy"] is True and run.result["state"] == "active" and run.result["reasons"] == []
        assert [i["name"] for i in run.result["report"]["instances"]] == ["a", "b"]
        assert abs(run.result["report"]["clock_offset_s"]) < 2
    assert {m for m, p, b, a in cp.requests} == {"GET"}
    assert ("GET", "/api/v1/status", None, None) in cp.requests  # the clock is read without the token


def test_module_fails_with_every_reason(check, cp):
    now = time.time()
    cp.health["office"] = health(instances=[
        instance("a", connected=False, healthy=False, reasons=["instance a is not connected (last heartbeat 30 s ago)"], now=now),
        instance("b", connected=False, healthy=False, reasons=["instance b is not connected (last heartbeat 31 s ago)"], now=now),
    ], state="unavailable")
    cp.alerts = [dict(id=1, kind="checkpoint_unavailable", subject="office", opened_at=now, closed_at=None, message="gone"),
                 dict(id=2, kind="checkpoint_unavailable", subject="elsewhere", opened_at=now, closed_at=None, message="x")]
    run = check()
    assert run.failed
    assert run.result["msg"] == (
        "checkpoint office is not healthy (state unavailable): checkpoint office is unavailable at the control plane; "
        "checkpoint office has an open checkpoint_unavailable alert: gone; "
        "checkpoint office has 0 healthy instances of 2 expected, at least 2 required; "
        "instance a is not connected (last heartbeat 30 s ago); instance b is not connected (last heartbeat 31 s ago)"
    )
    assert run.result["report"]["alerts"] == [dict(kind="checkpoint_unavailable", opened_at=now, message="gone")]
    collected = check(fail_on_unhealthy=False)
    assert not collected.failed and collected.result["healthy"] is False and len(collected.result["reasons"]) == 5


def test_module_waits_until_healthy(check, cp):
    now = time.time()
    b_down = instance("b", connected=False, healthy=False, now=now, reasons=["instance b is not connected"])
    down = health(instances=[instance("a", now=now), b_down])
    cp.health_answers = [down, down]
    run = check(wait=True, poll_interval=0.1)
    assert not run.failed and run.result["healthy"] is True and run.result["attempts"] == 3


def test_module_wait_gives_up_at_the_timeout(check, cp):
    now = time.time()
    cp.health["office"] = health(instances=[instance("a", now=now), instance("b", connected=False, healthy=False, now=now)])
    started = time.monotonic()
    # a timeout far above the poll interval: a loaded machine still polls more than once
    run = check(wait=True, wait_timeout=3, poll_interval=0.2)
    assert run.failed and "after waiting 3 s" in run.result["msg"] and run.result["attempts"] >= 2  # polled again before giving up
    assert "instance b is not healthy according to the control plane" in run.result["msg"]
    assert time.monotonic() - started < 15


def test_module_errors_are_distinct(check, cp):
    run = check(checkpoint="nowhere", wait=True)
    assert run.failed and run.result["msg"] == "checkpoint nowhere is not known to the control plane at %s" % cp.url
    assert run.result["attempts"] == 1 and run.result["state"] == "unknown"

    run = check(api_token="wrong-token-abcdefghijklmnop")
    assert run.failed and run.result["msg"].startswith("authentication failed: the control plane at %s rejected the API token" % cp.url)
    assert run.result["status"] == 401

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = check(control_plane_url="http://127.0.0.1:%d" % port)
    assert run.failed and run.result["msg"].startswith("cannot reach the control plane at http://127.0.0.1:%d: " % port)
    assert run.result["report"]["reasons"] == [run.result["msg"]]


@pytest.mark.parametrize("args, message", [
    (dict(checkpoint="Office"), "checkpoint must be 1 to 63 characters a-z, 0-9 and '-', starting with a letter or digit, got 'Office'"),
    (dict(instances=["a", "a"]), "instances lists a twice"),
    (dict(instances=["a"], local_instances=["b"]), "local_instances lists b, which instances does not list"),
    (dict(instances=["a"], min_healthy=2), "min_healthy is 2 but instances lists only 1 instance(s)"),
    (dict(image_digest="latest"), "image_digest must be sha256:<64 lower-case hex digits>, got 'latest'"),
    (dict(poll_interval=0), "poll_interval must be a positive number of seconds"),
])
def test_module_bad_options(check, args, message):
    run = check(**args)
    assert run.failed and message in run.result["msg"]


class FakeEngine:
    def __init__(self, containers):
        self.containers = containers

    def container(self, name):
        return self.containers.get(name)

    def image(self, reference):
        return {"Id": reference, "RepoDigests": []}


def test_module_local_engine(check, cp, tmp_path, monkeypatch):
    key = tmp_path / "identity.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(str(key), 0o644)
    engine = FakeEngine({"vantage-office-a": container("a", key=str(key))})

    def connect(self, docker_host):
        assert docker_host == "unix:///var/run/docker.sock"
        return engine, lambda c: (c.get("State") or {}).get("Health", {}).get("Status", "none")

    monkeypatch.setattr(checkpoint_health.HealthCheck, "connect_engine", connect)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    run = check(local_engine=True, local_instances=["a"], image_digest="registry.test/vantage/checkpoint@" + DIGEST)
    assert run.failed
    a, b = run.result["report"]["instances"]
    assert a["local"]["identity_key_mode"] == "0644" and b["local"] is None
    assert run.result["reasons"] == [
        "checkpoint office has 1 healthy instance of 2 expected, at least 2 required",
        "instance a: identity key %s has mode 0644, expected 0600 (readable by others)" % key,
    ]
    os.chmod(str(key), 0o600)
    run = check(local_engine=True, local_instances=["a"])
    assert not run.failed and run.result["report"]["instances"][0]["local"]["health"] == "healthy"
    # the host's clock is judged only with the local engine
    run = check(local_engine=True, local_instances=["a"], max_clock_offset=0)
    assert run.failed and "the clock of this host is" in run.result["msg"]
