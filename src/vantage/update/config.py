"""The ``[update]`` section of ``update.conf``, the file the ``auto_update`` role writes."""

from __future__ import annotations

import configparser
import ntpath
import posixpath
import re
import sys
from dataclasses import dataclass

from vantage.contract import STATE_FILES, ContractError, check, control_plane_url

#: the engine and the host-wide lock by platform: the engine's socket, or its named pipe on Windows,
#: where files cannot be bind-mounted, so the lock lives in a directory of its own (docs/windows.md)
PLATFORM_DEFAULTS = {
    "linux": {"docker_host": "unix:///var/run/docker.sock", "lock_file": "/run/lock/vantage-checkpoint-update.lock"},
    "win32": {
        "docker_host": "npipe:////./pipe/docker_engine",
        "lock_file": "C:\\ProgramData\\Vantage\\lock\\update.lock",
    },
}
_DEFAULTS = PLATFORM_DEFAULTS["win32" if sys.platform == "win32" else "linux"]
DEFAULT_DOCKER_HOST = _DEFAULTS["docker_host"]
DEFAULT_LOCK_FILE = _DEFAULTS["lock_file"]
_WINDOWS_PATH = re.compile(r"[A-Za-z]:\\")


def join(directory: str, name: str) -> str:
    """``directory`` joined with ``name`` the way the host that wrote the path does (a ``C:\\`` path is Windows')."""
    if _WINDOWS_PATH.match(directory):
        return ntpath.join(directory, name)
    return posixpath.join(directory, name)

#: exit status of a run (docs/auto-update.md)
EXIT_OK = 0  # updated, or already up to date
EXIT_FAILED = 1  # a health gate failed: rolled back (or a release that failed before was not retried)
EXIT_REFUSED = 2  # the manifest was refused (signature, key, type, channel, time, downgrade)
EXIT_IMAGE = 3  # the image could not be pulled (registry unreachable, digest missing)
EXIT_CONFIG = 4  # configuration or local error (bad config file, no engine, missing files)
EXIT_DEFERRED = 5  # not now: another instance is unhealthy, or the control plane cannot be asked
EXIT_CONTROL_PLANE = 6  # the manifest could not be fetched from the control plane
EXIT_LOCKED = 75  # another run holds the lock (EX_TEMPFAIL)


class UpdateError(Exception):
    """A run that ends with exit status ``code``; ``result`` is the status file's word."""

    def __init__(self, code: int, result: str, reason: str, **details: object) -> None:
        super().__init__(reason)
        self.code = code
        self.result = result
        self.reason = reason
        self.details = details


def config_error(reason: str) -> UpdateError:
    return UpdateError(EXIT_CONFIG, "error", reason)


@dataclass(frozen=True)
class UpdateConfig:
    """The validated settings of one checkpoint's update (every key named as in the file)."""

    path: str
    checkpoint: str
    channel: str
    instances: tuple[str, ...]
    control_plane_url: str
    api_token_file: str
    trusted_keys: str
    state_dir: str
    ca_file: str | None = None
    validate_certs: bool = True
    docker_host: str = DEFAULT_DOCKER_HOST
    lock_file: str = DEFAULT_LOCK_FILE
    health_timeout: int = 180
    gate_timeout: int = 300
    poll_interval: int = 2
    request_timeout: int = 15
    skew: int = 300
    retry_failed: bool = False
    manifest_file: str | None = None

    @property
    def release_file(self) -> str:
        return join(self.state_dir, STATE_FILES["release"])

    @property
    def status_file(self) -> str:
        return join(self.state_dir, STATE_FILES["update_status"])

    @classmethod
    def load(cls, path: str) -> UpdateConfig:
        """Read and check ``path``; :class:`UpdateError` (``EXIT_CONFIG``) naming the key otherwise."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise config_error(f"cannot read the configuration {path}: {exc.strerror}") from None
        except configparser.Error as exc:
            raise config_error(f"configuration {path}: {exc}") from None
        if not parser.has_section("update"):
            raise config_error(f"configuration {path} has no [update] section")
        section = parser["update"]

        def get(name: str, required: bool = False) -> str | None:
            value = section.get(name, "").strip()
            if not value and required:
                raise config_error(f"configuration {path}: {name} is required")
            return value or None

        def need(name: str) -> str:
            value = get(name, required=True)
            assert value is not None
            return value

        def number(name: str, default: int, minimum: int = 0) -> int:
            value = get(name)
            if value is None:
                return default
            try:
                result = int(value)
            except ValueError:
                raise config_error(
                    f"configuration {path}: {name} must be an integer, not {value!r}"
                ) from None
            if result < minimum:
                raise config_error(f"configuration {path}: {name} must be at least {minimum}, not {result}")
            return result

        def flag(name: str, default: bool) -> bool:
            value = (get(name) or str(default)).lower()
            if value not in ("true", "yes", "1", "false", "no", "0"):
                raise config_error(f"configuration {path}: {name} must be true or false, not {value!r}")
            return value in ("true", "yes", "1")

        try:
            checkpoint = check("name", need("checkpoint"), f"configuration {path}: checkpoint")
            channel = check("channel", need("channel"), f"configuration {path}: channel")
            instances = tuple(
                check("name", name, f"configuration {path}: instance") for name in need("instances").split()
            )
            url = control_plane_url(need("control_plane_url"), f"configuration {path}: control_plane_url")
        except ContractError as exc:
            raise config_error(str(exc)) from None
        return cls(
            path=path,
            checkpoint=checkpoint,
            channel=channel,
            instances=instances,
            control_plane_url=url,
            api_token_file=need("api_token_file"),
            trusted_keys=need("trusted_keys"),
            state_dir=need("state_dir"),
            ca_file=get("ca_file"),
            validate_certs=flag("validate_certs", True),
            docker_host=get("docker_host") or DEFAULT_DOCKER_HOST,
            lock_file=get("lock_file") or DEFAULT_LOCK_FILE,
            health_timeout=number("health_timeout", 180),
            gate_timeout=number("gate_timeout", 300),
            poll_interval=number("poll_interval", 2, minimum=1),
            request_timeout=number("request_timeout", 15, minimum=1),
            skew=number("skew", 300),
            retry_failed=flag("retry_failed", False),
            manifest_file=get("manifest_file"),
        )
