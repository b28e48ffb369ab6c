"""An in-process control plane and scripted agents built from :mod:`vantage.protocol`.

Used by the control plane's tests and benchmarks; usable by anyone who needs a real control
plane or a well-behaved (or deliberately misbehaving) agent on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.control_plane.app import create_app, make_runner
from vantage.control_plane.config import Settings
from vantage.control_plane.core import CORE_KEY, ControlPlane
from vantage.protocol import (
    INSTRUCTION_BATCH_TYPE,
    INSTRUCTION_TYPE,
    TrustStore,
    generate_key,
    make_hello,
    public_key_b64,
    verify,
)

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"  # the test harness's own token


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    """Settings with small intervals, a SQLite file and a signing key under ``tmp``."""
    base = Settings(
        db_url=f"sqlite:///{tmp / 'cp.db'}",
        signing_key_path=tmp / "signing.pem",
        admin_token=ADMIN_TOKEN,
        heartbeat_interval=1.0,
        unavailable_grace=2.0,
        scheduler_tick=0.1,
        result_margin=1.0,
        hello_timeout=2.0,
    )
    return replace(base, **overrides)


@dataclass
class RunningServer:
    """A control plane listening on 127.0.0.1 in this event loop."""

    runner: web.AppRunner
    url: str

    @property
    def core(self) -> ControlPlane:
        return self.runner.app[CORE_KEY]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/api/v1/agent/connect"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(settings: Settings, port: int = 0) -> RunningServer:
    """Start ``create_app(settings)`` on 127.0.0.1 (``port`` 0: any free port)."""
    runner = make_runner(create_app(settings), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    address = runner.addresses[0]
    return RunningServer(runner, f"http://127.0.0.1:{address[1]}")


class Api:
    """A small REST client with a bearer token."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None = ADMIN_TOKEN) -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, body: Any = None, token: str | None = "") -> tuple[int, Any]:
        use = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {use}"} if use else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as response:
            text = await response.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = text
            return response.status, data

    async def ok(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        status, data = await self.call(method, path, body)
        if status not in expect:
            raise AssertionError(f"{method} {path} -> {status} {data}")
        return data


@dataclass
class Identity:
    """An instance's name and identity key."""

    checkpoint: str
    instance: str
    key: Ed25519PrivateKey = field(default_factory=generate_key)

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)


class HandshakeRefused(Exception):
    """The server answered the hello with an error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FakeAgent:
    """A scripted agent session: hello, heartbeats, instructions, results."""

    def __init__(self, http: aiohttp.ClientSession, ws_url: str, identity: Identity, control_plane: str) -> None:
        self.http = http
        self.ws_url = ws_url
        self.identity = identity
        self.control_plane = control_plane
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.welcome: dict[str, Any] = {}
        self.acks: list[str] = []
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        #: the code of the close frame the server sent, once one arrived
        self.received_close_code: int | None = None
        self._beater: asyncio.Task[None] | None = None
        self.healthy = True
        self.health_extra: dict[str, Any] = {}

    async def connect(
        self, *, challenge_override: str | None = None, url_override: str | None = None,
        key_override: Ed25519PrivateKey | None = None, auto_heartbeat: bool = False,
    ) -> dict[str, Any]:
        """Open the socket and do the handshake; returns the welcome or raises HandshakeRefused.

        With ``auto_heartbeat`` a background task sends heartbeats at the welcome's interval.
        """
        self.ws = await self.http.ws_connect(self.ws_url, heartbeat=None)
        challenge = await self.receive()
        assert challenge["type"] == "challenge", challenge
        hello = make_hello(
            key_override or self.identity.key,
            challenge=challenge_override or challenge["challenge"],
            checkpoint=self.identity.checkpoint,
            instance=self.identity.instance,
            control_plane=url_override or self.control_plane,
        )
        await self.send({"type": "hello", "envelope": hello})
        answer = await self.receive()
        if answer.get("type") == "error":
            await self.ws.close()
            raise HandshakeRefused(answer["error"])
        assert answer["type"] == "welcome", answer
        self.welcome = answer
        self._reader = asyncio.get_running_loop().create_task(self._read())
        if auto_heartbeat:
            self._beater = asyncio.get_running_loop().create_task(self._beat(float(answer["heartbeat_interval"])))
        return answer

    async def _beat(self, interval: float) -> None:
        assert self.ws is not None
        while not self.ws.closed:
            try:
                await self.heartbeat()
            except ConnectionError:
                return
            await asyncio.sleep(interval)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self.queue.put(json.loads(msg.data))
                elif self._closing_message(msg):
                    return
        finally:
            await self.queue.put(None)

    def _closing_message(self, msg: aiohttp.WSMessage) -> bool:
        """True for a message that ends the socket; remembers the code the server closed with.

        aiohttp's client reports 1006 as ``close_code`` when its own close reply cannot be
        written because the server is already gone, even though the server's close frame (with
        its real code) arrived first; the frame's code is what the server said.
        """
        if msg.type == aiohttp.WSMsgType.CLOSE:
            self.received_close_code = int(msg.data)
            return True
        return msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next JSON message (ConnectionError when the socket closes)."""
        assert self.ws is not None
        if self._reader is not None:
            item = await asyncio.wait_for(self.queue.get(), timeout)
            if item is None:
                self.queue.put_nowait(None)
                raise ConnectionError(f"socket closed: {self.ws.close_code}")
            return item
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {msg.type.name} {self.ws.close_code}")
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def heartbeat(self, healthy: bool | None = None, **extra: Any) -> None:
        """Send a heartbeat; ``healthy`` and ``extra`` stick for later (automatic) heartbeats."""
        if healthy is not None:
            self.healthy = healthy
        self.health_extra.update(extra)
        healthy = self.healthy
        health = {
            "version": "0.1.0", "image_digest": None, "uptime_s": 1.0, "healthy": healthy,
            "reasons": [] if healthy else ["self-check failed"],
            "host": {"hostname": f"host-{self.identity.instance}", "os": "linux", "cpu_count": 2,
                     "memory_total_bytes": 1 << 30, "dns_servers": [], "timezone": "UTC"},
            "data_protection": {"strip_content": False, "strip_headers": False, "strip_ips": False},
        }
        health.update(self.health_extra)
        await self.send({"type": "heartbeat", "health": health})

    async def instruction(self, trust: TrustStore, timeout: float = 5.0) -> dict[str, Any]:
        """The next instruction's verified payload (acks are collected on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(timeout=max(0.01, deadline - time.monotonic()))
            if message["type"] == "ack":
                self.acks.append(message["id"])
                continue
            assert message["type"] == "instruction", message
            _type, payload, _keyid = verify(message["envelope"], trust)
            data: dict[str, Any] = json.loads(payload)
            return data

    async def frame(self, trust: TrustStore, timeout: float = 5.0) -> tuple[str, list[dict[str, Any]]]:
        """The next instruction frame: its type (``instruction`` or ``instruction_batch``) and the
        verified payloads it carries (one, or the batch's items); acks are collected on the way."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(timeout=max(0.01, deadline - time.monotonic()))
            if message["type"] == "ack":
                self.acks.append(message["id"])
                continue
            assert message["type"] in ("instruction", "instruction_batch"), message
            payload_type, payload, _keyid = verify(message["envelope"], trust)
            data = json.loads(payload)
            if message["type"] == "instruction":
                assert payload_type == INSTRUCTION_TYPE
                return message["type"], [data]
            assert payload_type == INSTRUCTION_BATCH_TYPE and data["v"] == 1
            return message["type"], list(data["items"])

    async def result(self, instruction: dict[str, Any], ok: bool, error: str | None = None,
                     result_id: str | None = None, **extra: Any) -> None:
        body = instruction["body"]
        result = {
            "id": result_id or body["check_id"], "check_id": body["check_id"], "monitor_id": body["monitor_id"],
            "attempt": body["attempt"], "ok": ok, "error": error, "duration_ms": 1.5,
            "started_at": time.time(), "phases": {"connect_ms": 0.3}, "details": {"warnings": []},
        }
        result.update(extra)
        await self.send({"type": "result", "result": result})

    async def ack(self, timeout: float = 5.0) -> str:
        """Wait for the next ack (other messages are an error)."""
        message = await self.receive(timeout)
        assert message["type"] == "ack", message
        self.acks.append(message["id"])
        return str(message["id"])

    async def close(self) -> None:
        if self._beater is not None:
            self._beater.cancel()
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    def pending_instruction(self, trust: TrustStore) -> dict[str, Any] | None:
        """An instruction already received (verified payload), else None; acks are collected."""
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if message is None:
                self.queue.put_nowait(None)
                return None
            if message["type"] == "ack":
                self.acks.append(message["id"])
                continue
            assert message["type"] == "instruction", message
            _type, payload, _keyid = verify(message["envelope"], trust)
            data: dict[str, Any] = json.loads(payload)
            return data
        return None

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes the socket; returns the close code."""
        assert self.ws is not None
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
            return self.received_close_code if self.received_close_code is not None else self.ws.close_code
        deadline = time.monotonic() + timeout
        while not self.ws.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("socket still open")
            if self._closing_message(await self.ws.receive(timeout=remaining)):
                break
        return self.received_close_code if self.received_close_code is not None else self.ws.close_code


async def first_instruction(
    agents: list[FakeAgent], trust: TrustStore, timeout: float = 5.0
) -> tuple[FakeAgent, dict[str, Any]]:
    """The first instruction any of ``agents`` receives, and who received it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for agent in agents:
            found = agent.pending_instruction(trust)
            if found is not None:
                return agent, found
        await asyncio.sleep(0.02)
    raise AssertionError("no instruction in time")


class SimAgent:
    """A protocol-correct simulated agent: reconnects, heartbeats, runs each instruction once.

    Like the real agent it keeps a replay cache (an instruction whose nonce it has seen is
    answered ``rejected``/``replayed`` and not run again) and an outbox (a result whose socket
    went away is delivered after the next hello, until acknowledged). Running a check is
    simulated: it takes ``delay`` seconds and is ``ok`` unless ``fail(body)`` says otherwise.
    With ``batches`` (the default) it announces the ``instruction_batch`` feature and takes
    signed batches as the real agent does: all of a batch's nonces are new, or the whole batch is
    refused (one ``rejected`` per item) and none is recorded. It connects to the first of
    ``ws_urls`` that accepts it, starting with the one that served it last, and signs its hellos
    for ``control_plane`` (the control plane's public URL).
    """

    def __init__(
        self, http: aiohttp.ClientSession, ws_urls: list[str], identity: Identity, control_plane: str,
        trust: TrustStore, *, delay: float = 0.0, fail: Any = None, batches: bool = True,
    ) -> None:
        self.http, self.ws_urls, self.identity, self.control_plane, self.trust = (
            http, list(ws_urls), identity, control_plane, trust)
        self.delay = delay
        self.batches = batches
        #: instruction frames received, by type
        self.frames: dict[str, int] = {}
        self.fail = fail or (lambda body: False)
        self.seen_nonces: set[str] = set()
        self.ran: list[dict[str, Any]] = []  # bodies of the run_check instructions run
        self.replayed = 0
        self.outbox: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()
        self.connected_to: str | None = None
        self.connects = 0
        #: (time the instruction arrived, result id) of each result sent, for latency figures
        self.sent_at: dict[str, float] = {}
        self.received_at: dict[str, float] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in list(self._jobs):
            job.cancel()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and self.connected_to is not None

    async def _run(self) -> None:
        while not self._stopping:
            for url in self.ws_urls:
                try:
                    await self._session(url)
                except (aiohttp.ClientError, OSError, ConnectionError, HandshakeRefused, TimeoutError, ValueError,
                        KeyError):
                    pass
                self.connected_to = None
                if self._stopping:
                    return
            await asyncio.sleep(0.2)

    async def _session(self, url: str) -> None:
        ws = await self.http.ws_connect(url, heartbeat=None)
        self._ws = ws
        try:
            challenge = json.loads((await ws.receive(timeout=5)).data)
            hello = make_hello(self.identity.key, challenge=challenge["challenge"], checkpoint=self.identity.checkpoint,
                               instance=self.identity.instance, control_plane=self.control_plane)
            await ws.send_str(json.dumps({"type": "hello", "envelope": hello}))
            welcome = await ws.receive(timeout=5)
            if welcome.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError("closed during the hello")
            answer = json.loads(welcome.data)
            if answer.get("type") != "welcome":
                raise HandshakeRefused(str(answer.get("error")))
            self.connected_to, self.connects = url, self.connects + 1
            self.ws_urls.remove(url)
            self.ws_urls.insert(0, url)
            interval = float(answer["heartbeat_interval"])
            beater = asyncio.get_running_loop().create_task(self._beat(ws, interval))
            try:
                for result in list(self.outbox.values()):
                    await ws.send_str(json.dumps({"type": "result", "result": result}))
                await self._read(ws)
            finally:
                beater.cancel()
        finally:
            await ws.close()

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> None:
        health = {"version": "0.1.0", "image_digest": None, "uptime_s": 1.0, "healthy": True, "reasons": [],
                  "host": {"hostname": f"sim-{self.identity.instance}", "os": "linux"},
                  "data_protection": {"strip_content": False, "strip_headers": False, "strip_ips": False},
                  "features": ["instruction_batch"] if self.batches else []}
        while not ws.closed:
            await ws.send_str(json.dumps({"type": "heartbeat", "health": health}))
            await asyncio.sleep(interval)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            data = json.loads(msg.data)
            if data["type"] == "ack":
                self.acked.add(data["id"])
                self.outbox.pop(data["id"], None)
            elif data["type"] in ("instruction", "instruction_batch"):
                self._instructions(ws, data["type"], data["envelope"])

    def _instructions(self, ws: aiohttp.ClientWebSocketResponse, kind: str, envelope: dict[str, Any]) -> None:
        self.frames[kind] = self.frames.get(kind, 0) + 1
        payload_type, payload, _keyid = verify(envelope, self.trust)
        if kind == "instruction":
            assert payload_type == INSTRUCTION_TYPE
            instructions = [json.loads(payload)]
        else:
            assert self.batches and payload_type == INSTRUCTION_BATCH_TYPE
            instructions = list(json.loads(payload)["items"])
        nonces = [i["nonce"] for i in instructions]
        if any(n in self.seen_nonces for n in nonces) or len(set(nonces)) < len(nonces):
            self.replayed += len(nonces)
            self._job(self._reject(ws, nonces, "replayed"))
            return
        self.seen_nonces.update(nonces)
        for instruction in instructions:
            if instruction["kind"] == "run_check":
                self.received_at[instruction["body"]["check_id"]] = time.monotonic()
                self._job(self._run_check(instruction["body"]))

    @staticmethod
    async def _reject(ws: aiohttp.ClientWebSocketResponse, nonces: list[str], reason: str) -> None:
        for nonce in nonces:  # one "rejected" per item, as the real agent answers a refused batch
            await ws.send_str(json.dumps({"type": "rejected", "nonce": nonce, "reason": reason}))

    def _job(self, coro: Any) -> None:
        job = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run_check(self, body: dict[str, Any]) -> None:
        self.ran.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        ok = not self.fail(body)
        result = {"id": body["check_id"], "check_id": body["check_id"], "monitor_id": body["monitor_id"],
                  "attempt": body["attempt"], "ok": ok, "error": None if ok else "simulated failure",
                  "duration_ms": self.delay * 1000, "started_at": time.time(), "phases": {}, "details": {}}
        self.outbox[body["check_id"]] = result
        ws = self._ws
        if ws is not None and not ws.closed and self.connected_to is not None:
            try:
                await ws.send_str(json.dumps({"type": "result", "result": result}))
                self.sent_at[body["check_id"]] = time.monotonic()
            except (ConnectionError, aiohttp.ClientError):
                pass  # stays in the outbox
