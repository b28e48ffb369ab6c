"""Scheduling, retries, alerts and result storage against a real in-process control plane."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from support.agents import (
    Api,
    FakeAgent,
    Identity,
    RunningServer,
    first_instruction,
    make_settings,
    start_server,
)
from support.waiting import eventually

from vantage.control_plane.db import Dispatch, Monitor
from vantage.control_plane.scheduler import parse_result, prune, record_results
from vantage.protocol import TrustStore

TCP = {"type": "tcp", "target": "127.0.0.1:9"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(tmp_path))
    yield running
    await running.stop()


class Site:
    """A checkpoint with connected, healthy fake instances."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession, cp: str = "site1") -> None:
        self.server, self.http, self.cp = server, http, cp
        self.api = Api(http, server.url)
        self.agents: dict[str, FakeAgent] = {}
        self.trust: TrustStore | None = None

    async def up(self, *names: str, connect: bool = True) -> Site:
        await self.api.ok("PUT", f"/api/v1/checkpoints/{self.cp}", {})
        self.trust = TrustStore.from_json(await self.api.ok("GET", "/api/v1/signing-keys"))
        for name in names:
            ident = Identity(self.cp, name)
            await self.api.ok("PUT", f"/api/v1/checkpoints/{self.cp}/instances/{name}", {"public_key": ident.public_key})
            self.agents[name] = FakeAgent(self.http, self.server.ws_url, ident, self.server.url)
            if connect:
                await self.agents[name].connect(auto_heartbeat=True)
        return self

    async def monitor(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "m1", "checkpoint": self.cp, "interval_s": 60, **TCP, **fields}
        return dict(await self.api.ok("POST", "/api/v1/monitors", body))

    async def next(self, timeout: float = 5.0) -> tuple[FakeAgent, dict[str, Any]]:
        assert self.trust is not None
        return await first_instruction(list(self.agents.values()), self.trust, timeout)

    async def alerts(self, open_only: bool = True) -> list[dict[str, Any]]:
        return list((await self.api.ok("GET", f"/api/v1/alerts?open={str(open_only).lower()}"))["alerts"])

    async def results(self, monitor_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return list((await self.api.ok("GET", f"/api/v1/monitors/{monitor_id}/results?limit={limit}"))["results"])

    async def close(self) -> None:
        for agent in self.agents.values():
            await agent.close()


async def test_error_retried_on_other_instance_then_monitor_down_then_closed(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    site = await Site(server, http).up("a", "b")
    monitor = await site.monitor(interval_s=1)
    first_agent, first = await site.next()
    assert first["kind"] == "run_check"
    assert first["aud"] == f"site1/{first_agent.identity.instance}"
    assert first["exp"] - first["iat"] <= 60
    assert first["iss"] == server.url
    body = first["body"]
    assert body["attempt"] == 1 and body["monitor_id"] == monitor["id"]
    assert body["check"]["type"] == "tcp" and body["check"]["target"] == "127.0.0.1:9"
    await first_agent.result(first, ok=False, error="connection refused")
    second_agent, second = await site.next(timeout=2)
    assert second_agent is not first_agent, "attempt 2 must go to the other instance"
    assert second["body"]["attempt"] == 2 and second["body"]["monitor_id"] == monitor["id"]
    assert second["body"]["check_id"] != body["check_id"]
    assert await site.alerts() == []  # one error is not an alert
    await second_agent.result(second, ok=False, error="connection refused")
    alerts = await eventually(site.alerts)
    assert [(a["kind"], a["subject"]) for a in alerts] == [("monitor_down", monitor["id"])]
    assert "connection refused" in alerts[0]["message"] and alerts[0]["closed_at"] is None
    assert (await site.api.ok("GET", f"/api/v1/monitors/{monitor['id']}"))["down"] is True
    # the next run succeeds: the alert closes
    third_agent, third = await site.next(timeout=3)
    assert third["body"]["attempt"] == 1
    assert third_agent is not second_agent, "never the same instance twice in a row"
    await third_agent.result(third, ok=True)
    await eventually(lambda: _no_open(site))
    closed = await site.alerts(open_only=False)
    assert closed[0]["kind"] == "monitor_down" and closed[0]["closed_at"] is not None
    results = await site.results(monitor["id"])
    assert [(r["attempt"], r["ok"]) for r in results] == [(1, True), (2, False), (1, False)]
    assert {r["instance"] for r in results[1:]} == {"a", "b"}
    for r in results:
        assert set(r) >= {"id", "instance", "attempt", "ok", "error", "duration_ms", "started_at", "phases", "details"}
    metrics = await (await http.get(server.url + "/metrics")).text()
    assert 'vantage_cp_dispatches_total{attempt="2"} 1.0' in metrics
    await eventually(lambda: _metric(http, server, 'vantage_cp_open_alerts{kind="monitor_down"} 0.0'))
    await site.close()


async def _no_open(site: Site) -> bool:
    return await site.alerts() == []


async def test_single_instance_retries_on_itself(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a")
    await site.monitor()
    agent, first = await site.next()
    await agent.result(first, ok=False, error="boom")
    again_agent, again = await site.next(timeout=2)
    assert again_agent is agent and again["body"]["attempt"] == 2
    await site.close()


async def test_spread_alternates_instances(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a", "b")
    await site.monitor(interval_s=1)
    seen = []
    for _ in range(4):
        agent, instr = await site.next(timeout=3)
        seen.append(agent.identity.instance)
        await agent.result(instr, ok=True)
    assert all(x != y for x, y in itertools.pairwise(seen)), seen
    await site.close()


async def test_unhealthy_instance_gets_no_first_attempt(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a", "b")
    await site.agents["a"].heartbeat(healthy=False)
    await eventually(lambda: (server.core.registry.get("site1", "a").health or {})  # type: ignore[union-attr]
                     .get("healthy") is False)
    await site.monitor(interval_s=1)
    for _ in range(2):
        agent, instr = await site.next(timeout=3)
        assert agent.identity.instance == "b"
        await agent.result(instr, ok=True)
    await site.close()


async def test_missing_result_counts_as_error(server: RunningServer, http: aiohttp.ClientSession) -> None:
    """timeout_s 0.2 + margin 1 s: both attempts time out → monitor_down."""
    site = await Site(server, http).up("a", "b")
    monitor = await site.monitor(timeout_s=0.2)
    first_agent, _first = await site.next()
    second_agent, second = await site.next(timeout=4)
    assert second_agent is not first_agent and second["body"]["attempt"] == 2
    alerts = await eventually(site.alerts, timeout=4)
    assert alerts[0]["kind"] == "monitor_down" and "no result in time" in alerts[0]["message"]
    results = await site.results(monitor["id"])
    assert [(r["attempt"], r["ok"], r["error"]) for r in results] == [
        (2, False, "no result in time"), (1, False, "no result in time")
    ]
    await site.close()


async def test_results_deduplicated_by_id(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a")
    monitor = await site.monitor()
    agent, instr = await site.next()
    for _ in range(3):
        await agent.result(instr, ok=True)
    await eventually(lambda: len(agent.acks) + agent.queue.qsize() >= 3)
    await asyncio.sleep(0.1)
    agent.pending_instruction(site.trust)  # type: ignore[arg-type]  # collects the acks
    assert agent.acks == [instr["body"]["check_id"]] * 3
    assert len(await site.results(monitor["id"])) == 1
    metrics = await (await http.get(server.url + "/metrics")).text()
    assert "vantage_cp_duplicate_results_total 2.0" in metrics
    assert 'vantage_cp_results_total{ok="true"} 1.0' in metrics
    await site.close()


async def test_result_for_unknown_check_is_acked_not_stored(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a")
    monitor = await site.monitor()
    agent, instr = await site.next()
    forged = {**instr, "body": {**instr["body"], "check_id": "not-a-dispatch"}}
    await agent.result(forged, ok=False, result_id="forged-1")
    await agent.result(instr, ok=True)
    await eventually(lambda: agent.queue.qsize() >= 2)
    agent.pending_instruction(site.trust)  # type: ignore[arg-type]
    assert agent.acks == ["forged-1", instr["body"]["check_id"]]
    assert [r["id"] for r in await site.results(monitor["id"])] == [instr["body"]["check_id"]]
    await site.close()


async def test_a_forged_result_id_cannot_stop_scheduling(server: RunningServer, http: aiohttp.ClientSession) -> None:
    """A result whose id is not its check's (here: the id the timeout of another check would get) is refused.

    Before, it was stored for check Z under ``<Y>:timeout``; at Y's deadline the timeout's own
    row then collided with it, and every scheduler tick failed from then on, for every checkpoint.
    """
    site = await Site(server, http).up("a")
    other = await Site(server, http, cp="site2").up("b")
    m_y = await site.monitor(name="y", timeout_s=0.2)
    agent, y = await site.next()
    m_z = await site.monitor(name="z", timeout_s=30)
    _agent, z = await site.next()
    assert (y["body"]["monitor_id"], z["body"]["monitor_id"]) == (m_y["id"], m_z["id"])
    y_check, z_check = y["body"]["check_id"], z["body"]["check_id"]
    forged = {"id": f"{y_check}:timeout", "check_id": z_check, "monitor_id": m_z["id"], "attempt": 1, "ok": True}
    await agent.send({"type": "result", "result": forged})
    # Y is never answered: its deadline passes, and the scheduler goes on (attempt 2 on the only instance)
    _agent, y2 = await site.next(timeout=6)
    assert (y2["body"]["monitor_id"], y2["body"]["attempt"]) == (m_y["id"], 2)
    # ... for the other checkpoint too
    m_o = await other.monitor(name="o")
    _b, o = await other.next()
    assert o["body"]["monitor_id"] == m_o["id"]
    # the forged result was stored nowhere; Y's timeout was
    assert await site.results(m_z["id"]) == []
    assert [(r["id"], r["ok"]) for r in await site.results(m_y["id"])] == [(f"{y_check}:timeout", False)]
    # and Z still takes its real result
    await agent.result(z, ok=True)
    await eventually(lambda: _has_results(site, m_z["id"]))
    await site.close()
    await other.close()


async def test_a_monitor_that_cannot_be_dispatched_does_not_stop_the_others(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """A broken row (here: a spec that is no longer JSON) is skipped and logged; the rest is dispatched."""
    site = await Site(server, http).up("a")
    broken = await site.monitor(name="broken", interval_s=3600)
    agent, first = await site.next()
    await agent.result(first, ok=True)

    def corrupt(db: Session) -> None:
        db.execute(update(Monitor).where(Monitor.id == broken["id"]).values(spec_json="{", next_due=0.0))

    await server.core.store.run(corrupt)
    healthy = await site.monitor(name="healthy", interval_s=1)
    for _ in range(2):  # the broken one comes first in due order, every tick
        _agent, instr = await site.next(timeout=5)
        assert instr["body"]["monitor_id"] == healthy["id"]
        await _agent.result(instr, ok=True)
    await site.close()


async def test_a_result_that_cannot_be_stored_does_not_keep_its_group_back(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """Group commit: results stored together; one whose decision fails is left out, unacknowledged."""
    site = await Site(server, http).up("a")
    good, bad = await site.monitor(name="good"), await site.monitor(name="bad")
    agent = site.agents["a"]
    assert site.trust is not None
    first, second = await agent.instruction(site.trust), await agent.instruction(site.trust)
    by_monitor = {i["body"]["monitor_id"]: i for i in (first, second)}

    def corrupt(db: Session) -> None:  # its retry cannot be signed: deciding its failure raises
        db.execute(update(Monitor).where(Monitor.id == bad["id"]).values(spec_json="{"))

    await server.core.store.run(corrupt)
    items = [("site1", "a", parse_result({"id": i["body"]["check_id"], "check_id": i["body"]["check_id"],
                                          "ok": i["body"]["monitor_id"] == good["id"], "error": "refused"}),
              time.time()) for i in (by_monitor[bad["id"]], by_monitor[good["id"]])]
    outcomes = await server.core.store.run(record_results, server.core.context(), items)
    assert outcomes[0] is None and outcomes[1] is not None and outcomes[1].status == "stored"
    assert [r["ok"] for r in await site.results(good["id"])] == [True]
    assert await site.results(bad["id"]) == []  # not stored: its agent sends it again
    await site.close()


async def _has_results(site: Site, monitor_id: str) -> bool:
    return bool(await site.results(monitor_id))


async def test_data_protection_enforced_again_on_receipt(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a")
    agent = site.agents["a"]
    await agent.heartbeat(data_protection={"strip_content": True, "strip_headers": True, "strip_ips": True})
    await eventually(lambda: (server.core.registry.get("site1", "a").health or {})  # type: ignore[union-attr]
                     .get("data_protection", {}).get("strip_ips"))
    monitor = await site.monitor()
    agent, instr = await site.next()
    await agent.result(instr, ok=False, error="connect to 10.1.2.3 failed",
                       details={"body_excerpt": "secret", "headers": {"x": "y"}, "peer_ip": "10.1.2.3",
                                "status_code": 500})
    results = await eventually(lambda: site.results(monitor["id"]))
    assert results[0]["details"] == {"status_code": 500}
    assert "10.1.2.3" not in results[0]["error"]
    await site.close()


async def test_checkpoint_unavailable_after_grace(server: RunningServer, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()  # before the checkpoint exists: the grace counts from its creation
    site = await Site(server, http).up("a", connect=False)
    await Site(server, http, cp="off").up()
    await site.api.ok("POST", "/api/v1/checkpoints/off/state", {"state": "disabled", "reason": "decommissioned"})
    alerts = await eventually(site.alerts, timeout=5)
    assert time.monotonic() - started >= 1.5  # grace is 2 s from the checkpoint's creation
    assert [(a["kind"], a["subject"]) for a in alerts] == [("checkpoint_unavailable", "site1")]
    health = await site.api.ok("GET", "/api/v1/checkpoints/site1/health")
    assert health["state"] == "unavailable" and health["healthy"] is False
    await site.agents["a"].connect(auto_heartbeat=True)
    await eventually(lambda: _no_open(site))
    assert (await site.api.ok("GET", "/api/v1/checkpoints/site1/health"))["state"] == "active"
    off = await site.api.ok("GET", "/api/v1/checkpoints/off/health")
    assert off["state"] == "disabled" and off["reasons"][0] == "checkpoint is disabled: decommissioned"
    await site.close()


async def test_disabled_checkpoint_gets_no_dispatch(server: RunningServer, http: aiohttp.ClientSession) -> None:
    site = await Site(server, http).up("a")
    await site.api.ok("POST", "/api/v1/checkpoints/site1/state", {"state": "disabled", "reason": "maintenance window"})
    await site.monitor()
    with pytest.raises(AssertionError):
        await site.next(timeout=0.6)
    await site.api.ok("POST", "/api/v1/checkpoints/site1/state", {"state": "active"})
    _agent, instr = await site.next(timeout=2)
    assert instr["body"]["attempt"] == 1
    await site.close()


async def test_restart_keeps_data_and_scheduling_resumes(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    settings = make_settings(tmp_path)
    server = await start_server(settings)
    site = await Site(server, http).up("a")
    monitor = await site.monitor(interval_s=1)
    agent, instr = await site.next()
    await agent.result(instr, ok=True)
    await eventually(lambda: site.results(monitor["id"]))
    token = (await site.api.ok("POST", "/api/v1/tokens", {"name": "reader", "scopes": ["read"]}))["token"]
    await site.api.ok("PUT", "/api/v1/releases/stable",
                      {"image": "vantage/checkpoint", "digest": "sha256:" + "a" * 64, "version": "1.2.3"})
    keyid = server.core.keys.keyid
    port = int(server.url.rsplit(":", 1)[1])
    await server.stop()
    await site.close()

    server2 = await start_server(settings, port=port)
    try:
        api = Api(http, server2.url, token=token)
        assert (await api.ok("GET", "/api/v1/status"))["signing_keyid"] == keyid
        cp = await api.ok("GET", "/api/v1/checkpoints/site1")
        assert [i["name"] for i in cp["instances"]] == ["a"] and cp["instances"][0]["connected"] is False
        assert len(await Site(server2, http).results(monitor["id"])) >= 1
        assert (await api.ok("GET", f"/api/v1/monitors/{monitor['id']}"))["name"] == "m1"
        assert (await api.ok("GET", "/api/v1/releases/stable"))["payloadType"] == "application/vnd.vantage.release+json"
        # the agent reconnects with the same identity; scheduling carries on
        again = FakeAgent(http, server2.ws_url, agent.identity, server2.url)
        await again.connect(auto_heartbeat=True)
        trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
        instr2 = await again.instruction(trust, timeout=3)
        assert instr2["body"]["monitor_id"] == monitor["id"]
        assert instr2["seq"] > instr["seq"]
        await again.close()
    finally:
        await server2.stop()


async def test_webhook_called_on_alerts(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    from aiohttp import web

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    runner = web.AppRunner(hook_app)
    await runner.setup()
    site_ = web.TCPSite(runner, "127.0.0.1", 0)
    await site_.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    server = await start_server(make_settings(tmp_path, webhook_url=hook_url, unavailable_grace=0.5))
    try:
        site = await Site(server, http).up("a", connect=False)
        await eventually(lambda: received)
        assert received[0]["event"] == "opened"
        assert received[0]["alert"]["kind"] == "checkpoint_unavailable"
        await site.agents["a"].connect()
        await eventually(lambda: len(received) >= 2)
        assert received[1]["event"] == "closed"
        await site.close()
    finally:
        await server.stop()
        await runner.cleanup()


async def test_failing_webhook_does_not_block(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    server = await start_server(make_settings(tmp_path, webhook_url="http://127.0.0.1:9/nothing", unavailable_grace=0.3))
    try:
        site = await Site(server, http).up("a", connect=False)
        await eventually(site.alerts)
        metrics = await eventually(lambda: _webhook_failed(http, server))
        assert metrics
    finally:
        await server.stop()


async def _metric(http: aiohttp.ClientSession, server: RunningServer, line: str) -> bool:
    """Whether /metrics has ``line`` (gauges are refreshed every tick)."""
    return line in await (await http.get(server.url + "/metrics")).text()


async def _webhook_failed(http: aiohttp.ClientSession, server: RunningServer) -> bool:
    text = await (await http.get(server.url + "/metrics")).text()
    return "vantage_cp_webhook_failures_total 1.0" in text


async def test_deleted_monitor_cancels_dispatch_and_drops_late_result(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    site = await Site(server, http).up("a")
    monitor = await site.monitor()
    agent, instr = await site.next()
    await site.api.ok("DELETE", f"/api/v1/monitors/{monitor['id']}")
    assert await _dispatch_statuses(server) == ["cancelled"]
    await agent.result(instr, ok=False)
    await eventually(lambda: agent.queue.qsize() >= 1)
    agent.pending_instruction(site.trust)  # type: ignore[arg-type]
    assert agent.acks == [instr["body"]["check_id"]]
    status, _ = await site.api.call("GET", f"/api/v1/monitors/{monitor['id']}/results")
    assert status == 404
    assert await site.alerts() == []
    # finished dispatches are pruned after a day; results stay
    await server.core.store.run(prune, time.time() + 2 * 86400)
    assert await _dispatch_statuses(server) == []
    await site.close()


async def _dispatch_statuses(server: RunningServer) -> list[str]:
    def statuses(db: Session) -> list[str]:
        return list(db.scalars(select(Dispatch.status).order_by(Dispatch.dispatched_at)).all())

    return await server.core.store.run(statuses)


async def test_result_held_during_downtime_is_not_a_timeout(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Deadline 0.7 s after dispatch, server down for longer: the restart grace keeps attempt 1 alive."""
    settings = make_settings(tmp_path, result_margin=0.5, restart_grace=10.0)
    server = await start_server(settings)
    site = await Site(server, http).up("a")
    monitor = await site.monitor(timeout_s=0.2)
    agent, instr = await site.next()
    port = int(server.url.rsplit(":", 1)[1])
    await server.stop()
    await site.close()
    await asyncio.sleep(1.0)
    server2 = await start_server(settings, port=port)
    try:
        again = FakeAgent(http, server2.ws_url, agent.identity, server2.url)
        await again.connect(auto_heartbeat=True)
        # the pending check is sent again, as the same envelope (an agent that has it refuses the nonce)
        resent = await again.instruction(site.trust)  # type: ignore[arg-type]
        assert (resent["nonce"], resent["body"]["check_id"]) == (instr["nonce"], instr["body"]["check_id"])
        await again.result(instr, ok=True)  # from its outbox
        await again.ack()
        site2 = Site(server2, http)
        results = await site2.results(monitor["id"])
        assert [(r["attempt"], r["ok"], r["id"]) for r in results] == [(1, True, instr["body"]["check_id"])]
        await again.close()
    finally:
        await server2.stop()


# ----------------------------------------------------------------------------- failover


async def _reconnect(site: Site, name: str) -> FakeAgent:
    agent = FakeAgent(site.http, site.server.ws_url, site.agents[name].identity, site.server.url)
    await agent.connect(auto_heartbeat=True)
    site.agents[name] = agent
    return agent


async def test_checks_of_a_closed_session_move_to_another_instance_at_once(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    """Lost with its instance, a pending check runs on the other one now, as the same attempt."""
    site = await Site(server, http).up("a", "b")
    monitor = await site.monitor(timeout_s=30)  # its deadline is 40 s away
    holder, lost = await site.next()
    name = holder.identity.instance
    other = site.agents["b" if name == "a" else "a"]
    closed_at = time.monotonic()
    await holder.close()
    assert site.trust is not None
    moved = await other.instruction(site.trust, timeout=5)
    assert time.monotonic() - closed_at < 2, "not moved at once"
    assert moved["body"]["monitor_id"] == monitor["id"] and moved["body"]["attempt"] == 1
    assert moved["body"]["check_id"] != lost["body"]["check_id"]
    await other.result(moved, ok=True)
    assert await other.ack() == moved["body"]["check_id"]

    # The old instance comes back and delivers its result from its outbox, twice: stored once
    # under its own id, acknowledged each time, and neither a retry nor an alert follows.
    again = await _reconnect(site, name)
    for _ in range(2):
        await again.result(lost, ok=False, error="connection refused")
        assert await again.ack() == lost["body"]["check_id"]
    results = await site.results(monitor["id"])
    assert sorted((r["id"], r["attempt"], r["ok"]) for r in results) == sorted(
        [(moved["body"]["check_id"], 1, True), (lost["body"]["check_id"], 1, False)]
    )
    await asyncio.sleep(0.3)
    assert again.pending_instruction(site.trust) is None and other.pending_instruction(site.trust) is None
    assert await site.alerts() == []
    metrics = await (await http.get(server.url + "/metrics")).text()
    assert "vantage_cp_reassigned_checks_total 1.0" in metrics
    assert "vantage_cp_check_timeouts_total 0.0" in metrics
    await site.close()


async def test_a_check_moves_a_bounded_number_of_times(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Instances that keep dropping cannot bounce a check forever: after two moves it waits."""
    server = await start_server(make_settings(tmp_path, result_margin=0.5))
    try:
        site = await Site(server, http).up("a", "b")
        await site.monitor(timeout_s=1)
        holder, instr = await site.next()
        assert site.trust is not None
        seen = {instr["body"]["check_id"]}
        for _ in range(2):  # lost twice: moved twice
            name = holder.identity.instance
            other = site.agents["b" if name == "a" else "a"]
            await holder.close()
            instr = await other.instruction(site.trust, timeout=5)
            assert instr["body"]["attempt"] == 1 and instr["body"]["check_id"] not in seen
            seen.add(instr["body"]["check_id"])
            await _reconnect(site, name)
            holder = other
        name = holder.identity.instance
        await holder.close()  # lost a third time: it stays, and counts as an error at its deadline
        await asyncio.sleep(0.5)
        assert site.agents["b" if name == "a" else "a"].pending_instruction(site.trust) is None
        retry = await site.agents["b" if name == "a" else "a"].instruction(site.trust, timeout=5)
        assert retry["body"]["attempt"] == 2  # the timeout's ordinary retry
        await site.close()
    finally:
        await server.stop()
