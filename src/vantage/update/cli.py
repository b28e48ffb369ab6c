"""``vantage update``: one update run of a checkpoint host (docs/auto-update.md)."""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vantage._collection._container_engine import DockerEngine, EngineError
from vantage.update.config import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, UpdateConfig, UpdateError
from vantage.update.control_plane import ControlPlaneClient
from vantage.update.lock import acquire_lock
from vantage.update.updater import Updater, log, read_json, write_json

#: seconds one engine API call may take (a pull streams; this bounds silence, not the pull)
ENGINE_TIMEOUT = 120
#: results after which a release that failed its gate stays remembered
KEEP_FAILED_RELEASE = ("refused", "deferred", "unreachable", "image_unavailable", "error")
__all__ = ["acquire_lock", "main", "parser", "read_token", "write_status"]


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="vantage update",
        description="Move a checkpoint's local instances to its channel's signed release.",
    )
    result.add_argument("--config", required=True, help="the update.conf written by the auto_update role")
    result.add_argument("--manifest-file", help="verify this release envelope (JSON) instead of fetching it")
    result.add_argument(
        "--retry-failed", action="store_true", help="try again a release that failed its gate before"
    )
    result.add_argument("--check", action="store_true", help="verify the manifest and report; change nothing")
    return result


def read_token(config: UpdateConfig) -> str:
    try:
        return Path(config.api_token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UpdateError(
            EXIT_CONFIG, "error", f"cannot read the API token file {config.api_token_file}: {exc.strerror}"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.time()
    status: dict[str, Any] = {}
    try:
        config = UpdateConfig.load(args.config)
    except UpdateError as exc:
        log(f"{exc.result}: {exc.reason}")
        return exc.code
    lock = acquire_lock(config.lock_file)
    if lock is None:
        log(f"another update run holds {config.lock_file}; nothing done")
        return EXIT_LOCKED
    with lock:
        try:
            control_plane = ControlPlaneClient(
                config.control_plane_url,
                read_token(config),
                ca_file=config.ca_file,
                validate_certs=config.validate_certs,
                timeout=config.request_timeout,
            )
            if args.check:
                log(
                    json.dumps(Updater(config, control_plane, None).check(args.manifest_file), sort_keys=True)
                )
                return EXIT_OK
            try:
                engine = DockerEngine(config.docker_host, ENGINE_TIMEOUT)
            except EngineError as exc:
                raise UpdateError(EXIT_CONFIG, "error", str(exc)) from None
            updater = Updater(config, control_plane, engine)
            status = updater.status
            try:
                code, result, reason = updater.run(args.manifest_file, force=args.retry_failed)
            except EngineError as exc:
                raise UpdateError(EXIT_FAILED, "failed", f"engine error: {exc}") from None
        except UpdateError as exc:
            code, result, reason = exc.code, exc.result, exc.reason
            status.update(exc.details)
        if not args.check:
            write_status(config, status, code, result, reason, started)
    log(f"{result}: {reason}")
    return code


def write_status(
    config: UpdateConfig, status: dict[str, Any], code: int, result: str, reason: str, started: float
) -> None:
    """``update-status.json``: what the last run did (a failed release stays remembered)."""
    finished = time.time()
    status.update(
        result=result,
        reason=reason,
        exit_code=code,
        started_at=int(started),
        finished_at=int(finished),
        duration_s=round(finished - started, 1),
        time=datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
    )
    if "failed_release" not in status and result in KEEP_FAILED_RELEASE:
        try:
            previous = read_json(config.status_file, default={}) or {}
        except UpdateError:
            previous = {}
        if previous.get("failed_release"):
            status["failed_release"] = previous["failed_release"]
    if Path(config.state_dir).is_dir():
        try:
            write_json(config.status_file, status)
        except OSError as exc:
            log(f"cannot write {config.status_file}: {exc}")
