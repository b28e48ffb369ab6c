"""Two control-plane replicas on one real PostgreSQL serve one fleet; one is killed with SIGKILL.

Real processes (``vantage control-plane serve``) on a throw-away PostgreSQL cluster, and
protocol-correct simulated agents (:class:`support.agents.SimAgent`: real hello signatures,
heartbeats, a replay cache and an outbox, like the real agent). The two instances of checkpoint
``site1`` are connected to different replicas. The test checks, from the shared database and
from what the agents received:

- each due check is dispatched once (one first attempt per due time of a monitor, due times an
  interval apart, and no claim ever collided);
- a failing check is retried on the other instance, across replicas, and ``monitor_down`` is
  raised once; ``checkpoint_unavailable`` of a checkpoint with nobody connected is raised once;
- after replica 1 is killed mid-dispatch (its agent has checks in flight), its agent reconnects
  to replica 2, nothing is lost (no dispatch made before the kill ends as a timeout), and
  scheduling goes on for every monitor.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from check_servers import need
from sqlalchemy import create_engine, text
from support.agents import Identity, SimAgent
from support.postgres import BINARIES, PostgresServer, postgres_server
from support.processes import ControlPlaneProcess
from support.waiting import eventually

from vantage.protocol import TrustStore

PUBLIC_URL = "https://cp.replicas.test"  # one name for both replicas, as behind a load balancer
INTERVAL = 1.0
OPTIONS = ["--public-url", PUBLIC_URL, "--heartbeat-interval", "1", "--scheduler-tick", "0.2",
           "--replica-timeout", "2", "--result-margin", "3", "--unavailable-grace", "2"]


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    need(*BINARIES)
    with postgres_server() as server:
        yield server


def _rows(pg: PostgresServer, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(pg.url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


async def test_two_replicas_share_one_fleet_and_survive_a_kill(tmp_path: Path, pg: PostgresServer) -> None:
    token = secrets.token_urlsafe(24)
    key = tmp_path / "keys" / "signing.pem"
    replicas = [ControlPlaneProcess(tmp_path, pg.url, token, key, OPTIONS, name=f"replica{i}") for i in (1, 2)]
    agents: list[SimAgent] = []
    try:
        replicas[0].start()  # creates the schema and the signing key the second one shares
        replicas[1].start()
        r1, r2 = replicas
        for cp in ("site1", "site2"):
            r1.api("PUT", f"/api/v1/checkpoints/{cp}", {})
        ids = {name: Identity("site1", name) for name in ("a", "b")}
        for name, ident in ids.items():
            r2.api("PUT", f"/api/v1/checkpoints/site1/instances/{name}", {"public_key": ident.public_key})
        r2.api("PUT", "/api/v1/checkpoints/site2/instances/c", {"public_key": Identity("site2", "c").public_key})
        trust = TrustStore.from_json(r1.api("GET", "/api/v1/signing-keys", auth=False))

        def failing(body: dict[str, Any]) -> bool:
            return bool(body["monitor_id"] == failing_id)

        async with aiohttp.ClientSession() as http:
            # a on replica 1 (checks take 1.5 s: some are always in flight), b on replica 2
            a = SimAgent(http, [r1.ws_url, r2.ws_url], ids["a"], PUBLIC_URL, trust, delay=1.5, fail=failing)
            b = SimAgent(http, [r2.ws_url, r1.ws_url], ids["b"], PUBLIC_URL, trust, delay=0.05, fail=failing)
            agents = [a, b]
            failing_id = ""
            for agent in agents:
                agent.start()
            await eventually(lambda: a.connected_to == r1.ws_url and b.connected_to == r2.ws_url, timeout=15,
                             what="a on replica 1, b on replica 2")
            health = await eventually(lambda: _both_connected(r1), timeout=10, what="both instances connected")
            assert health["state"] == "active"
            assert _both_connected(r2)  # the other replica sees the same
            monitors = [r1.api("POST", "/api/v1/monitors", {"name": f"m{i}", "checkpoint": "site1", "type": "tcp",
                                                            "target": f"10.0.0.{i}:80", "interval_s": INTERVAL,
                                                            "timeout_s": 2})["id"] for i in range(12)]
            failing_id = r2.api("POST", "/api/v1/monitors", {"name": "failing", "checkpoint": "site1", "type": "tcp",
                                                              "target": "10.0.0.99:80", "interval_s": 3600,
                                                              "timeout_s": 2})["id"]
            # retry on the other instance, across replicas, then monitor_down once
            await eventually(lambda: _open_alerts(r2, "monitor_down"), timeout=15, what="monitor_down")
            tries = sorted((body["attempt"], agent.identity.instance) for agent in agents for body in agent.ran
                           if body["monitor_id"] == failing_id)
            assert [t[0] for t in tries] == [1, 2] and tries[0][1] != tries[1][1], tries
            # checkpoint_unavailable for site2 (nobody connected), raised once by two replicas
            await eventually(lambda: _open_alerts(r1, "checkpoint_unavailable"), timeout=15, what="unavailable")
            await asyncio.sleep(3 * INTERVAL)  # several due times, both replicas claiming
            assert any(body["monitor_id"] in monitors for body in a.ran) and any(
                body["monitor_id"] in monitors for body in b.ran)

            # kill replica 1 while a has checks in flight (received, not yet acknowledged)
            await eventually(lambda: _running(a), timeout=10, interval=0.01, what="a check running on a")
            in_flight = [body["check_id"] for body in a.ran if body["check_id"] not in a.acked]
            killed_at = time.time()
            r1.kill()
            await eventually(lambda: a.connected_to == r2.ws_url, timeout=10, what="a to reconnect to replica 2")
            await asyncio.sleep(2 + 3 + 2)  # replica timeout, result margin, a few more due times
            after = _rows(pg, "SELECT DISTINCT monitor_id FROM dispatches WHERE dispatched_at > :t",
                          t=killed_at + 3)
            assert set(monitors) <= {row[0] for row in after}, "scheduling stopped for some monitors"
            lost = _rows(pg, "SELECT check_id, status, instance FROM dispatches WHERE dispatched_at < :t "
                             "AND status NOT IN ('done', 'reassigned')", t=killed_at)
            assert lost == [], f"checks dispatched before the kill that never completed: {lost}"
            # ... and what a had in flight was delivered (from its outbox) and stored
            for check_id in in_flight:
                assert check_id in a.acked, f"in-flight check {check_id} was not acknowledged"
            assert r2.api("GET", "/api/v1/checkpoints/site1/health")["state"] == "active"

        # each due check once: one first attempt per due time of a monitor, due times an interval apart
        rows = _rows(pg, "SELECT monitor_id, due_at FROM dispatches WHERE due_at IS NOT NULL "
                         "ORDER BY monitor_id, due_at")
        by_monitor: dict[str, list[float]] = {}
        for monitor_id, due_at in rows:
            by_monitor.setdefault(monitor_id, []).append(due_at)
        assert set(monitors) <= set(by_monitor)
        gaps = [later - earlier for times in by_monitor.values() for earlier, later in itertools.pairwise(times)]
        assert gaps and min(gaps) >= INTERVAL - 1e-6, sorted(gaps)[:5]
        assert sum(len(times) for times in by_monitor.values()) >= 12 * 8  # both replicas kept dispatching
        alerts = _rows(pg, "SELECT kind, subject FROM alerts")
        assert sorted(alerts) == sorted([("monitor_down", failing_id), ("checkpoint_unavailable", "site2")]), alerts
        for replica in replicas:  # no claim ever collided (the unique due-time index would have said so)
            assert "Traceback" not in replica.log() and "IntegrityError" not in replica.log()
    finally:
        for agent in agents:
            await agent.stop()
        for replica in replicas:
            replica.stop()


def _running(agent: SimAgent) -> list[str]:
    """Checks the agent is running now (received, no result yet)."""
    return [body["check_id"] for body in agent.ran if body["check_id"] not in agent.outbox
            and body["check_id"] not in agent.acked]


def _both_connected(replica: ControlPlaneProcess) -> dict[str, Any] | None:
    health: dict[str, Any] = replica.api("GET", "/api/v1/checkpoints/site1/health")
    return health if all(i["connected"] for i in health["instances"]) and len(health["instances"]) == 2 else None


def _open_alerts(replica: ControlPlaneProcess, kind: str) -> list[dict[str, Any]]:
    return [a for a in replica.api("GET", "/api/v1/alerts?open=true")["alerts"] if a["kind"] == kind]
