"""``vantage agent run | healthcheck | check-config``.

Exit codes: ``0`` success (``run``: stopped by SIGTERM/SIGINT; ``healthcheck``: healthy),
``1`` unhealthy or a runtime failure, ``2`` invalid configuration or usage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from vantage.agent.config import AgentConfig, ConfigError, config_file_from, load_config, state_dir_only

log = logging.getLogger("vantage.agent")

# Written out rather than built with argparse, like the top-level ``vantage`` command: argparse
# (with gettext and locale) would stay in the running agent's memory for three sub-commands.
USAGE = """usage: vantage agent run|check-config|healthcheck [--config PATH] [--max-age S]

The Vantage checkpoint agent.

commands:
  run           run the agent (configured by VANTAGE_* variables)
  check-config  validate the configuration and exit
  healthcheck   exit 0 if the running agent is connected, else 1

options:
  --config PATH  JSON configuration file (VANTAGE_* variables override it)
  --max-age S    healthcheck only: seconds since the last heartbeat still considered healthy
                 (default: 3 heartbeat intervals + 10)
"""
COMMANDS = ("run", "check-config", "healthcheck")


class UsageError(Exception):
    """The command line is not one of :data:`USAGE`."""


def parse_args(argv: Sequence[str]) -> tuple[str, str | None, float | None]:
    """``(command, --config, --max-age)``; :class:`UsageError` naming what is wrong."""
    if not argv or argv[0] not in COMMANDS:
        raise UsageError(f"expected one of {', '.join(COMMANDS)}" + (f", got {argv[0]!r}" if argv else ""))
    command, config, max_age = argv[0], None, None
    rest = list(argv[1:])
    while rest:
        option = rest.pop(0)
        name, inline, value = option.partition("=")
        if name not in ("--config", "--max-age") or (name == "--max-age" and command != "healthcheck"):
            raise UsageError(f"unknown option {name!r} for {command}")
        if not inline:
            if not rest:
                raise UsageError(f"{name} needs a value")
            value = rest.pop(0)
        if name == "--config":
            config = value
        else:
            try:
                max_age = float(value)
            except ValueError:
                raise UsageError(f"--max-age must be a number of seconds, got {value!r}") from None
    return command, config, max_age


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vantage agent``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    try:
        command, config_path, max_age = parse_args(args)
    except UsageError as exc:
        sys.stderr.write(f"vantage agent: {exc}\n{USAGE}")
        return 2
    if command == "healthcheck":
        return _healthcheck(config_path, max_age)
    try:
        config, warnings = load_config(os.environ, config_file_from(os.environ, config_path))
    except ConfigError as exc:
        sys.stderr.write(f"vantage agent: configuration error: {exc}\n")
        return 2
    _setup_logging(config.log_level)
    for warning in warnings:
        log.warning("configuration: %s", warning)
    if command == "check-config":
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
    from vantage.agent.runtime import event_loop_factory
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

    factory, name = event_loop_factory()
    log.info("event loop: %s", name)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve())
    except Exception:  # pragma: no cover - last resort, logged for the operator
        log.exception("agent failed")
        return 1
    return 0
