"""Agent sessions: the websocket endpoint ``GET /api/v1/agent/connect`` and the live registry.

A session (docs/protocol.md, "The session"): challenge → hello (verified against the enrolled
identity key) → welcome; then instructions, results, heartbeats and rejections. Anything
malformed or hostile — a binary or oversized frame, bad JSON, a wrong first message, a bad
signature, a flood — closes that one socket and is logged; other sessions are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import select
from sqlalchemy.orm import Session

from vantage.control_plane.config import Settings
from vantage.control_plane.db import Instance, now
from vantage.control_plane.metrics import Metrics
from vantage.control_plane.store import Store
from vantage.control_plane.validation import parse_json
from vantage.protocol import VerificationError, normalize_url, verify_hello

log = logging.getLogger("vantage.control_plane.sessions")

#: close codes (4000-4999 are the application's own)
CLOSE_POLICY = int(WSCloseCode.POLICY_VIOLATION)
CLOSE_UNSUPPORTED = int(WSCloseCode.UNSUPPORTED_DATA)
CLOSE_REPLACED = 4000
CLOSE_STALE = 4001
CLOSE_REMOVED = 4002
CLOSE_SHUTDOWN = int(WSCloseCode.GOING_AWAY)

KNOWN_REJECTION_REASONS = frozenset(
    {
        "unknown_key", "bad_signature", "malformed_payload", "malformed_envelope", "wrong_payload_type",
        "wrong_audience", "not_yet_valid", "lifetime_too_long", "expired", "replayed",
        "unsupported_version", "payload_too_large", "invalid_check", "unknown_kind", "replay_cache_full",
        "replay_cache_error", "invalid_rotation", "shutting_down",
    }
)
MAX_KEYID_CANDIDATES = 8
#: longest wait for socket buffer space before a peer counts as stuck
SEND_TIMEOUT_S = 10.0


class SessionError(Exception):
    """The peer misbehaved; ``reason`` is a short code (logged, counted, sent back)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(eq=False)
class LiveSession:
    """One authenticated agent connection held by this replica."""

    checkpoint: str
    instance: str
    ws: web.WebSocketResponse
    control_plane: str
    peer: str
    #: random id of this session, stored with the instance so that every replica knows which
    #: session (of which replica) is the instance's live one
    session_id: str = field(default_factory=lambda: secrets.token_hex(16))
    connected_at: float = field(default_factory=now)
    last_heartbeat: float | None = None
    health: dict[str, Any] | None = None
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: ``time.monotonic()`` once the database records this session as the instance's live one
    stored_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.checkpoint}/{self.instance}"

    @property
    def healthy(self) -> bool:
        """No heartbeat yet this session, or the latest did not say ``healthy: false``."""
        return self.health is None or self.health.get("healthy") is not False

    def has_feature(self, feature: str) -> bool:
        """The latest heartbeat of this session announced ``feature`` (none before the first)."""
        return self.health is not None and feature in self.health.get("features", ())

    def last_sign_of_life(self) -> float:
        return self.last_heartbeat if self.last_heartbeat is not None else self.connected_at

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message (serialised: one writer at a time)."""
        async with self.lock:
            await self.send_locked(message)

    async def send_locked(self, message: dict[str, Any]) -> None:
        """Send one JSON message; the caller holds :attr:`lock`.

        A peer that stops reading would make the send wait for buffer space forever and stall
        the caller (the scheduler); after :data:`SEND_TIMEOUT_S` the session is closed instead.
        """
        try:
            await asyncio.wait_for(self.ws.send_str(json.dumps(message, separators=(",", ":"))), SEND_TIMEOUT_S)
        except ConnectionResetError as exc:
            raise ConnectionError(f"{self.name} is disconnected: {exc}") from None
        except TimeoutError:
            log.warning("%s does not read its socket; closing it", self.name)
            closing_task(self, CLOSE_POLICY, "send timeout")
            raise ConnectionError(f"sending to {self.name} timed out") from None

    async def close(self, code: int, reason: str) -> None:
        self.closed = True
        try:
            await self.ws.close(code=code, message=reason.encode()[:120])
        except Exception as exc:  # noqa: BLE001 - the socket may be gone already
            log.debug("closing %s: %s", self.name, exc)


class Registry:
    """The live sessions of this replica, one per instance."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], LiveSession] = {}

    def add(self, session: LiveSession) -> LiveSession | None:
        """Register ``session``; returns the session it replaces, if any."""
        old = self._sessions.get((session.checkpoint, session.instance))
        self._sessions[(session.checkpoint, session.instance)] = session
        return old

    def remove(self, session: LiveSession) -> bool:
        """Unregister ``session`` if it is still the instance's live one."""
        key = (session.checkpoint, session.instance)
        if self._sessions.get(key) is not session:
            return False
        del self._sessions[key]
        return True

    def get(self, checkpoint: str, instance: str) -> LiveSession | None:
        return self._sessions.get((checkpoint, instance))

    def all(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)


# --- sanitising what agents send -----------------------------------------------------------

HOST_FIELDS = ("hostname", "os", "cpu_count", "memory_total_bytes", "dns_servers", "timezone")
DATA_PROTECTION_FIELDS = ("strip_content", "strip_headers", "strip_ips")
#: a feature name an agent may announce; anything else in ``features`` is dropped
FEATURE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_FEATURES = 16


def _short(value: Any, limit: int = 256) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _num(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _features(value: Any) -> list[str]:
    """The announced feature names: short lower-case tokens, at most :data:`MAX_FEATURES`, no repeats."""
    if not isinstance(value, list):
        return []
    names = [f for f in value[:MAX_FEATURES] if isinstance(f, str) and FEATURE_NAME.fullmatch(f)]
    return list(dict.fromkeys(names))


def sanitize_health(health: Any) -> dict[str, Any]:
    """Keep the documented heartbeat fields, bounded in size; drop everything else."""
    if not isinstance(health, dict):
        raise SessionError("malformed_heartbeat", "health must be an object")
    host_in: dict[str, Any] = health["host"] if isinstance(health.get("host"), dict) else {}
    host: dict[str, Any] = {}
    for name in HOST_FIELDS:
        value = host_in.get(name)
        if name == "dns_servers":
            if isinstance(value, list):
                host[name] = [s[:64] for s in value[:16] if isinstance(s, str)]
        elif name in ("cpu_count", "memory_total_bytes"):
            if _num(value) is not None:
                host[name] = value
        elif isinstance(value, str):
            host[name] = value[:256]
    dp_in: dict[str, Any] = health["data_protection"] if isinstance(health.get("data_protection"), dict) else {}
    reasons: list[Any] = health["reasons"] if isinstance(health.get("reasons"), list) else []
    return {
        "version": _short(health.get("version"), 64),
        "image_digest": _short(health.get("image_digest"), 80),
        "uptime_s": _num(health.get("uptime_s")),
        "healthy": health.get("healthy") is True,
        "reasons": [r[:300] for r in reasons[:20] if isinstance(r, str)],
        "host": host,
        "data_protection": {name: dp_in.get(name) is True for name in DATA_PROTECTION_FIELDS},
        "features": _features(health.get("features")),
    }


class TokenBucket:
    """A message budget: ``rate`` per second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        t = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _decode(msg: Any) -> dict[str, Any]:
    """A text frame's JSON object with a string ``type``, or :class:`SessionError`."""
    if msg.type == WSMsgType.BINARY:
        raise SessionError("binary_frame", "binary frames are not part of the protocol")
    if msg.type != WSMsgType.TEXT:
        raise SessionError("bad_frame", f"unexpected frame {msg.type.name}")
    try:
        data = parse_json(msg.data)
    except (ValueError, RecursionError):
        raise SessionError("bad_json", "frame is not JSON (or has a non-finite number)") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise SessionError("bad_message", "message must be an object with a string type")
    return data


# --- the endpoint ----------------------------------------------------------------------------


class SessionHost(Protocol):
    """What the websocket endpoint needs from the rest of the control plane (:class:`~.core.ControlPlane`)."""

    settings: Settings
    metrics: Metrics
    store: Store
    handshakes: HandshakeSlots

    async def session_opened(self, session: LiveSession) -> None: ...

    async def session_closed(self, session: LiveSession) -> None: ...

    def heartbeat(self, session: LiveSession, health: dict[str, Any]) -> None: ...

    async def handle_result(self, session: LiveSession, result: dict[str, Any]) -> None: ...


HOST_KEY = web.AppKey("vantage_session_host", SessionHost)


def public_url(settings: Settings, request: web.Request) -> str:
    """The URL agents must have signed: ``--public-url`` or the request's scheme and Host."""
    if settings.public_url:
        return normalize_url(settings.public_url)
    return normalize_url(f"{request.scheme}://{request.host}")


class HandshakeSlots:
    """Counts connections that have not authenticated yet, in total and per client address.

    A connection holds a slot from the upgrade until its hello is verified or it is closed, so
    ``total`` and ``per_address`` bound what unauthenticated clients can hold open at once (each
    for at most the hello deadline).
    """

    def __init__(self, total: int, per_address: int) -> None:
        self.limit, self.per_address_limit = total, per_address
        self.total = 0
        self.by_address: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        held = self.by_address.get(address, 0)
        if self.total >= self.limit or held >= self.per_address_limit:
            return False
        self.total += 1
        self.by_address[address] = held + 1
        return True

    def release(self, address: str) -> None:
        self.total -= 1
        held = self.by_address.pop(address) - 1
        if held:
            self.by_address[address] = held


async def agent_connect(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/agent/connect``: one agent session."""
    host = request.app[HOST_KEY]
    settings = host.settings
    peer = request.remote or "?"
    slots = host.handshakes
    if not slots.acquire(peer):
        host.metrics.ws_rejections.labels(reason="too_many_handshakes").inc()
        log.warning("refusing a websocket from %s: too many unauthenticated connections", peer)
        return web.json_response(
            {"error": "too many unauthenticated connections; retry later"}, status=503, headers={"Retry-After": "5"}
        )
    ws = web.WebSocketResponse(
        heartbeat=settings.heartbeat_interval,
        max_msg_size=settings.max_msg_size,
        autoping=True,
    )
    session: LiveSession | None = None
    opened = False
    try:
        try:
            # one deadline for the whole handshake: pings, pongs or slow frames never extend it
            async with asyncio.timeout(settings.hello_timeout):
                await ws.prepare(request)
                session = await _handshake(host, request, ws, peer)
        except TimeoutError:
            raise SessionError("hello_timeout", f"no hello within {settings.hello_timeout:g} s") from None
        finally:
            slots.release(peer)
        await host.session_opened(session)
        opened = True
        await _serve(host, session)
    except SessionError as exc:
        name = session.name if session else "unauthenticated client"
        log.warning("closing session of %s from %s: %s %s", name, peer, exc.reason, exc.detail)
        host.metrics.ws_rejections.labels(reason=exc.reason).inc()
        if ws.prepared and not ws.closed:
            try:
                await ws.send_str(json.dumps({"type": "error", "error": exc.reason}))
            except Exception as send_exc:  # noqa: BLE001 - best effort before closing
                log.debug("could not send the error to %s: %s", peer, send_exc)
            code = CLOSE_UNSUPPORTED if exc.reason == "binary_frame" else CLOSE_POLICY
            await ws.close(code=code, message=exc.reason.encode())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("session from %s failed", peer)
        if ws.prepared and not ws.closed:
            await ws.close(code=int(WSCloseCode.INTERNAL_ERROR), message=b"internal error")
    finally:
        if session is not None and opened:
            await asyncio.shield(host.session_closed(session))
    return ws


async def _handshake(host: SessionHost, request: web.Request, ws: web.WebSocketResponse, peer: str) -> LiveSession:
    challenge = secrets.token_hex(32)
    await ws.send_str(json.dumps({"type": "challenge", "challenge": challenge, "server_time": int(now())}))
    msg = await ws.receive()
    if msg.type == WSMsgType.ERROR:
        raise SessionError("bad_frame", str(ws.exception() or "receive error"))
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        raise SessionError("closed_before_hello")
    data = _decode(msg)
    if data["type"] != "hello" or not isinstance(data.get("envelope"), dict):
        raise SessionError("expected_hello", "the first message was not a hello")
    envelope = data["envelope"]
    url = public_url(host.settings, request)
    inst = await _verify_hello(host, envelope, challenge, url)
    session = LiveSession(checkpoint=inst.checkpoint, instance=inst.name, ws=ws, control_plane=url, peer=peer)
    interval = host.settings.heartbeat_interval
    await session.send(
        {
            "type": "welcome",
            "heartbeat_interval": int(interval) if float(interval).is_integer() else interval,
            "server_time": int(now()),
        }
    )
    return session


def _instances_with_keys(db: Session, keyids: list[str]) -> list[Instance]:
    return list(db.scalars(select(Instance).where(Instance.keyid.in_(keyids)).limit(MAX_KEYID_CANDIDATES)).all())


async def _verify_hello(host: SessionHost, envelope: dict[str, Any], challenge: str, url: str) -> Instance:
    """The enrolled instance whose key signed this hello; :class:`SessionError` otherwise.

    The instance is found by the signature's key id, so the unverified payload is never parsed
    here; ``verify_hello`` then checks signature, challenge, names, URL and age.
    """
    signatures = envelope.get("signatures")
    keyids = [
        s["keyid"]
        for s in (signatures if isinstance(signatures, list) else [])[:MAX_KEYID_CANDIDATES]
        if isinstance(s, dict) and isinstance(s.get("keyid"), str) and len(s["keyid"]) <= 64
    ]
    if not keyids:
        raise SessionError("malformed_envelope", "hello has no usable signature")
    candidates = await host.store.run(_instances_with_keys, keyids)
    if not candidates:
        raise SessionError("unknown_instance", "no enrolled instance has the hello's key")
    error: VerificationError | None = None
    for inst in candidates:
        try:
            verify_hello(
                envelope,
                enrolled_public_key=inst.public_key,
                challenge=challenge,
                checkpoint=inst.checkpoint,
                instance=inst.name,
                control_plane=url,
            )
        except VerificationError as exc:
            error = exc
            continue
        except ValueError as exc:  # a key stored before such keys were refused (small order…)
            log.error("the enrolled key of %s/%s is unusable: %s", inst.checkpoint, inst.name, exc)
            error = VerificationError("unknown_key", "the enrolled key is unusable")
            continue
        return inst
    assert error is not None
    raise SessionError(error.reason, error.message)


async def _serve(host: SessionHost, session: LiveSession) -> None:
    """The message loop of an authenticated session."""
    bucket = TokenBucket(host.settings.message_rate, host.settings.message_burst)
    ws = session.ws
    while not ws.closed:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        if msg.type == WSMsgType.ERROR:
            raise SessionError("bad_frame", str(ws.exception() or "receive error"))
        if not bucket.take():
            raise SessionError("flood", "message rate exceeded")
        data = _decode(msg)
        kind = data["type"]
        if kind == "heartbeat":
            host.heartbeat(session, sanitize_health(data.get("health")))
        elif kind == "result":
            result = data.get("result")
            if not isinstance(result, dict):
                raise SessionError("malformed_result", "result must be an object")
            await host.handle_result(session, result)
        elif kind == "rejected":
            reason: str = data["reason"] if isinstance(data.get("reason"), str) else "?"
            label = reason if reason in KNOWN_REJECTION_REASONS else "other"
            host.metrics.agent_rejections.labels(reason=label).inc()
            nonce = data.get("nonce")
            # "replayed" is expected after a reconnect: pending checks are sent again, and the
            # agent refuses the ones it already has (it runs each instruction once)
            level = logging.INFO if reason == "replayed" else logging.WARNING
            log.log(
                level,
                "%s rejected an instruction (nonce %s): %s",
                session.name,
                nonce[:32] if isinstance(nonce, str) else None,
                reason[:100],
            )
        elif kind == "hello":
            raise SessionError("unexpected_hello", "hello after welcome")
        else:
            log.info("%s sent an unknown message type %r; ignored", session.name, kind[:32])


def ensure_open(session: LiveSession) -> None:
    """:class:`ConnectionError` when ``session``'s socket is gone."""
    if session.closed or session.ws.closed:
        raise ConnectionError(f"{session.name} is disconnected")


def closing_task(session: LiveSession, code: int, reason: str) -> None:
    """Close ``session`` in the background (closing waits for the peer; never block on it)."""
    session.closed = True
    task = asyncio.get_running_loop().create_task(session.close(code, reason))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()

__all__ = [
    "HOST_KEY",
    "HandshakeSlots",
    "LiveSession",
    "Registry",
    "SessionError",
    "SessionHost",
    "agent_connect",
    "closing_task",
    "ensure_open",
    "sanitize_health",
]
