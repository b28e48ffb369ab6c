"""The control plane on PostgreSQL: a throw-away cluster on 127.0.0.1, the same flows as SQLite.

Runs when the ``psycopg`` driver (``pip install vantage-checkpoint[postgres]``) and the
PostgreSQL server binaries (``initdb``, ``pg_ctl``) are present; otherwise it is skipped with the
reason shown in the test report.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from check_servers import postgres_server
from support.agents import Api, FakeAgent, Identity, make_settings, start_server
from support.waiting import eventually

from vantage.protocol import TrustStore

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("psycopg") is None,
                       reason="psycopg is not installed (pip install vantage-checkpoint[postgres])"),
    pytest.mark.skipif(shutil.which("initdb") is None or shutil.which("pg_ctl") is None,
                       reason="PostgreSQL server binaries (initdb, pg_ctl) not found"),
]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_server(host_auth="trust") as server:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"


async def test_postgres_full_flow_and_restart(tmp_path: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path, db_url=postgres_url)
    server = await start_server(settings)
    async with aiohttp.ClientSession() as http:
        try:
            api = Api(http, server.url)
            await api.ok("PUT", "/api/v1/checkpoints/site1", {"labels": {"env": "pg"}})
            a, b = Identity("site1", "a"), Identity("site1", "b")
            for ident in (a, b):
                await api.ok("PUT", f"/api/v1/checkpoints/site1/instances/{ident.instance}",
                             {"public_key": ident.public_key})
            status, _ = await api.call("PUT", "/api/v1/checkpoints/site1/instances/a",
                                       {"public_key": b.public_key})
            assert status == 409
            trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
            agents = [FakeAgent(http, server.ws_url, ident, server.url) for ident in (a, b)]
            for agent in agents:
                await agent.connect(auto_heartbeat=True)
            monitor = await api.ok("POST", "/api/v1/monitors",
                                   {"name": "db", "checkpoint": "site1", "type": "tcp", "target": "db:5432"})
            from support.agents import first_instruction

            first_agent, first = await first_instruction(agents, trust)
            await first_agent.result(first, ok=False, error="refused")
            second_agent, second = await first_instruction(agents, trust)
            assert second_agent is not first_agent and second["body"]["attempt"] == 2
            await second_agent.result(second, ok=False, error="refused")
            await second_agent.result(second, ok=False, error="refused")  # duplicate
            alerts = await eventually(lambda: _open_alerts(api))
            assert alerts[0]["kind"] == "monitor_down"
            await api.ok("PUT", "/api/v1/releases/stable",
                         {"image": "vantage/checkpoint", "digest": "sha256:" + "c" * 64, "version": "2.0.1"})
            for agent in agents:
                await agent.close()
        finally:
            await server.stop()

        server = await start_server(settings)
        try:
            api = Api(http, server.url)
            results = (await api.ok("GET", f"/api/v1/monitors/{monitor['id']}/results"))["results"]
            assert [r["attempt"] for r in results] == [2, 1]
            assert (await _open_alerts(api))[0]["subject"] == monitor["id"]
            cp = await api.ok("GET", "/api/v1/checkpoints/site1")
            assert cp["labels"] == {"env": "pg"} and [i["name"] for i in cp["instances"]] == ["a", "b"]
            assert (await api.ok("GET", "/api/v1/releases/stable"))["signatures"]
        finally:
            await server.stop()


async def _open_alerts(api: Api) -> list[dict[str, object]]:
    return list((await api.ok("GET", "/api/v1/alerts?open=true"))["alerts"])
