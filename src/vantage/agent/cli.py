"""``vantage agent run | healthcheck | check-config``.

Exit codes: ``0`` success (``run``: stopped by SIGTERM/SIGINT; ``healthcheck``: healthy),
``1`` unhealthy or a runtime failure, ``2`` invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from vantage.agent.config import AgentConfig, ConfigError, config_file_from, load_config, state_dir_only

log = logging.getLogger("vantage.agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vantage agent", description="The Vantage checkpoint agent.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent (configured by VANTAGE_* variables)")
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    health = sub.add_parser("healthcheck", help="exit 0 if the running agent is connected, else 1")
    for command in (run, check, health):
        command.add_argument(
            "--config", metavar="PATH", help="JSON configuration file (VANTAGE_* variables override it)"
        )
    health.add_argument(
        "--max-age",
        type=float,
        metavar="S",
        help="seconds since the last heartbeat still considered healthy "
        "(default: 3 heartbeat intervals + 10)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vantage agent``; returns the exit code."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "healthcheck":
        return _healthcheck(args.config, args.max_age)
    try:
        config, warnings = load_config(os.environ, config_file_from(os.environ, args.config))
    except ConfigError as exc:
        sys.stderr.write(f"vantage agent: configuration error: {exc}\n")
        return 2
    _setup_logging(config.log_level)
    for warning in warnings:
        log.warning("configuration: %s", warning)
    if args.command == "check-config":
        from vantage.agent.session import Agent

        try:
            Agent.from_config(config)
        except ConfigError as exc:
            sys.stderr.write(f"vantage agent: configuration error: {exc}\n")
            return 2
        print(f"configuration valid for {config.audience} -> {config.control_plane_url}")
        return 0
    return _run(config)


def _healthcheck(config_path: str | None, max_age: float | None) -> int:
    from vantage.agent.health import healthcheck

    try:
        state_dir = state_dir_only(os.environ, config_file_from(os.environ, config_path))
    except ConfigError as exc:
        print(f"unhealthy: configuration error: {exc}")
        return 1
    healthy, reason = healthcheck(state_dir, max_age=max_age)
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Library chatter stays at WARNING unless the operator asked for DEBUG.
    if level != "DEBUG":
        for name in ("aiohttp", "asyncio"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _run(config: AgentConfig) -> int:
    from vantage.agent.session import Agent

    try:
        agent = Agent.from_config(config)
    except ConfigError as exc:
        sys.stderr.write(f"vantage agent: configuration error: {exc}\n")
        return 2

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, agent.stop)
            except NotImplementedError:  # Windows event loops take no signal handlers
                signal.signal(signum, lambda *_: loop.call_soon_threadsafe(agent.stop))
        await agent.run()

    try:
        asyncio.run(serve())
    except Exception:  # pragma: no cover - last resort, logged for the operator
        log.exception("agent failed")
        return 1
    return 0
