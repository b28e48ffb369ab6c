"""Pure logic of the control plane: tokens, scopes, health/state, instance choice, results, alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from sqlalchemy import text

from vantage.control_plane.alerts import (
    CHECKPOINT_UNAVAILABLE,
    MONITOR_DOWN,
    close_alert,
    is_open,
    list_alerts,
    open_alert,
    open_counts,
)
from vantage.control_plane.auth import (
    TokenStore,
    allows,
    hash_token,
    new_token,
    read_token_file,
)
from vantage.control_plane.db import Checkpoint, Instance
from vantage.control_plane.health import OFFLINE, Presence, checkpoint_health, checkpoint_state, presence
from vantage.control_plane.instructions import BATCH_BYTES, BATCH_ITEMS, batches, sign_payload, stored_payload
from vantage.control_plane.scheduler import Candidate, IncomingResult, choose, parse_result, protect
from vantage.control_plane.sessions import LiveSession, Registry, SessionError, TokenBucket, sanitize_health
from vantage.control_plane.store import Store
from vantage.protocol import generate_key, instruction_payload

# --- tokens and scopes ----------------------------------------------------------------------


def test_token_hash_and_entropy() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("vt_") and len(a) >= 40
    assert hash_token(a) == hash_token(a) and len(hash_token(a)) == 64 and a not in hash_token(a)


@pytest.mark.parametrize(
    ("scopes", "permission", "expected"),
    [
        ({"read"}, "read", True), ({"read"}, "enroll", False), ({"read"}, "admin", False),
        ({"enroll"}, "read", True), ({"enroll"}, "enroll", True), ({"enroll"}, "admin", False),
        ({"admin"}, "read", True), ({"admin"}, "enroll", True), ({"admin"}, "admin", True),
        (set(), "read", False),
    ],
)
def test_scope_rules(scopes: set[str], permission: str, expected: bool) -> None:
    assert allows(frozenset(scopes), permission) is expected


def test_read_token_file(tmp_path: Path) -> None:
    good = tmp_path / "t"
    good.write_text("  s3cret-token-of-enough-length\n")
    assert read_token_file(str(good)) == "s3cret-token-of-enough-length"
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ValueError, match="at least 16") as info:
        read_token_file(str(short))
    assert "abc" not in str(info.value)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(str(tmp_path / "missing"))


async def test_bootstrap_token_replaced_when_file_changes(tmp_path: Path) -> None:
    db = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await db.create_schema()
    store = TokenStore(db)
    await store.install_bootstrap("first-admin-token-123456")
    await store.install_bootstrap("first-admin-token-123456")
    assert [t.name for t in await store.list()] == ["bootstrap-admin"]
    assert await store.authenticate("first-admin-token-123456") is not None
    await store.install_bootstrap("second-admin-token-123456")
    assert await store.authenticate("first-admin-token-123456") is None
    principal = await store.authenticate("second-admin-token-123456")
    assert principal is not None and principal.scopes == frozenset({"admin"})
    row, secret = await store.create("reader", ["read"])
    assert await store.authenticate(secret) is not None and row.token_hash == hash_token(secret)
    stored = await db.run(lambda session: [r[0] for r in session.execute(text("select token_hash from api_tokens"))])
    assert secret not in stored and "second-admin-token-123456" not in stored
    db.close()


# --- health and states -------------------------------------------------------------------------------


def _cp(admin_state: str = "active", reason: str | None = None) -> Checkpoint:
    return Checkpoint(name="cp", description="", labels_json="{}", admin_state=admin_state,
                      disabled_reason=reason, created_at=0.0, updated_at=0.0)


def _inst(name: str, last_heartbeat: float | None = None, health: str | None = None) -> Instance:
    return Instance(checkpoint="cp", name=name, public_key="k", keyid="0" * 16, enrolled_at=0.0, updated_at=0.0,
                    last_heartbeat=last_heartbeat, health_json=health, seq=0, healthy=True)


HEALTHY = Presence(True, True)
SICK = Presence(True, False)


@pytest.mark.parametrize(
    ("admin", "lives", "state"),
    [
        ("active", [HEALTHY, OFFLINE], "active"),
        ("active", [SICK, SICK], "maintenance"),
        ("active", [SICK, HEALTHY], "active"),
        ("active", [OFFLINE, OFFLINE], "unavailable"),
        ("active", [], "unavailable"),
        ("disabled", [HEALTHY], "disabled"),
    ],
)
def test_checkpoint_state(admin: str, lives: list[Presence], state: str) -> None:
    assert checkpoint_state(_cp(admin), lives) == state


def test_presence_needs_a_session_on_a_live_replica() -> None:
    inst = _inst("a")
    assert presence(inst, {"r1"}) == OFFLINE
    inst.replica_id, inst.session_id, inst.healthy = "r1", "s1", True
    assert presence(inst, {"r1"}) == HEALTHY
    assert presence(inst, {"r2"}) == OFFLINE  # its replica stopped beating
    inst.healthy = False
    assert presence(inst, {"r1"}) == SICK


def test_health_reasons() -> None:
    insts = [_inst("a", 958.0, '{"healthy": false, "reasons": ["disk full"], "version": "0.1.0"}'), _inst("b", 958.0)]
    insts[0].replica_id, insts[0].session_id, insts[0].healthy = "r1", "s1", False
    report = checkpoint_health(_cp(), insts, {"r1"}, t=1000.0)
    assert report["state"] == "maintenance" and report["healthy"] is False
    assert report["reasons"] == ["instance a: disk full", "instance b is not connected (last heartbeat 42 s ago)"]
    assert report["instances"][0]["version"] == "0.1.0" and report["instances"][0]["connected"] is True
    insts[0].healthy = True
    insts[1].replica_id, insts[1].session_id, insts[1].healthy = "r2", "s2", True
    ok = checkpoint_health(_cp(), insts, {"r1", "r2"}, t=1000.0)
    assert ok["state"] == "active" and ok["healthy"] is True and ok["reasons"] == []
    degraded = checkpoint_health(_cp(), insts, {"r1"}, t=1000.0)
    assert degraded["state"] == "active" and degraded["healthy"] is False


# --- instance choice ------------------------------------------------------------------------------------


def _cand(name: str, healthy: bool = True, pending: int = 0) -> Candidate:
    return Candidate(name, "r1", healthy, pending, "http://x:80")


def test_choose_avoids_last_instance_when_possible() -> None:
    a, b = _cand("a"), _cand("b")
    for _ in range(20):
        assert choose([a, b], avoid="a") is b
    assert choose([a], avoid="a") is a
    assert choose([], avoid=None) is None


def test_choose_prefers_healthy_and_least_busy() -> None:
    a, b, c = _cand("a", healthy=False), _cand("b", pending=2), _cand("c", pending=0)
    for _ in range(20):
        assert choose([a, b, c], avoid=None) is c
    assert choose([a], avoid=None) is a  # only an unhealthy one: still better than nothing


def test_retry_goes_to_another_instance_even_if_unhealthy() -> None:
    a, b = _cand("a"), _cand("b", healthy=False)
    for _ in range(20):
        assert choose([a, b], avoid="a", strict=True) is b
    assert choose([a], avoid="a", strict=True) is a


# --- results and heartbeats -----------------------------------------------------------------------------


def test_parse_result_accepts_protocol_shape() -> None:
    r = parse_result({"id": "c1", "check_id": "c1", "monitor_id": "m", "attempt": 1, "ok": True, "error": None,
                      "duration_ms": 12.5, "started_at": 1700000000.123, "phases": {"dns_ms": 0.4},
                      "details": {"status_code": 200}})
    assert r.ok is True and r.duration_ms == 12.5 and r.phases == {"dns_ms": 0.4}


@pytest.mark.parametrize(
    "bad",
    [{"ok": True}, {"id": "", "ok": True}, {"id": "x" * 200, "ok": True}, {"id": "a", "ok": "yes"},
     {"id": "a", "ok": True, "duration_ms": "fast"}, {"id": "a", "ok": True, "details": []},
     {"id": "a", "ok": True, "started_at": True}],
)
def test_parse_result_rejects_malformed(bad: dict[str, Any]) -> None:
    with pytest.raises(SessionError) as info:
        parse_result(bad)
    assert info.value.reason == "malformed_result"


def test_parse_result_bounds_large_details() -> None:
    r = parse_result({"id": "a", "ok": True, "details": {"x": "y" * 300_000}, "error": "e" * 10_000})
    assert r.details == {"truncated": True} and r.error is not None and len(r.error) == 4000


def test_protect_strips_per_reported_switches() -> None:
    incoming = IncomingResult(id="a", check_id="a", ok=False, error="refused by 192.0.2.7", duration_ms=None,
                              started_at=None, phases={}, details={"headers": {"a": "b"}, "body_excerpt": "x",
                                                                   "status_code": 500})
    same, changed = protect(incoming, {})
    assert same is incoming and not changed
    cleaned, changed = protect(incoming, {"strip_headers": True, "strip_ips": True})
    assert changed and cleaned.details == {"body_excerpt": "x", "status_code": 500}
    assert cleaned.error is not None and "192.0.2.7" not in cleaned.error


def test_sanitize_health_keeps_documented_fields_only() -> None:
    health = sanitize_health({
        "version": "0.1.0", "healthy": True, "reasons": ["a", 5], "secret": "x",
        "host": {"hostname": "h", "cpu_count": 4, "evil": "x", "dns_servers": ["10.0.0.1", 3]},
        "data_protection": {"strip_ips": True, "strip_content": "yes"},
    })
    assert "secret" not in health and "evil" not in health["host"]
    assert health["reasons"] == ["a"] and health["host"]["dns_servers"] == ["10.0.0.1"]
    assert health["data_protection"] == {"strip_content": False, "strip_headers": False, "strip_ips": True}
    assert sanitize_health({"healthy": "true"})["healthy"] is False
    with pytest.raises(SessionError):
        sanitize_health("nope")


def test_sanitize_health_keeps_announced_features_bounded() -> None:
    assert sanitize_health({"features": ["instruction_batch"]})["features"] == ["instruction_batch"]
    hostile = ["instruction_batch", "instruction_batch", "UPPER", "x" * 33, "<script>", 7, None, {"a": 1}, "ok_2"]
    assert sanitize_health({"features": hostile})["features"] == ["instruction_batch", "ok_2"]
    assert sanitize_health({"features": [f"f{n}" for n in range(100)]})["features"] == [f"f{n}" for n in range(16)]
    for not_a_list in ("instruction_batch", {"instruction_batch": True}, 1, None):
        assert sanitize_health({"features": not_a_list})["features"] == []
    assert sanitize_health({})["features"] == []
    session = _session("a")
    assert not session.has_feature("instruction_batch")  # nothing announced before the first heartbeat
    session.health = sanitize_health({"features": ["instruction_batch"]})
    assert session.has_feature("instruction_batch") and not session.has_feature("other")


def test_batches_are_bounded_in_items_and_bytes() -> None:
    small = [{"n": n} for n in range(150)]
    assert [len(b) for b in batches(small)] == [BATCH_ITEMS, BATCH_ITEMS, 150 - 2 * BATCH_ITEMS]
    assert [p for b in batches(small) for p in b] == small  # order kept
    big = [{"n": n, "pad": "x" * (BATCH_BYTES // 3)} for n in range(7)]
    assert [len(b) for b in batches(big)] == [2, 2, 2, 1]
    huge = [{"pad": "x" * (BATCH_BYTES + 1)}, {"n": 1}]
    assert [len(b) for b in batches(huge)] == [1, 1]  # one oversized payload still goes, alone
    assert list(batches([])) == []


def test_stored_payload_reads_payloads_and_older_envelopes() -> None:
    key = generate_key()
    payload = instruction_payload(iss="https://cp", aud="cp/a", kind="ping", body={}, seq=3)
    assert stored_payload(json.dumps(payload)) == payload
    envelope = sign_payload(key, payload)  # a row written when whole envelopes were stored
    assert stored_payload(json.dumps(envelope)) == payload
    assert sign_payload(key, payload) == envelope  # same payload bytes: a resend has the same nonce


def test_token_bucket_limits_bursts() -> None:
    bucket = TokenBucket(rate=0.0, burst=3)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]


def _session(name: str) -> LiveSession:
    return LiveSession(checkpoint="cp", instance=name, ws=MagicMock(), control_plane="http://x:80", peer="p")


def test_registry_one_session_per_instance() -> None:
    reg = Registry()
    a1, a2 = _session("a"), _session("a")
    assert a1.healthy and a1.session_id != a2.session_id
    assert reg.add(a1) is None
    assert reg.add(a2) is a1
    assert reg.remove(a1) is False  # replaced: removing the old one changes nothing
    assert reg.get("cp", "a") is a2 and len(reg) == 1
    assert reg.remove(a2) is True and len(reg) == 0


# --- alerts ------------------------------------------------------------------------------------------------


async def test_alerts_open_once_and_close(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.create_schema()
    first = await store.run(open_alert, MONITOR_DOWN, "m1", "down", 1.0)
    assert first is not None and first.event == "opened"
    assert await store.run(open_alert, MONITOR_DOWN, "m1", "still down", 2.0) is None
    assert await store.run(open_alert, CHECKPOINT_UNAVAILABLE, "m1", "other kind", 3.0) is not None
    assert await store.run(is_open, MONITOR_DOWN, "m1")
    assert await store.run(open_counts) == {MONITOR_DOWN: 1, CHECKPOINT_UNAVAILABLE: 1}
    closed = await store.run(close_alert, MONITOR_DOWN, "m1", 4.0)
    assert closed is not None and closed.alert["closed_at"] == 4.0
    assert await store.run(close_alert, MONITOR_DOWN, "m1", 5.0) is None
    reopened = await store.run(open_alert, MONITOR_DOWN, "m1", "down again", 6.0)
    assert reopened is not None and reopened.alert["id"] != first.alert["id"]
    assert [a.kind for a in await store.run(list_alerts, open_only=True, limit=10)] == [MONITOR_DOWN,
                                                                                         CHECKPOINT_UNAVAILABLE]
    assert [a.message for a in await store.run(list_alerts, open_only=False, limit=10)] == ["down"]
    store.close()


def test_every_agent_rejection_reason_is_a_known_metric_label() -> None:
    from vantage.control_plane.sessions import KNOWN_REJECTION_REASONS
    from vantage.protocol.errors import REASONS

    hello_and_release = {"wrong_challenge", "wrong_instance", "wrong_control_plane", "wrong_channel", "downgrade"}
    agent_only = {"invalid_check", "shutting_down"}  # vantage.agent.session
    assert KNOWN_REJECTION_REASONS == (REASONS - hello_and_release) | agent_only
