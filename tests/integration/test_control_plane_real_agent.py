"""The control plane with two real ``vantage agent run`` processes: retries, alerts, key rotation."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.agents import Api, RunningServer, make_settings, start_server
from support.waiting import eventually

from vantage.protocol import generate_key, public_key_b64, write_private_key

VANTAGE = Path(sys.executable).with_name("vantage")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(tmp_path, heartbeat_interval=2.0))
    yield running
    await running.stop()


async def _start_agent(tmp: Path, server: RunningServer, api: Api, name: str) -> asyncio.subprocess.Process:
    key = generate_key()
    write_private_key(tmp / f"{name}.pem", key)
    await api.ok("PUT", f"/api/v1/checkpoints/site1/instances/{name}", {"public_key": public_key_b64(key)})
    state = tmp / f"state-{name}"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update(
        VANTAGE_CONTROL_PLANE_URL=server.url, VANTAGE_CHECKPOINT="site1", VANTAGE_INSTANCE=name,
        VANTAGE_IDENTITY_KEY=str(tmp / f"{name}.pem"), VANTAGE_TRUSTED_KEYS=str(tmp / "trusted.json"),
        VANTAGE_STATE_DIR=str(state),
    )
    log = (tmp / f"{name}.log").open("wb")
    return await asyncio.create_subprocess_exec(str(VANTAGE), "agent", "run", env=env, stderr=log)


async def test_pair_of_real_agents(tmp_path: Path, server: RunningServer) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]
    procs: list[asyncio.subprocess.Process] = []
    async with aiohttp.ClientSession() as http:
        api = Api(http, server.url)
        try:
            await api.ok("PUT", "/api/v1/checkpoints/site1", {})
            (tmp_path / "trusted.json").write_text(json.dumps(await api.ok("GET", "/api/v1/signing-keys")))
            for name in ("a", "b"):
                procs.append(await _start_agent(tmp_path, server, api, name))
            health = await eventually(lambda: _healthy(api), timeout=15)
            assert {i["name"] for i in health["instances"]} == {"a", "b"}
            assert all(i["version"] and i["host"]["hostname"] for i in health["instances"])

            # a closed port: attempt 1 fails on one instance, attempt 2 on the other → monitor_down
            down = await api.ok("POST", "/api/v1/monitors", {"name": "closed", "checkpoint": "site1", "type": "tcp",
                                                              "target": "127.0.0.1:9", "timeout_s": 2})
            alerts = await eventually(lambda: _open(api), timeout=15)
            assert alerts[0]["subject"] == down["id"] and alerts[0]["kind"] == "monitor_down"
            results = (await api.ok("GET", f"/api/v1/monitors/{down['id']}/results"))["results"]
            assert [r["attempt"] for r in results] == [2, 1]
            assert {r["instance"] for r in results} == {"a", "b"}
            assert all(r["ok"] is False and "refused" in r["error"] for r in results)

            # rotate the signing key: both agents apply it, then run checks signed by the new key
            rotated = await api.ok("POST", "/api/v1/signing-keys/rotate", {})
            assert sorted(rotated["announced_to"]) == ["site1/a", "site1/b"]
            up = await api.ok("POST", "/api/v1/monitors", {"name": "open", "checkpoint": "site1", "type": "tcp",
                                                            "target": f"127.0.0.1:{open_port}"})
            ok = await eventually(lambda: _results(api, up["id"]), timeout=15)
            assert ok[0]["ok"] is True and ok[0]["attempt"] == 1
            for name in ("a", "b"):  # each persisted the new key (docs/protocol.md: trusted_keys.json)
                store = tmp_path / f"state-{name}" / "trusted_keys.json"
                await eventually(lambda s=store: s.exists() and rotated["keyid"] in s.read_text())
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await asyncio.wait_for(proc.wait(), 15)
            listener.close()
    for proc in procs:
        assert proc.returncode == 0


async def test_real_agents_run_checks_sent_as_one_signed_batch(tmp_path: Path, server: RunningServer) -> None:
    """Checks claimed together leave as one batch per instance; the real agents run them all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    target = f"127.0.0.1:{listener.getsockname()[1]}"
    metrics = server.core.metrics.registry
    procs: list[asyncio.subprocess.Process] = []
    async with aiohttp.ClientSession() as http:
        api = Api(http, server.url)
        try:
            await api.ok("PUT", "/api/v1/checkpoints/site1", {})
            (tmp_path / "trusted.json").write_text(json.dumps(await api.ok("GET", "/api/v1/signing-keys")))
            for name in ("a", "b"):
                procs.append(await _start_agent(tmp_path, server, api, name))
            await eventually(lambda: _healthy(api), timeout=15)
            # the real agent announces batches
            await eventually(lambda: all(s.has_feature("instruction_batch") for s in server.core.registry.all()))
            # monitors made while the checkpoint is disabled are all due when it is enabled: one claim
            await api.ok("POST", "/api/v1/checkpoints/site1/state", {"state": "disabled", "reason": "setup"})
            ids = [
                (await api.ok("POST", "/api/v1/monitors", {"name": f"m{n}", "checkpoint": "site1", "type": "tcp",
                                                           "target": target, "interval_s": 600}))["id"]
                for n in range(8)
            ]
            await api.ok("POST", "/api/v1/checkpoints/site1/state", {"state": "active"})
            for monitor_id in ids:
                results = await eventually(lambda m=monitor_id: _results(api, m), timeout=15)
                assert [(r["attempt"], r["ok"]) for r in results] == [(1, True)]
            assert {r["instance"] for m in ids for r in await _results(api, m)} == {"a", "b"}
            assert (metrics.get_sample_value("vantage_cp_instruction_frames_total", {"kind": "instruction_batch"})
                    or 0) >= 2  # one per instance
            assert (metrics.get_sample_value("vantage_cp_instruction_frames_total", {"kind": "instruction"})
                    or 0) == 0
            rejected = [m for m in metrics.collect() if m.name == "vantage_cp_agent_rejections"]
            assert all(sample.value == 0 for family in rejected for sample in family.samples)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await asyncio.wait_for(proc.wait(), 15)
            listener.close()
    for proc in procs:
        assert proc.returncode == 0


async def _healthy(api: Api) -> dict[str, Any] | None:
    data = await api.ok("GET", "/api/v1/checkpoints/site1/health")
    reported = all(i["version"] for i in data["instances"])  # a heartbeat has arrived from each
    return data if data["healthy"] and reported else None


async def _open(api: Api) -> list[dict[str, Any]]:
    return list((await api.ok("GET", "/api/v1/alerts?open=true"))["alerts"])


async def _results(api: Api, monitor_id: str) -> list[dict[str, Any]]:
    return list((await api.ok("GET", f"/api/v1/monitors/{monitor_id}/results"))["results"])
