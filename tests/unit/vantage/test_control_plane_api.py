"""REST contract of the control plane: auth and scopes, validation, enrollment, states, releases."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.agents import ADMIN_TOKEN, Api, RunningServer, make_settings, start_server

from vantage.protocol import (
    RELEASE_TYPE,
    TrustStore,
    generate_key,
    key_id,
    public_key_b64,
    verify,
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(tmp_path))
    yield running
    await running.stop()


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, server.url)


async def token(api: Api, *scopes: str) -> str:
    data = await api.ok("POST", "/api/v1/tokens", {"name": "-".join(scopes) or "none", "scopes": list(scopes)})
    return str(data["token"])


# --- public endpoints -------------------------------------------------------------------------


async def test_status_and_signing_keys_need_no_auth(api: Api, server: RunningServer) -> None:
    status, data = await api.call("GET", "/api/v1/status", token=None)
    assert status == 200
    assert data == {"status": "ok", "version": "0.1.0", "signing_keyid": server.core.keys.keyid}
    status, keys = await api.call("GET", "/api/v1/signing-keys", token=None)
    assert status == 200
    store = TrustStore.from_json(keys)
    assert store.is_trusted(server.core.keys.keyid)
    assert keys["keys"][0]["status"] == "active" and keys["keys"][0]["not_after"] is None


async def test_metrics_exposed(api: Api) -> None:
    status, text = await api.call("GET", "/metrics", token=None)
    assert status == 200
    for name in ("vantage_cp_connected_instances", "vantage_cp_results_total", "vantage_cp_dispatches_total",
                 "vantage_cp_open_alerts", "vantage_cp_ws_rejections_total"):
        assert name in text or name.removesuffix("_total") in text


# --- auth ---------------------------------------------------------------------------------------


async def test_missing_and_bad_tokens_are_401_without_echo(api: Api) -> None:
    status, data = await api.call("GET", "/api/v1/alerts", token=None)
    assert status == 401 and data == {"error": "missing bearer token"}
    secret = "definitely-not-a-valid-token-xyz"
    status, data = await api.call("GET", "/api/v1/alerts", token=secret)
    assert status == 401 and secret not in str(data)
    async with api.http.get(api.base + "/api/v1/alerts", headers={"Authorization": "Basic abc"}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


SCOPE_CASES: list[tuple[str, str, str, dict[str, Any] | None, dict[str, int]]] = [
    # (name, method, path, body, {scope: expected status})
    ("get checkpoint", "GET", "/api/v1/checkpoints/cp1", None, {"read": 200, "enroll": 200, "admin": 200}),
    ("put checkpoint", "PUT", "/api/v1/checkpoints/cp1", {}, {"read": 403, "enroll": 200, "admin": 200}),
    ("enroll", "PUT", "/api/v1/checkpoints/cp1/instances/x", {"public_key": "KEY"},
     {"read": 403, "enroll": 201, "admin": 201}),
    ("state", "POST", "/api/v1/checkpoints/cp1/state", {"state": "active"}, {"read": 403, "enroll": 403, "admin": 200}),
    ("monitor", "POST", "/api/v1/monitors", {"name": "m", "checkpoint": "cp1", "type": "tcp", "target": "h:1"},
     {"read": 403, "enroll": 403, "admin": 201}),
    ("alerts", "GET", "/api/v1/alerts", None, {"read": 200, "enroll": 200, "admin": 200}),
    ("release put", "PUT", "/api/v1/releases/stable",
     {"image": "vantage/checkpoint", "digest": "sha256:" + "0" * 64, "version": "1.0.0"},
     {"read": 403, "enroll": 403, "admin": 201}),
    ("tokens", "POST", "/api/v1/tokens", {"name": "n", "scopes": ["read"]}, {"read": 403, "enroll": 403, "admin": 201}),
    ("rotate", "POST", "/api/v1/signing-keys/rotate", None, {"read": 403, "enroll": 403}),
]


@pytest.mark.parametrize("case", SCOPE_CASES, ids=[c[0] for c in SCOPE_CASES])
async def test_scopes(api: Api, case: tuple[str, str, str, dict[str, Any] | None, dict[str, int]]) -> None:
    _name, method, path, body, expected = case
    await api.ok("PUT", "/api/v1/checkpoints/cp1", {})
    for scope, want in expected.items():
        secret = await token(api, scope)
        if body and body.get("public_key") == "KEY":
            body = {"public_key": public_key_b64(generate_key())}
            await api.ok("DELETE", "/api/v1/checkpoints/cp1/instances/x", expect=(200, 404))
        status, data = await api.call(method, path, body, token=secret)
        assert status == want, (scope, data)
        if status == 403:
            assert data == {"error": f"this token lacks the {_needed(expected)} scope"}
        if body and "public_key" in body:
            await api.ok("DELETE", "/api/v1/checkpoints/cp1/instances/x", expect=(200, 404))


def _needed(expected: dict[str, int]) -> str:
    return "enroll" if expected.get("enroll") in (200, 201) else "admin"


async def test_tokens_created_listed_revoked(api: Api) -> None:
    created = await api.ok("POST", "/api/v1/tokens", {"name": "ci", "scopes": ["read", "enroll", "read"]})
    assert created["scopes"] == ["enroll", "read"] and created["token"].startswith("vt_")
    listing = await api.ok("GET", "/api/v1/tokens")
    assert all("token" not in t and "token_hash" not in t for t in listing["tokens"])
    assert {t["name"] for t in listing["tokens"]} == {"bootstrap-admin", "ci"}
    assert (await api.call("GET", "/api/v1/alerts", token=created["token"]))[0] == 200
    await api.ok("DELETE", f"/api/v1/tokens/{created['id']}")
    assert (await api.call("GET", "/api/v1/alerts", token=created["token"]))[0] == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "x", "scopes": ["root"]}, "scopes.0"), ({"name": "x", "scopes": []}, "scopes"),
     ({"scopes": ["read"]}, "name"), ({"name": "x", "scopes": ["read"], "admin": True}, "admin")],
)
async def test_token_validation(api: Api, body: dict[str, Any], field: str) -> None:
    status, data = await api.call("POST", "/api/v1/tokens", body)
    assert status == 422 and data["field"] == field


# --- checkpoints ---------------------------------------------------------------------------------


async def test_put_checkpoint_is_idempotent(api: Api) -> None:
    status, first = await api.call("PUT", "/api/v1/checkpoints/site-1", {"description": "lab", "labels": {"env": "t"}})
    assert status == 201 and first["changed"] is True and first["state"] == "unavailable"
    status, again = await api.call("PUT", "/api/v1/checkpoints/site-1", {"description": "lab", "labels": {"env": "t"}})
    assert status == 200 and again["changed"] is False
    status, changed = await api.call("PUT", "/api/v1/checkpoints/site-1", {"description": "lab 2"})
    assert status == 200 and changed["changed"] is True and changed["labels"] == {"env": "t"}
    got = await api.ok("GET", "/api/v1/checkpoints/site-1")
    assert got["description"] == "lab 2" and got["instances"] == [] and got["admin_state"] == "active"
    listing = await api.ok("GET", "/api/v1/checkpoints")
    assert [c["name"] for c in listing["checkpoints"]] == ["site-1"]


@pytest.mark.parametrize("name", ["Upper", "-dash", "a" * 64, "under_score", "dot.name"])
async def test_bad_names_are_422(api: Api, name: str) -> None:
    status, data = await api.call("PUT", f"/api/v1/checkpoints/{name}", {})
    assert status == 422 and data["field"] == "checkpoint"
    await api.ok("PUT", "/api/v1/checkpoints/ok", {})
    status, data = await api.call("PUT", f"/api/v1/checkpoints/ok/instances/{name}",
                                  {"public_key": public_key_b64(generate_key())})
    assert status == 422 and data["field"] == "instance"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"description": 5}, "description"), ({"labels": ["x"]}, "labels"), ({"colour": "red"}, "colour")],
)
async def test_checkpoint_validation(api: Api, body: dict[str, Any], field: str) -> None:
    status, data = await api.call("PUT", "/api/v1/checkpoints/cp", body)
    assert status == 422 and data["field"] == field and data["error"]


async def test_invalid_json_body(api: Api) -> None:
    async with api.http.put(api.base + "/api/v1/checkpoints/cp", data=b"{nope",
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        assert response.status == 422
        assert (await response.json())["field"] == "body"


async def test_unknown_checkpoint_is_404(api: Api) -> None:
    for method, path in (("GET", "/api/v1/checkpoints/nope"), ("GET", "/api/v1/checkpoints/nope/health")):
        status, data = await api.call(method, path)
        assert status == 404 and data["field"] == "checkpoint"


async def test_states_disable_needs_reason(api: Api) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    status, data = await api.call("POST", "/api/v1/checkpoints/cp/state", {"state": "disabled"})
    assert status == 422 and data["field"] == "reason"
    status, data = await api.call("POST", "/api/v1/checkpoints/cp/state", {"state": "maintenance"})
    assert status == 422 and data["field"] == "state"
    data = await api.ok("POST", "/api/v1/checkpoints/cp/state", {"state": "disabled", "reason": "moving racks"})
    assert data["state"] == "disabled" and data["disabled_reason"] == "moving racks" and data["changed"]
    health = await api.ok("GET", "/api/v1/checkpoints/cp/health")
    assert health == {"checkpoint": "cp", "state": "disabled", "healthy": False,
                      "reasons": ["checkpoint is disabled: moving racks", "no instance is enrolled"], "instances": []}
    data = await api.ok("POST", "/api/v1/checkpoints/cp/state", {"state": "active"})
    assert data["state"] == "unavailable" and data["disabled_reason"] is None


# --- enrollment ---------------------------------------------------------------------------------------


async def test_enrollment_201_200_409_replace_delete(api: Api) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    k1, k2 = public_key_b64(generate_key()), public_key_b64(generate_key())
    path = "/api/v1/checkpoints/cp/instances/a"
    status, data = await api.call("PUT", path, {"public_key": k1})
    assert status == 201 and data["changed"] is True and data["keyid"] == key_id(k1)
    status, data = await api.call("PUT", path, {"public_key": k1})
    assert status == 200 and data["changed"] is False
    status, data = await api.call("PUT", path, {"public_key": k2})
    assert status == 409 and data["field"] == "public_key" and key_id(k1) in data["error"]
    status, data = await api.call("PUT", path, {"public_key": k2, "replace": True})
    assert status == 200 and data["changed"] is True and data["keyid"] == key_id(k2)
    cp = await api.ok("GET", "/api/v1/checkpoints/cp")
    assert [(i["name"], i["public_key"], i["connected"]) for i in cp["instances"]] == [("a", k2, False)]
    health = await api.ok("GET", "/api/v1/checkpoints/cp/health")
    assert health["state"] == "unavailable"
    assert health["reasons"] == ["instance a is not connected (last heartbeat never)"]
    assert set(health["instances"][0]) >= {"name", "connected", "last_heartbeat", "version", "image_digest",
                                           "healthy", "reasons", "host", "data_protection"}
    status, _ = await api.call("DELETE", path)
    assert status == 200
    status, data = await api.call("DELETE", path)
    assert status == 404 and data["field"] == "instance"


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "public_key"), ({"public_key": "not base64!"}, "public_key"),
     ({"public_key": base64.b64encode(b"short").decode()}, "public_key"),
     ({"public_key": "PLACEHOLDER", "replace": "yes"}, "replace"),
     ({"public_key": "PLACEHOLDER", "extra": 1}, "extra")],
)
async def test_enrollment_validation(api: Api, body: dict[str, Any], field: str) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    if body.get("public_key") == "PLACEHOLDER":
        body = {**body, "public_key": public_key_b64(generate_key())}
    status, data = await api.call("PUT", "/api/v1/checkpoints/cp/instances/a", body)
    assert status == 422 and data["field"] == field


async def test_enrollment_into_unknown_checkpoint_is_404(api: Api) -> None:
    status, data = await api.call("PUT", "/api/v1/checkpoints/ghost/instances/a",
                                  {"public_key": public_key_b64(generate_key())})
    assert status == 404 and data["field"] == "checkpoint"


# --- monitors -----------------------------------------------------------------------------------------


async def test_monitor_create_get_list_delete(api: Api) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    created = await api.ok("POST", "/api/v1/monitors",
                           {"name": "intranet", "checkpoint": "cp", "type": "http", "target": "https://intra.example/"})
    assert created["interval_s"] == 60 and created["timeout_s"] == 10 and created["method"] == "GET"
    assert created["type"] == "http" and created["target"] == "https://intra.example/" and created["down"] is False
    got = await api.ok("GET", f"/api/v1/monitors/{created['id']}")
    assert got["name"] == "intranet"
    assert [m["id"] for m in (await api.ok("GET", "/api/v1/monitors"))["monitors"]] == [created["id"]]
    assert (await api.ok("GET", f"/api/v1/monitors/{created['id']}/results"))["results"] == []
    await api.ok("DELETE", f"/api/v1/monitors/{created['id']}")
    status, _data = await api.call("GET", f"/api/v1/monitors/{created['id']}")
    assert status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"checkpoint": "cp", "type": "tcp", "target": "h:1"}, "name"),
        ({"name": "m", "type": "tcp", "target": "h:1"}, "checkpoint"),
        ({"name": "m", "checkpoint": "ghost", "type": "tcp", "target": "h:1"}, "checkpoint"),
        ({"name": "m", "checkpoint": "cp", "type": "tcp", "target": "h:1", "interval_s": 0}, "interval_s"),
        ({"name": "m", "checkpoint": "cp", "type": "tcp", "target": "h:1", "interval_s": "5"}, "interval_s"),
        ({"name": "m", "checkpoint": "cp", "type": "gopher", "target": "h:1"}, "type"),
        ({"name": "m", "checkpoint": "cp", "type": "tcp"}, "target"),
        ({"name": "m", "checkpoint": "cp", "type": "tcp", "target": "h:1", "timeout_s": -1}, "timeout_s"),
        ({"name": "m", "checkpoint": "cp", "type": "tcp", "target": "h:1", "method": "GET"}, "method"),
    ],
)
async def test_monitor_validation(api: Api, body: dict[str, Any], field: str) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    status, data = await api.call("POST", "/api/v1/monitors", body)
    assert status == 422, data
    assert data["field"] == field and data["error"]


async def test_results_limit_validation(api: Api) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    m = await api.ok("POST", "/api/v1/monitors", {"name": "m", "checkpoint": "cp", "type": "tcp", "target": "h:1"})
    for bad in ("0", "x", "100000"):
        status, data = await api.call("GET", f"/api/v1/monitors/{m['id']}/results?limit={bad}")
        assert status == 422 and data["field"] == "limit"
    status, _ = await api.call("GET", "/api/v1/monitors/unknown/results")
    assert status == 404


async def test_alerts_query_validation(api: Api) -> None:
    assert (await api.ok("GET", "/api/v1/alerts?open=true")) == {"alerts": []}
    status, data = await api.call("GET", "/api/v1/alerts?open=maybe")
    assert status == 422 and data["field"] == "open"


# --- releases --------------------------------------------------------------------------------------------


async def test_release_publish_and_signed_manifest(api: Api, server: RunningServer) -> None:
    body = {"image": "registry.local/vantage/checkpoint", "digest": "sha256:" + "ab" * 32, "version": "1.4.2"}
    status, data = await api.call("PUT", "/api/v1/releases/stable", body)
    assert status == 201 and data["changed"] is True
    status, data = await api.call("PUT", "/api/v1/releases/stable", body)
    assert status == 200 and data["changed"] is False
    status, _ = await api.call("GET", "/api/v1/releases/stable", token=None)
    assert status == 401
    reader = await token(api, "read")
    status, envelope = await api.call("GET", "/api/v1/releases/stable", token=reader)
    assert status == 200
    trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
    payload_type, payload, keyid = verify(envelope, trust)
    assert payload_type == RELEASE_TYPE and keyid == server.core.keys.keyid
    import json

    manifest = json.loads(payload)
    assert {k: manifest[k] for k in ("channel", "version", "image", "digest")} == {"channel": "stable", **body}
    assert manifest["exp"] - manifest["iat"] == 7 * 86400
    status, data = await api.call("GET", "/api/v1/releases/beta")
    assert status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"digest": "sha256:" + "0" * 64, "version": "1.0"}, "image"),
        ({"image": "a b", "digest": "sha256:" + "0" * 64, "version": "1.0"}, "image"),
        ({"image": "x@sha256:1", "digest": "sha256:" + "0" * 64, "version": "1.0"}, "image"),
        ({"image": "x", "digest": "md5:00", "version": "1.0"}, "digest"),
        ({"image": "x", "digest": "sha256:" + "0" * 64, "version": "v1.0"}, "version"),
        ({"image": "x", "digest": "sha256:" + "0" * 64}, "version"),
    ],
)
async def test_release_validation(api: Api, body: dict[str, Any], field: str) -> None:
    status, data = await api.call("PUT", "/api/v1/releases/stable", body)
    assert status == 422 and data["field"] == field


# --- findings: names with a newline, non-finite numbers, small-order keys ---------------------------

NEWLINE_CASES = [
    ("PUT", "/api/v1/checkpoints/cp1%0A", {}, "checkpoint"),
    ("GET", "/api/v1/checkpoints/cp1%0A", None, "checkpoint"),
    ("PUT", "/api/v1/checkpoints/cp/instances/a%0A", {"public_key": "KEY"}, "instance"),
    ("PUT", "/api/v1/releases/stable%0A", {"image": "x", "digest": "sha256:" + "0" * 64, "version": "1.0"},
     "channel"),
    ("PUT", "/api/v1/releases/stable", {"image": "x", "digest": "sha256:" + "0" * 64 + "\n", "version": "1.0"},
     "digest"),
    ("PUT", "/api/v1/releases/stable", {"image": "x", "digest": "sha256:" + "0" * 64, "version": "1.0\n"},
     "version"),
    ("POST", "/api/v1/monitors", {"name": "m", "checkpoint": "cp\n", "type": "tcp", "target": "h:1"},
     "checkpoint"),
    ("PUT", "/api/v1/checkpoints/cp", {"credentials": ["db\n"]}, "credentials.0"),
]


@pytest.mark.parametrize("case", NEWLINE_CASES, ids=[f"{c[0]} {c[1]} {c[3]}" for c in NEWLINE_CASES])
async def test_a_trailing_newline_is_not_a_name(api: Api, case: tuple[str, str, Any, str]) -> None:
    """Every name, channel, digest and version is checked with a full match of the contract's rule."""
    method, path, body, field = case
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    if body and body.get("public_key") == "KEY":
        body = {"public_key": public_key_b64(generate_key())}
    status, data = await api.call(method, path, body)
    assert (status, data.get("field")) == (422, field), data
    listing = await api.ok("GET", "/api/v1/checkpoints")
    assert [c["name"] for c in listing["checkpoints"]] == ["cp"]


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]


@pytest.mark.parametrize("literal", NON_FINITE)
async def test_non_finite_numbers_are_refused_in_every_body(api: Api, literal: str) -> None:
    """JSON has no NaN or Infinity: a body with one (or a number that overflows to it) is a 422."""
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    bodies = [
        ("POST", "/api/v1/monitors",
         '{"name": "m", "checkpoint": "cp", "type": "http", "target": "https://h/", "expect_status": [%s]}'),
        ("POST", "/api/v1/monitors", '{"name": "m", "checkpoint": "cp", "type": "tcp", "timeout_s": %s}'),
        ("PUT", "/api/v1/checkpoints/cp", '{"labels": {"x": %s}}'),
        ("POST", "/api/v1/signing-keys/rotate", '{"grace_s": %s}'),
    ]
    for method, path, template in bodies:
        async with api.http.request(method, api.base + path, data=(template % literal).encode(),
                                    headers=headers) as response:
            data = await response.json()
            assert (response.status, data.get("field")) == (422, "body"), (path, data)
            assert "not a finite number" in data["error"] or "finite" in data["error"]
    listing = await api.ok("GET", "/api/v1/monitors")
    assert listing == {"monitors": []}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


P = 2**255 - 19
#: the identity, a point of order 2, points of order 4 and 8 (canonical encodings), and
#: non-canonical encodings (y >= p, or x = 0 with the sign bit set)
SMALL_ORDER_OR_NON_CANONICAL = {
    "zero (order 4)": bytes(32),
    "identity": (1).to_bytes(32, "little"),
    "order 2": (P - 1).to_bytes(32, "little"),
    "order 8": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "order 8 (2)": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "y = p (non-canonical zero)": P.to_bytes(32, "little"),
    "y = p + 1 (non-canonical identity)": (P + 1).to_bytes(32, "little"),
    "identity with the sign bit": (1 | 1 << 255).to_bytes(32, "little"),
}


@pytest.mark.parametrize("raw", list(SMALL_ORDER_OR_NON_CANONICAL.values()), ids=list(SMALL_ORDER_OR_NON_CANONICAL))
async def test_small_order_and_non_canonical_keys_are_refused_at_enrollment(api: Api, raw: bytes) -> None:
    await api.ok("PUT", "/api/v1/checkpoints/cp", {})
    status, data = await api.call("PUT", "/api/v1/checkpoints/cp/instances/a", {"public_key": _b64(raw)})
    assert (status, data.get("field")) == (422, "public_key"), data
    status, _ = await api.call("GET", "/api/v1/checkpoints/cp")
    assert (await api.ok("GET", "/api/v1/checkpoints/cp"))["instances"] == []
