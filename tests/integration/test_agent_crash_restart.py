"""A real ``vantage agent run`` killed with SIGKILL mid-run: nothing sent is lost, nothing replays.

A scripted control plane (just enough of the session protocol) drives the agent: it signs
``run_check`` instructions with a key the agent trusts and records every result it receives.
During the first session it never acknowledges, as if every ack had been lost with the
connection, so each result the agent has sent must still be in its outbox when it is killed
(group commit: durable before it is sent, removed only on ack).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from support.waiting import eventually

from vantage.protocol import generate_key, key_id, make_instruction, public_key_b64, write_private_key

VANTAGE = Path(sys.executable).with_name("vantage")
AUDIENCE = "crash/a"
CHECKS = 300


class ScriptedControlPlane:
    """Accepts one agent session at a time, records results, acknowledges them on request."""

    def __init__(self) -> None:
        self.key = generate_key()
        self.ack = False
        self.sessions = 0
        #: result ids received, per session (index 0: the first session)
        self.received: list[list[str]] = []
        self.rejected: list[dict[str, Any]] = []
        self.ws: web.WebSocketResponse | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    def trusted_keys(self) -> dict[str, Any]:
        entry = {"keyid": key_id(self.key), "public_key": public_key_b64(self.key), "status": "active"}
        return {"keys": [{**entry, "not_after": None}]}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/agent/connect", self._connect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _connect(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"type": "challenge", "challenge": "0" * 64, "server_time": int(time.time())})
        await ws.receive(timeout=10)  # the hello (not verified here: the agent is what is tested)
        await ws.send_json({"type": "welcome", "heartbeat_interval": 15, "server_time": int(time.time())})
        self.ws = ws
        self.sessions += 1
        received: list[str] = []
        self.received.append(received)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["type"] == "result":
                received.append(data["result"]["id"])
                if self.ack:
                    await ws.send_json({"type": "ack", "id": data["result"]["id"]})
            elif data["type"] == "rejected":
                self.rejected.append(data)
        return ws

    def instruction(self, check_url: str, seq: int) -> dict[str, Any]:
        check_id = str(uuid.uuid4())
        body = {
            "check_id": check_id,
            "monitor_id": "m",
            "attempt": 1,
            "check": {"type": "http", "target": check_url, "timeout_s": 10},
        }
        envelope = make_instruction(
            self.key, iss=self.url, aud=AUDIENCE, kind="run_check", body=body, seq=seq
        )
        return {"type": "instruction", "envelope": envelope}

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)  # checks are still running, and results queueing, when it is killed
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()


def _outbox_ids(state: Path) -> set[str]:
    ids = set()
    for path in (state / "outbox").glob("*.json"):
        try:
            ids.add(json.loads(path.read_bytes())["id"])
        except FileNotFoundError:  # acknowledged and removed meanwhile
            continue
    return ids


async def test_sigkill_mid_run_loses_no_sent_result_and_reopens_no_replay(
    tmp_path: Path, target: str
) -> None:
    cp = ScriptedControlPlane()
    await cp.start()
    key = generate_key()
    write_private_key(tmp_path / "identity.pem", key)
    (tmp_path / "trusted.json").write_text(json.dumps(cp.trusted_keys()))
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update(
        VANTAGE_CONTROL_PLANE_URL=cp.url,
        VANTAGE_CHECKPOINT="crash",
        VANTAGE_INSTANCE="a",
        VANTAGE_IDENTITY_KEY=str(tmp_path / "identity.pem"),
        VANTAGE_TRUSTED_KEYS=str(tmp_path / "trusted.json"),
        VANTAGE_STATE_DIR=str(state),
        VANTAGE_LOG_LEVEL="WARNING",
    )
    log = (tmp_path / "agent.log").open("ab")
    procs: list[asyncio.subprocess.Process] = []

    async def start_agent(session: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(str(VANTAGE), "agent", "run", env=env, stderr=log)
        procs.append(proc)
        await eventually(lambda: cp.sessions >= session, timeout=20)
        return proc

    async def kill(proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    try:
        # Session 1: 300 checks, no ack ever (so at most a window of 64 results is sent);
        # SIGKILL once 60 results arrived, with checks still running.
        agent = await start_agent(1)
        instructions = [cp.instruction(target, seq) for seq in range(1, CHECKS + 1)]
        for message in instructions:
            await cp.send(message)
        await eventually(lambda: len(cp.received[0]) >= 60, timeout=20)
        await kill(agent)
        sent_before_kill = set(cp.received[0])
        left = _outbox_ids(state)
        assert sent_before_kill <= left, "a result was sent before it was durable in the outbox"
        assert len(left) < CHECKS  # it really was mid-run

        # Session 2 (after a restart): everything left is delivered once, and acknowledged.
        cp.ack = True
        agent = await start_agent(2)
        await eventually(lambda: set(cp.received[1]) >= left, timeout=20)
        await eventually(lambda: not _outbox_ids(state), timeout=10)  # acked files are removed
        second = cp.received[1]
        assert len(second) == len(set(second)), "a result was sent twice in one session"
        delivered = set(cp.received[0]) | set(second)
        assert delivered >= left

        # Replay protection survived the SIGKILL: the first and the last instruction are refused.
        for message in (instructions[0], instructions[-1]):
            await cp.send(message)
        await eventually(lambda: len(cp.rejected) >= 2, timeout=10)
        assert [r["reason"] for r in cp.rejected] == ["replayed", "replayed"]

        # Session 3 (SIGKILL again, restart): the acks were recorded, nothing is sent again.
        await kill(agent)
        agent = await start_agent(3)
        await asyncio.sleep(1.0)
        assert cp.received[2] == []
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 15) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        log.close()
        await cp.stop()
