"""The agent proper: the outbound websocket session with the control plane (docs/protocol.md).

One :class:`Agent` runs for the life of the process:

* it connects to ``<control plane>/api/v1/agent/connect``, answers the challenge with a hello
  signed by the instance identity key and waits for ``welcome``;
* while connected it sends heartbeats, delivers results from the outbox and handles frames;
  websocket pings with a timeout notice a control plane that vanished without closing;
* every instruction, alone or in a signed batch, is verified
  (:class:`~vantage.protocol.InstructionVerifier`) before anything is done with it; a failure is
  answered with ``rejected`` and logged, never executed;
* when the session ends it reconnects after a jittered exponential back-off.  Checks keep
  running while disconnected; their results wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vantage import __version__
from vantage.agent import wsclient
from vantage.agent.backoff import Backoff
from vantage.agent.commit import GroupCommit, open_state
from vantage.agent.config import AgentConfig
from vantage.agent.health import CONNECTED, CONNECTING, DISCONNECTED, STOPPED, Status
from vantage.agent.hostinfo import host_facts
from vantage.agent.outbox import Outbox
from vantage.agent.runner import BadInstructionBody, CheckRunner
from vantage.agent.runtime import settle_after_start
from vantage.agent.transport import proxy_for, tls_context

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from vantage.protocol import Instruction, InstructionVerifier, TrustStore

log = logging.getLogger("vantage.agent")

TRUST_FILE = "trusted_keys.json"
#: Largest message accepted from the control plane.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: What this agent understands beyond protocol v1's base, announced in every heartbeat.
FEATURES = ("instruction_batch",)

_CHALLENGE_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Timing:
    """Timing knobs of the session (defaults suit production; tests shorten them)."""

    #: connect + upgrade, and each handshake message, must complete within this many seconds
    handshake_timeout: float = 15.0
    #: used until the control plane's welcome says otherwise
    default_heartbeat_interval: float = 15.0
    #: seconds to wait for a pong, as a multiple of the heartbeat interval
    pong_timeout_factor: float = 1.0
    #: a result unacknowledged this long is sent again on the same session
    ack_timeout: float = 60.0
    #: results in flight (sent, not yet acknowledged) at most: the only limit on sending, so
    #: the pace follows the control plane's acknowledgements (there is no rate cap that could
    #: starve throughput); it keeps a reconnect's backlog from flooding the session
    send_window: int = 64
    #: a session that lasted this long resets the back-off
    stable_after: float = 10.0
    #: on shutdown, time given to running checks and to delivering their results
    stop_grace: float = 5.0
    #: clock difference with the control plane beyond which the agent reports itself unhealthy
    max_clock_skew: float = 30.0


class SessionEnded(Exception):
    """The session ended; the message says why (for the log and the status file)."""


class SessionRefused(SessionEnded):
    """The control plane refused the hello (``{"type": "error"}``)."""


class Agent:
    """A checkpoint instance's agent; create it with :meth:`from_config`, then ``await run()``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        identity_key: Ed25519PrivateKey,
        verifier: InstructionVerifier,
        runner: CheckRunner,
        outbox: Outbox,
        protection: dict[str, bool],
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.identity_key = identity_key
        self.verifier = verifier
        self.runner = runner
        self.outbox = outbox
        #: makes nonces and results durable in batches (see vantage.agent.commit)
        self.commit = GroupCommit(outbox.journal, outbox, verifier.replay)
        self.protection = protection
        #: TLS settings of the control-plane connection (``wss://``); built from the config if None
        self.ssl_context = ssl_context
        self.timing = timing or Timing()
        self.backoff = backoff or Backoff()
        self.status = Status(version=__version__)
        self.heartbeat_interval = self.timing.default_heartbeat_interval
        self.clock_offset = 0.0
        self._host: dict[str, Any] | None = None
        self._ws: wsclient.WebSocket | None = None
        self._send_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._checks: set[asyncio.Task[None]] = set()
        self._started = time.monotonic()
        self._state_dir_writable = True
        self._settled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: instructions executed, by kind, and rejections, by reason (for tests and logs)
        self.executed: dict[str, int] = {}
        self.rejected: dict[str, int] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: AgentConfig, **kwargs: Any) -> Agent:
        """Load keys, trust store, journal (replay cache and outbox) from the configuration.

        Raises :class:`~vantage.agent.config.ConfigError` naming the variable whose file is bad.
        """
        from vantage.agent.config import ConfigError
        from vantage.checks import CheckOptions, DataProtection
        from vantage.checks.credentials import CredentialError, CredentialStore
        from vantage.protocol import InstructionVerifier, load_private_key

        state_dir = config.state_dir
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = state_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                "VANTAGE_STATE_DIR", f"{state_dir} is not a writable directory: {exc}"
            ) from None
        try:
            identity_key = load_private_key(config.identity_key)
        except (OSError, ValueError) as exc:
            raise ConfigError("VANTAGE_IDENTITY_KEY", f"cannot load {config.identity_key}: {exc}") from None
        trust = load_trust(config.trusted_keys, state_dir / TRUST_FILE)
        ssl_context = None
        if config.connect_url.startswith("wss:") or config.ca_bundle is not None:
            try:  # built once: each context holds its own copy of the trusted certificates
                ssl_context = tls_context(config.ca_bundle)
            except (OSError, ValueError) as exc:
                raise ConfigError("VANTAGE_CA_BUNDLE", f"cannot load {config.ca_bundle}: {exc}") from None
        protection = DataProtection(
            strip_content=config.strip_content, strip_headers=config.strip_headers, strip_ips=config.strip_ips
        )
        import ipaddress

        credentials = CredentialStore.empty()
        if config.credentials_file is not None:
            try:
                credentials = CredentialStore.load(config.credentials_file)
            except CredentialError as exc:
                raise ConfigError("VANTAGE_CREDENTIALS_FILE", str(exc)) from None
        options = CheckOptions(
            allow_networks=tuple(ipaddress.ip_network(net) for net in config.allow_networks),
            ca_bundle=None if config.ca_bundle is None else str(config.ca_bundle),
            credentials=credentials,
        )
        runner = CheckRunner(options, protection, config.max_concurrency)
        # Last, once everything else is valid: the journal is this process's from here on.
        # Nonces and results go to it, made durable by group-committed rounds (self.commit);
        # nothing is acted upon and no result is sent before its record is durable.
        try:
            state = open_state(
                state_dir, max_results=config.outbox_max_results, max_bytes=config.outbox_max_bytes
            )
        except OSError as exc:
            raise ConfigError("VANTAGE_STATE_DIR", f"cannot use the journal in {state_dir}: {exc}") from None
        verifier = InstructionVerifier(trust, config.audience, state.replay)
        return cls(
            config,
            identity_key=identity_key,
            verifier=verifier,
            runner=runner,
            outbox=state.outbox,
            ssl_context=ssl_context,
            protection=dict(protection.as_dict()),
            **kwargs,
        )

    # ------------------------------------------------------------------ life cycle

    def stop(self) -> None:
        """Ask :meth:`run` to finish (signal handlers call this)."""
        self._stop.set()

    async def run(self) -> None:
        """Connect, serve, reconnect, until :meth:`stop`."""
        log.info(
            "agent %s starting (vantage %s), control plane %s, data protection %s",
            self.config.audience,
            __version__,
            self.config.control_plane_url,
            self.protection,
        )
        self._write_status(CONNECTING)
        ssl_context = None
        if self.config.connect_url.startswith("wss:"):
            ssl_context = self.ssl_context or tls_context(self.config.ca_bundle)
        proxy = proxy_for(self.config.control_plane_url)
        if proxy:
            log.info("connecting through proxy %s", _redact(proxy))
        try:
            while not self._stop.is_set():
                welcomed_at: float | None = None
                error = "session ended"
                try:
                    welcomed_at = await self._session_unless_stopped(ssl_context, proxy)
                except SessionRefused as exc:
                    error = str(exc)
                    log.error("control plane refused this instance: %s", exc)
                except SessionEnded as exc:
                    error = str(exc)
                    welcomed_at = getattr(exc, "welcomed_at", None)
                    log.warning("session ended: %s", exc)
                except (OSError, TimeoutError, ValueError) as exc:  # wsclient errors are OSErrors
                    error = _describe(exc)
                    log.warning("cannot reach the control plane: %s", error)
                finally:
                    self._ws = None
                if self._stop.is_set():
                    break
                if welcomed_at is not None and time.monotonic() - welcomed_at >= self.timing.stable_after:
                    self.backoff.reset()
                delay = self.backoff.next_delay()
                self.status.last_error = error
                self._write_status(DISCONNECTED)
                log.info("reconnecting in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
        finally:
            await self._finish_checks()
            await self.commit.close()
            self._write_status(STOPPED)
            log.info("agent stopped; %d result(s) left in the outbox", len(self.outbox))

    async def _session_unless_stopped(self, ssl_context: Any, proxy: str | None) -> float | None:
        """Run one session; a stop request abandons it while it is still connecting.

        Once welcomed, the session handles a stop itself (it lets running checks deliver their
        results first), so it is awaited to its end.
        """
        session = asyncio.create_task(self._session(ssl_context, proxy), name="session")
        stop = asyncio.create_task(self._stop.wait(), name="stop-wait")
        abandoned = False
        try:
            await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not session.done() and self._ws is None:
                abandoned = True
                session.cancel()
            return await session
        except asyncio.CancelledError:
            if abandoned and self._stop.is_set():
                return None
            raise
        finally:
            stop.cancel()
            if not session.done():
                session.cancel()

    async def _finish_checks(self) -> None:
        """Give running checks a moment to land in the outbox, then cancel the rest."""
        if not self._checks:
            return
        _, pending = await asyncio.wait(set(self._checks), timeout=self.timing.stop_grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d check(s) still running at shutdown", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ one session

    async def _session(self, ssl_context: Any, proxy: str | None) -> float | None:
        """One connection: handshake, then serve until it ends; return when it was welcomed."""
        self._write_status(CONNECTING)
        async with asyncio.timeout(self.timing.handshake_timeout):
            ws = await wsclient.connect(
                self.config.connect_url,
                ssl_context=ssl_context,
                proxy=proxy,
                max_message=MAX_MESSAGE_BYTES,
                user_agent=f"vantage-agent/{__version__}",
            )
        try:
            await self._handshake(ws)
            welcomed_at = time.monotonic()
            self._ws = ws
            self.status.connected_since = time.time()
            self.status.heartbeat_interval = self.heartbeat_interval
            self.status.last_error = None
            self._write_status(CONNECTED)
            log.info("connected to %s as %s", self.config.control_plane_url, self.config.audience)
            if not self._settled:
                self._settled = True
                settle_after_start()
            try:
                await self._serve(ws)
            except SessionEnded as exc:
                # Keep the fact that it had been welcomed for the back-off decision.
                raise _WelcomedSessionEnded(str(exc), welcomed_at) from None
            return welcomed_at
        finally:
            self._ws = None
            code = wsclient.CLOSE_GOING_AWAY if self._stop.is_set() else wsclient.CLOSE_NORMAL
            await ws.close(code, timeout=2.0)

    async def _receive_json(self, ws: wsclient.WebSocket, timeout: float) -> dict[str, Any]:
        """The next JSON message of the handshake, within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                return _decode(await _receive(ws))
        except TimeoutError:
            raise SessionEnded("control plane did not answer the handshake in time") from None

    async def _handshake(self, ws: wsclient.WebSocket) -> None:
        from vantage.protocol import make_hello

        timeout = self.timing.handshake_timeout
        challenge_msg = await self._receive_json(ws, timeout)
        if challenge_msg["type"] == "error":
            raise SessionRefused(str(challenge_msg.get("error")))
        challenge = challenge_msg.get("challenge")
        if (
            challenge_msg["type"] != "challenge"
            or not isinstance(challenge, str)
            or not _CHALLENGE_RE.match(challenge)
        ):
            raise SessionEnded("protocol error: expected a challenge of 64 hex digits")
        envelope = make_hello(
            self.identity_key,
            challenge=challenge,
            checkpoint=self.config.checkpoint,
            instance=self.config.instance,
            control_plane=self.config.control_plane_url,
        )
        await ws.send(json.dumps({"type": "hello", "envelope": envelope}))
        answer = await self._receive_json(ws, timeout)
        if answer["type"] == "error":
            raise SessionRefused(str(answer.get("error")))
        if answer["type"] != "welcome":
            raise SessionEnded(f"protocol error: expected welcome, got {answer['type'][:40]!r}")
        interval = answer.get("heartbeat_interval")
        if isinstance(interval, int | float) and not isinstance(interval, bool) and 0.1 <= interval <= 3600:
            self.heartbeat_interval = float(interval)
        else:
            log.warning("welcome without a usable heartbeat_interval; using %ss", self.heartbeat_interval)
        server_time = answer.get("server_time")
        if isinstance(server_time, int | float) and not isinstance(server_time, bool):
            self.clock_offset = float(server_time) - time.time()
            if abs(self.clock_offset) > self.timing.max_clock_skew:
                log.error(
                    "this host's clock is %.0fs off the control plane's; instructions will be "
                    "refused as expired or not yet valid until the clock is fixed (NTP)",
                    -self.clock_offset,
                )

    async def _serve(self, ws: wsclient.WebSocket) -> None:
        """Run the session's tasks until one ends; raise :class:`SessionEnded` with the reason."""
        tasks = [
            asyncio.create_task(self._receiver(ws), name="receiver"),
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._sender(), name="sender"),
            asyncio.create_task(self._watchdog(ws), name="watchdog"),
            asyncio.create_task(self._stop_requested(), name="stop"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                if isinstance(exc, SessionEnded):
                    raise exc
                raise SessionEnded(_describe(exc)) from exc
        if not self._stop.is_set():
            raise SessionEnded("session ended")

    async def _stop_requested(self) -> None:
        await self._stop.wait()
        # Let running checks finish and their results be acknowledged before leaving.
        deadline = time.monotonic() + self.timing.stop_grace
        if self._checks:
            await asyncio.wait(set(self._checks), timeout=self.timing.stop_grace)
        # the outbox has no event to wait on; the poll is bounded by the grace period
        while len(self.outbox) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ session tasks

    async def _receiver(self, ws: wsclient.WebSocket) -> None:
        while True:
            frame = _decode(await _receive(ws))
            kind = frame["type"]
            if kind == "ack":
                result_id = frame.get("id")
                if isinstance(result_id, str) and self.outbox.ack(result_id):
                    self.commit.request()  # its record goes with the next round
            elif kind == "instruction":
                await self._on_instructions(frame.get("envelope"), batch=False)
            elif kind == "instruction_batch":
                await self._on_instructions(frame.get("envelope"), batch=True)
            elif kind == "error":
                raise SessionRefused(str(frame.get("error"))[:200])
            else:
                log.warning("ignoring a %r frame from the control plane", kind[:40])

    async def _heartbeats(self) -> None:
        while True:
            await self._send_heartbeat()
            await asyncio.sleep(self.heartbeat_interval)

    async def _watchdog(self, ws: wsclient.WebSocket) -> None:
        """Ping when the line has been quiet; end the session when no pong comes back in time."""
        interval = self.heartbeat_interval
        timeout = interval * self.timing.pong_timeout_factor
        while True:
            await asyncio.sleep(max(0.05, ws.last_rx + interval - time.monotonic()))
            if time.monotonic() - ws.last_rx < interval:
                continue
            pinged_at = time.monotonic()
            await ws.ping()
            await asyncio.sleep(timeout)
            if ws.last_rx < pinged_at:
                raise SessionEnded(f"control plane unresponsive: no pong within {timeout:.1f}s")

    async def _sender(self) -> None:
        """Deliver durable outbox results, oldest first, each once per session.

        At most ``send_window`` results are unacknowledged at a time; an ack frees a slot at
        once, so the pace is the control plane's.  A result unacknowledged for ``ack_timeout``
        is sent again (and no longer counts against the window).
        """
        sent: dict[str, float] = {}
        window, ack_timeout = self.timing.send_window, self.timing.ack_timeout
        while True:
            self.outbox.changed.clear()
            now = time.monotonic()
            for result_id in [r for r in sent if r not in self.outbox]:
                del sent[result_id]
            in_flight = sum(1 for at in sent.values() if now - at < ack_timeout)
            batch: list[tuple[str, float | None]] = []
            for result_id in self.outbox.ready():  # no await inside: the index may change then
                if in_flight + len(batch) >= window:
                    break
                at = sent.get(result_id)
                if at is None or now - at >= ack_timeout:
                    batch.append((result_id, at))
            frames = []
            for result_id, at in batch:
                data = self.outbox.get(result_id)
                if data is None:
                    continue
                if at is not None:
                    log.info("result %s not acknowledged; sending it again", result_id)
                frames.append(_result_frame(data))
                sent[result_id] = now
            if frames:
                await self._send_raw(*frames)  # one write for every result ready now
                continue  # acks may have freed slots meanwhile
            # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation that
            # arrives as the event is set, and the session could then not end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ack_timeout / 4):
                    await self.outbox.changed.wait()

    # ------------------------------------------------------------------ instructions

    async def _on_instructions(self, envelope: Any, *, batch: bool) -> None:
        """Verify an instruction (or a batch: all of it or none) and act on it, in order."""
        from vantage.protocol import VerificationError

        envelope = envelope if isinstance(envelope, Mapping) else {}
        try:
            if batch:
                instructions = self.verifier.verify_batch(envelope)
            else:
                instructions = [self.verifier.verify(envelope)]
        except VerificationError as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            log.warning("rejected %s: %s", "an instruction batch" if batch else "an instruction", exc)
            # Nonces only from a payload whose signature verified (none before that step).
            nonces: tuple[str | None, ...] = exc.nonces or (None,)
            await self._send(*({"type": "rejected", "nonce": n, "reason": exc.reason} for n in nonces))
            return
        for instruction in instructions:
            await self._act(instruction)

    async def _act(self, instruction: Instruction) -> None:
        from vantage.protocol import VerificationError, apply_rotation

        if instruction.kind == "rotate_key":  # rare: wait here, so that later frames wait too
            try:
                await self.commit.durable()  # act only once the nonce is durable
            except OSError as exc:
                log.error("cannot make the replay cache durable: %s; rotation not applied", exc)
                self._state_dir_writable = False
                await self._send(
                    {"type": "rejected", "nonce": instruction.nonce, "reason": "replay_cache_error"}
                )
                return
        self.executed[instruction.kind] = self.executed.get(instruction.kind, 0) + 1
        log.debug("instruction %s seq %d (%s) verified", instruction.kind, instruction.seq, instruction.nonce)
        if instruction.kind == "run_check":
            if self._stop.is_set():
                # Shutting down: the control plane will count it as missing and retry elsewhere.
                await self._send({"type": "rejected", "nonce": instruction.nonce, "reason": "shutting_down"})
                return
            self._spawn(self._run_check(instruction))
        elif instruction.kind == "ping":
            await self._send_heartbeat()
        elif instruction.kind == "rotate_key":
            try:
                rotated = apply_rotation(self.verifier.trust, instruction)
            except VerificationError as exc:
                log.warning("rejected a key rotation: %s", exc)
                await self._send({"type": "rejected", "nonce": instruction.nonce, "reason": exc.reason})
                return
            self.verifier.trust = rotated
            try:
                rotated.save(self.config.state_dir / TRUST_FILE)
            except OSError as exc:
                log.error("cannot persist the rotated trust store: %s", exc)
            log.info("signing key rotation applied: now trusting %s", ", ".join(rotated.active_keyids()))
        else:
            log.info("instruction %s acknowledged and ignored (reserved in protocol v1)", instruction.kind)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._running_loop().create_task(coro)
        self._checks.add(task)
        task.add_done_callback(self._check_done)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:  # asked once: each ask is a getpid() on Python 3.11
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _check_done(self, task: asyncio.Task[None]) -> None:
        self._checks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a check task failed", exc_info=task.exception())

    async def _run_check(self, instruction: Instruction) -> None:
        try:
            # Act only once the nonce is durable: a crash-restart (even a power loss) must not
            # reopen the replay window. The flush is group-committed with other nonces and results.
            await self.commit.durable()
        except OSError as exc:
            self._state_dir_writable = False
            log.error("cannot make the replay cache durable: %s; check %s not run", exc, instruction.nonce)
            await self._send_if_connected(
                {"type": "rejected", "nonce": instruction.nonce, "reason": "replay_cache_error"}
            )
            return
        try:
            result, data = await self.runner.run(instruction.body)
        except BadInstructionBody as exc:
            log.warning("run_check %s has a malformed body: %s", instruction.nonce, exc)
            await self._send_if_connected(
                {"type": "rejected", "nonce": instruction.nonce, "reason": "invalid_check"}
            )
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "check %s (monitor %s, attempt %s): %s in %.0f ms%s",
                result["id"],
                result.get("monitor_id"),
                result.get("attempt"),
                "ok" if result.get("ok") else "FAILED",
                float(result.get("duration_ms") or 0),
                f" ({result.get('error')})" if result.get("error") else "",
            )
        # Into the outbox, durable before it is sent (the sender only sends durable results); it
        # leaves the outbox only on the control plane's ack.
        self.outbox.add(result["id"], data)
        try:
            await self.commit.durable()
        except OSError as exc:
            self._state_dir_writable = False
            log.error("cannot store result %s in the outbox: %s; sending it unbuffered", result["id"], exc)
            with contextlib.suppress(SessionEnded, ConnectionError):
                await self._send_raw(_result_frame(data))

    # ------------------------------------------------------------------ sending

    async def _send(self, *messages: dict[str, Any]) -> None:
        await self._send_raw(*(json.dumps(m, separators=(",", ":")).encode("utf-8") for m in messages))

    async def _send_raw(self, *frames: bytes) -> None:
        """Send JSON messages already serialised (UTF-8), in one write."""
        ws = self._ws
        if ws is None or ws.closed:
            raise SessionEnded("connection lost")
        async with self._send_lock:
            await ws.send(*frames)

    async def _send_if_connected(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(SessionEnded, ConnectionError):
            await self._send(message)

    async def _send_heartbeat(self) -> None:
        await self._send({"type": "heartbeat", "health": self.health()})
        self.status.last_heartbeat_at = time.time()
        self._write_status(CONNECTED)

    # ------------------------------------------------------------------ health

    def self_check(self) -> tuple[list[str], list[str]]:
        """``(failures, warnings)`` of the self-checks.

        Failures make the instance unhealthy, so the control plane stops sending it checks:
        a clock too far off (its instructions would be refused as expired), a state directory
        it cannot write (no outbox, no replay cache), no signing key trusted any more.
        Warnings are reported but keep it in service: load (checks queueing for a slot) and an
        outbox nearly full (results not being acknowledged).
        """
        failures, warnings = [], []
        if abs(self.clock_offset) > self.timing.max_clock_skew:
            failures.append(f"clock_skew: {-self.clock_offset:+.0f}s from the control plane")
        if not self._state_dir_writable:
            failures.append("state_dir_not_writable")
        now = time.time()
        if not any(key.is_trusted(now) for key in self.verifier.trust.keys):
            failures.append("no_trusted_signing_key")
        if (
            len(self.outbox) >= 0.9 * self.outbox.max_results
            or self.outbox.size_bytes >= 0.9 * self.outbox.max_bytes
        ):
            warnings.append("outbox_nearly_full")
        if self.runner.saturated:
            warnings.append("check_concurrency_saturated")
        return failures, warnings

    def health(self) -> dict[str, Any]:
        """The heartbeat's ``health`` object."""
        if self._host is None:
            self._host = host_facts(self.config.host_name)
        failures, warnings = self.self_check()
        return {
            "version": __version__,
            "image_digest": self.config.image_digest,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "healthy": not failures,
            "reasons": failures + warnings,
            "host": self._host,
            "data_protection": dict(self.protection),
            "features": list(FEATURES),
        }

    def _write_status(self, state: str) -> None:
        self.status.state = state
        if state != CONNECTED:
            self.status.connected_since = None
        self.status.outbox_pending = len(self.outbox)
        self.status.outbox_dropped = self.outbox.dropped_total
        failures, warnings = self.self_check()
        self.status.reasons = failures + warnings
        self.status.healthy = not failures
        try:
            self.status.write(self.config.state_dir)
            self._state_dir_writable = True
        except OSError as exc:
            if self._state_dir_writable:
                log.error("cannot write the status file: %s", exc)
            self._state_dir_writable = False


class _WelcomedSessionEnded(SessionEnded):
    def __init__(self, message: str, welcomed_at: float) -> None:
        super().__init__(message)
        self.welcomed_at = welcomed_at


def load_trust(mounted: Path, persisted: Path) -> TrustStore:
    """The mounted trusted-keys file merged with the store rotations persisted in the state dir."""
    from vantage.agent.config import ConfigError
    from vantage.protocol import TrustStore

    try:
        trust = TrustStore.load(mounted)
    except ValueError as exc:
        raise ConfigError("VANTAGE_TRUSTED_KEYS", str(exc)) from None
    if persisted.exists():
        try:
            trust = trust.merge(TrustStore.load(persisted))
        except ValueError as exc:
            log.error("ignoring the persisted trust store: %s", exc)
    if not len(trust):
        raise ConfigError("VANTAGE_TRUSTED_KEYS", f"{mounted} holds no keys")
    return trust


def _result_frame(data: bytes) -> bytes:
    """The ``result`` message around a result's JSON, without parsing or serialising it again."""
    return b'{"type":"result","result":' + data + b"}"


async def _receive(ws: wsclient.WebSocket) -> str:
    """The next text message; the end of the connection or a protocol error ends the session."""
    try:
        return await ws.receive()
    except wsclient.ConnectionClosed as exc:
        raise SessionEnded(f"connection closed by the control plane ({exc.code})") from None
    except wsclient.WebSocketError as exc:
        raise SessionEnded(str(exc)) from None


def _decode(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise SessionEnded("protocol error: a frame is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise SessionEnded("protocol error: a frame is not an object with a type")
    return data


def _describe(exc: BaseException | Any) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)
