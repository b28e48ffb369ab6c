"""Signed instruction batches: checks claimed together for one instance leave as one envelope.

An instance whose heartbeats announce ``"features": ["instruction_batch"]`` gets the checks of
one claim as one signed batch; an instance that does not (an older agent) gets one envelope per
check. Results stay bound to the check dispatched to that instance, and a batch the agent
refuses (one ``rejected`` per item) is handled exactly like refused single instructions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.agents import Api, FakeAgent, Identity, RunningServer, make_settings, start_server
from support.waiting import eventually

from vantage.protocol import TrustStore

CP = "site1"
MONITORS = 6


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(tmp_path))
    yield running
    await running.stop()


async def _pair(server: RunningServer, http: aiohttp.ClientSession) -> tuple[Api, TrustStore, FakeAgent, FakeAgent]:
    """Instance ``new`` announces batches, ``old`` does not; both connected with heartbeats."""
    api = Api(http, server.url)
    await api.ok("PUT", f"/api/v1/checkpoints/{CP}", {})
    trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
    agents = []
    for name in ("new", "old"):
        ident = Identity(CP, name)
        await api.ok("PUT", f"/api/v1/checkpoints/{CP}/instances/{name}", {"public_key": ident.public_key})
        agent = FakeAgent(http, server.ws_url, ident, server.url)
        if name == "new":
            agent.health_extra["features"] = ["instruction_batch"]
        await agent.connect(auto_heartbeat=True)
        agents.append(agent)
    new, old = agents

    def features_known() -> bool:
        sessions = {n: server.core.registry.get(CP, n) for n in ("new", "old")}
        return all(s is not None and s.health is not None for s in sessions.values()) and bool(
            sessions["new"] and sessions["new"].has_feature("instruction_batch")
        )

    await eventually(features_known)
    return api, trust, new, old


async def _claimed_together(api: Api, **fields: Any) -> list[str]:
    """Monitors made while the checkpoint is disabled, then released at once: one claim takes them all."""
    await api.ok("POST", f"/api/v1/checkpoints/{CP}/state", {"state": "disabled", "reason": "setting up"})
    ids = []
    for n in range(MONITORS):
        body = {"name": f"m{n}", "checkpoint": CP, "type": "tcp", "target": "127.0.0.1:9", "interval_s": 600,
                **fields}
        ids.append((await api.ok("POST", "/api/v1/monitors", body))["id"])
    await api.ok("POST", f"/api/v1/checkpoints/{CP}/state", {"state": "active"})
    return ids


async def _frames(agent: FakeAgent, trust: TrustStore, items: int) -> list[tuple[str, list[dict[str, Any]]]]:
    frames: list[tuple[str, list[dict[str, Any]]]] = []
    while sum(len(payloads) for _kind, payloads in frames) < items:
        frames.append(await agent.frame(trust))
    return frames


async def _results(api: Api, monitor_id: str) -> list[dict[str, Any]]:
    return list((await api.ok("GET", f"/api/v1/monitors/{monitor_id}/results"))["results"])


def _sample(server: RunningServer, name: str, **labels: str) -> float:
    return server.core.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_one_batch_to_a_capable_agent_singles_to_an_old_one(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    api, trust, new, old = await _pair(server, http)
    try:
        ids = await _claimed_together(api)
        # the claim spreads the six checks over both instances, three each
        new_frames = await _frames(new, trust, MONITORS // 2)
        old_frames = await _frames(old, trust, MONITORS // 2)
        assert [(kind, len(items)) for kind, items in new_frames] == [("instruction_batch", 3)]
        assert [(kind, len(items)) for kind, items in old_frames] == [("instruction", 1)] * 3
        new_items = new_frames[0][1]
        old_items = [items[0] for _kind, items in old_frames]
        assert {i["aud"] for i in new_items} == {f"{CP}/new"} and {i["aud"] for i in old_items} == {f"{CP}/old"}
        assert all(i["kind"] == "run_check" and i["body"]["attempt"] == 1 for i in new_items + old_items)
        assert len({i["nonce"] for i in new_items}) == 3
        assert sorted(i["body"]["monitor_id"] for i in new_items + old_items) == sorted(ids)
        assert [i["seq"] for i in new_items] == sorted(i["seq"] for i in new_items)

        # a result stays bound to the instance its check was dispatched to, batch or not
        await old.result(new_items[0], ok=False, error="not mine")
        await old.ack()  # refused, but acknowledged so that the outbox drains
        assert _sample(server, "vantage_cp_refused_results_total", reason="not_dispatched_to_this_instance") == 1
        for item in new_items:
            await new.result(item, ok=True)
        for item in old_items:
            await old.result(item, ok=True)
        for agent, items in ((new, new_items), (old, old_items)):
            for item in items:
                results = await eventually(lambda m=item["body"]["monitor_id"]: _results(api, m))
                assert [(r["instance"], r["ok"], r["check_id"]) for r in results] == [
                    (agent.identity.instance, True, item["body"]["check_id"])
                ]
        assert _sample(server, "vantage_cp_instruction_frames_total", kind="instruction_batch") == 1
        assert _sample(server, "vantage_cp_instruction_frames_total", kind="instruction") == 3
    finally:
        await new.close()
        await old.close()


async def test_refused_batch_is_handled_like_refused_singles(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    api, trust, new, old = await _pair(server, http)
    try:
        ids = await _claimed_together(api, timeout_s=1)
        new_frames = await _frames(new, trust, MONITORS // 2)
        old_frames = await _frames(old, trust, MONITORS // 2)
        assert [kind for kind, _items in new_frames] == ["instruction_batch"]
        # an agent refuses a batch as a whole: one "rejected" per item, all with the batch's reason
        refused = {"new": new_frames[0][1], "old": [items[0] for _kind, items in old_frames]}
        for agent in (new, old):
            for item in refused[agent.identity.instance]:
                await agent.send({"type": "rejected", "nonce": item["nonce"], "reason": "expired"})
        await eventually(lambda: _sample(server, "vantage_cp_agent_rejections_total", reason="expired") == MONITORS)

        # both kinds run out at their deadline and go to the other instance as attempt 2
        retries: dict[str, dict[str, Any]] = {}
        for agent in (new, old):
            for _kind, items in await _frames(agent, trust, MONITORS // 2):
                for item in items:
                    assert item["body"]["attempt"] == 2
                    retries[item["body"]["monitor_id"]] = {"instance": agent.identity.instance, "item": item}
        assert sorted(retries) == sorted(ids)
        for agent_name, items in refused.items():
            for item in items:
                assert retries[item["body"]["monitor_id"]]["instance"] != agent_name
                results = await _results(api, item["body"]["monitor_id"])
                assert [(r["attempt"], r["instance"], r["ok"], r["error"]) for r in results] == [
                    (1, agent_name, False, "no result in time")
                ]
        assert not new.ws.closed and not old.ws.closed  # a refusal is logged and counted, not a fault
    finally:
        await new.close()
        await old.close()
