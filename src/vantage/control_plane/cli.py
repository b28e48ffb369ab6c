"""``vantage control-plane serve``: parse options (flags, then ``VANTAGE_*`` variables), run.

Once listening it prints exactly one line to stderr,
``vantage control-plane listening on <scheme>://<host>:<port>`` (the real port, also with
``--listen 127.0.0.1:0``). SIGTERM and SIGINT stop it gracefully: sessions are closed with
"going away" so that agents reconnect to the next process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from vantage.agent.runtime import event_loop_factory
from vantage.control_plane.app import create_app, make_runner
from vantage.control_plane.auth import read_token_file
from vantage.control_plane.config import Settings
from vantage.control_plane.logs import install_redaction
from vantage.protocol import normalize_url

log = logging.getLogger("vantage.control_plane")

PROG = "vantage control-plane serve"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_LISTEN = "0.0.0.0:8443"


class UsageError(Exception):
    """A bad option value; reported as ``vantage control-plane serve: error: …`` (exit 2)."""


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    settings: Settings
    log_level: str


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run the Vantage reference control plane.")
    e = _env
    p.add_argument("--listen", default=e("VANTAGE_LISTEN") or DEFAULT_LISTEN,
                   help=f"HOST:PORT to listen on (VANTAGE_LISTEN; default {DEFAULT_LISTEN}; port 0 = any)")
    p.add_argument("--db", default=e("VANTAGE_DB_URL"),
                   help="SQLAlchemy database URL, e.g. sqlite:////var/lib/vantage/cp.db (VANTAGE_DB_URL)")
    p.add_argument("--signing-key", default=e("VANTAGE_SIGNING_KEY"),
                   help="Ed25519 PKCS#8 PEM signing key, created (0600) when missing (VANTAGE_SIGNING_KEY)")
    p.add_argument("--admin-token-file", default=e("VANTAGE_ADMIN_TOKEN_FILE"),
                   help="file holding the bootstrap admin token (VANTAGE_ADMIN_TOKEN_FILE)")
    p.add_argument("--tls-cert", default=e("VANTAGE_TLS_CERT"), help="PEM certificate chain (VANTAGE_TLS_CERT)")
    p.add_argument("--tls-key", default=e("VANTAGE_TLS_KEY"), help="PEM private key of --tls-cert (VANTAGE_TLS_KEY)")
    p.add_argument("--public-url", default=e("VANTAGE_PUBLIC_URL"),
                   help="URL agents are configured with (VANTAGE_PUBLIC_URL; default: from the request)")
    p.add_argument("--heartbeat-interval", default=e("VANTAGE_HEARTBEAT_INTERVAL") or "15",
                   help="seconds between agent heartbeats (VANTAGE_HEARTBEAT_INTERVAL; default 15)")
    p.add_argument("--unavailable-grace", default=e("VANTAGE_UNAVAILABLE_GRACE") or "120",
                   help="seconds without a connected instance before checkpoint_unavailable "
                        "(VANTAGE_UNAVAILABLE_GRACE; default 120)")
    p.add_argument("--webhook-url", default=e("VANTAGE_WEBHOOK_URL"),
                   help="URL to POST alert events to (VANTAGE_WEBHOOK_URL)")
    p.add_argument("--scheduler-tick", default=e("VANTAGE_SCHEDULER_TICK") or "1",
                   help="seconds between scheduler passes (VANTAGE_SCHEDULER_TICK; default 1)")
    p.add_argument("--result-margin", default=e("VANTAGE_RESULT_MARGIN") or "10",
                   help="seconds added to a check's timeout before a missing result is an error "
                        "(VANTAGE_RESULT_MARGIN; default 10)")
    p.add_argument("--rotation-grace", default=e("VANTAGE_ROTATION_GRACE") or "86400",
                   help="seconds a rotated-out signing key stays trusted (VANTAGE_ROTATION_GRACE; default 86400)")
    p.add_argument("--session-message-rate", default=e("VANTAGE_SESSION_MESSAGE_RATE") or "1000",
                   help="messages per second one agent session may send, sustained; the burst is twice "
                        "as many, beyond it the session is closed as a flood "
                        "(VANTAGE_SESSION_MESSAGE_RATE; default 1000)")
    p.add_argument("--replica-timeout", default=e("VANTAGE_REPLICA_TIMEOUT") or "10",
                   help="seconds after which a replica that stopped refreshing its row counts as dead and "
                        "another takes its instances over (VANTAGE_REPLICA_TIMEOUT; default 10)")
    p.add_argument("--hello-timeout", default=e("VANTAGE_HELLO_TIMEOUT") or "10",
                   help="seconds a new websocket has to complete its hello, pings or not "
                        "(VANTAGE_HELLO_TIMEOUT; default 10)")
    p.add_argument("--max-unauthenticated", default=e("VANTAGE_MAX_UNAUTHENTICATED") or "1024",
                   help="websockets that have not completed their hello, at most; more are answered 503 "
                        "(VANTAGE_MAX_UNAUTHENTICATED; default 1024)")
    p.add_argument("--max-unauthenticated-per-address",
                   default=e("VANTAGE_MAX_UNAUTHENTICATED_PER_ADDRESS") or "64",
                   help="the same, from one client address; behind a proxy every agent has the proxy's "
                        "address (VANTAGE_MAX_UNAUTHENTICATED_PER_ADDRESS; default 64)")
    p.add_argument("--log-level", default=e("VANTAGE_LOG_LEVEL") or "INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                   help="log level (VANTAGE_LOG_LEVEL; default INFO)")
    return p


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--listen must be HOST:PORT, not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--listen: write IPv6 addresses in brackets, e.g. [::1]:8443, not {value!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen: port must be 0-65535, not {port_text!r}")
    return host, int(port_text)


def _number(value: str, option: str, minimum: float, unit: str = "seconds") -> float:
    """A finite number of ``unit`` of at least ``minimum``; a UsageError naming ``option`` otherwise."""
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{option} must be a number of {unit}, not {value!r}") from None
    if not math.isfinite(number) or number < minimum:
        raise UsageError(f"{option} must be at least {minimum:g} {unit}")
    return number


def _count(value: str, option: str) -> int:
    """A whole number of at least 1; a UsageError naming ``option`` otherwise."""
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{option} must be a whole number of at least 1, not {value!r}")
    return int(value)


def _ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not cert or not key:
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return context


def parse_options(argv: Sequence[str]) -> ServeOptions:
    """Options → :class:`ServeOptions`; :class:`UsageError` with a clear message if unusable."""
    args = build_parser().parse_args(list(argv))
    host, port = parse_listen(args.listen)
    for option, value in (("--db", args.db), ("--signing-key", args.signing_key),
                          ("--admin-token-file", args.admin_token_file)):
        if not value:
            raise UsageError(f"{option} is required (or set its VANTAGE_* variable)")
    try:
        admin_token = read_token_file(args.admin_token_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    public_url = None
    if args.public_url:
        try:
            public_url = normalize_url(args.public_url)
        except ValueError as exc:
            raise UsageError(f"--public-url: {exc}") from None
    if args.webhook_url and not args.webhook_url.startswith(("http://", "https://")):
        raise UsageError("--webhook-url must be an http:// or https:// URL")
    message_rate = _number(args.session_message_rate, "--session-message-rate", 1, "messages per second")
    settings = Settings(
        db_url=args.db,
        signing_key_path=Path(args.signing_key),
        admin_token=admin_token,
        public_url=public_url,
        heartbeat_interval=_number(args.heartbeat_interval, "--heartbeat-interval", 0.1),
        unavailable_grace=_number(args.unavailable_grace, "--unavailable-grace", 0),
        webhook_url=args.webhook_url,
        scheduler_tick=_number(args.scheduler_tick, "--scheduler-tick", 0.01),
        result_margin=_number(args.result_margin, "--result-margin", 0),
        rotation_grace=_number(args.rotation_grace, "--rotation-grace", 0),
        message_rate=message_rate,
        message_burst=2 * message_rate,
        hello_timeout=_number(args.hello_timeout, "--hello-timeout", 0.5),
        replica_timeout=_number(args.replica_timeout, "--replica-timeout", 1),
        max_unauthenticated=_count(args.max_unauthenticated, "--max-unauthenticated"),
        max_unauthenticated_per_address=_count(
            args.max_unauthenticated_per_address, "--max-unauthenticated-per-address"
        ),
    )
    return ServeOptions(host, port, _ssl_context(args.tls_cert, args.tls_key), settings, args.log_level)


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT; 0 after a graceful stop."""
    app = create_app(options.settings)
    runner = make_runner(app)
    try:
        await runner.setup()  # runs the start-up: schema, signing key, bootstrap token
    except Exception as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        await runner.cleanup()
        return 1
    site = web.TCPSite(runner, options.host, options.port, ssl_context=options.ssl_context)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", options.host, options.port, exc.strerror or exc)
        await runner.cleanup()
        return 1
    port = options.port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port = int(address[1])
            break
    scheme = "https" if options.ssl_context else "http"
    if options.ssl_context is None and options.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("serving plain HTTP on %s: put a TLS-terminating proxy in front or use --tls-cert", options.host)
    sys.stderr.write(f"vantage control-plane listening on {scheme}://{_display_host(options.host)}:{port}\n")
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``vantage control-plane …`` (the only sub-command is ``serve``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(f"usage: vantage control-plane serve [options]\n\n{build_parser().format_help()}")
        return 0 if args else 2
    if args[0] != "serve":
        sys.stderr.write(f"vantage control-plane: unknown command {args[0]!r}; use 'serve'\n")
        return 2
    try:
        options = parse_options(args[1:])
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    logging.basicConfig(level=options.log_level, stream=sys.stderr, format=LOG_FORMAT)
    install_redaction([options.settings.admin_token or ""], LOG_FORMAT)
    factory, _loop_name = event_loop_factory()  # uvloop where installed: less CPU per message
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(serve(options))
    except KeyboardInterrupt:  # pragma: no cover - the signal handler normally wins
        return 130
