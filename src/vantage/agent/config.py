"""Agent configuration: environment variables, optionally layered over a JSON file.

Every setting has one environment variable (``VANTAGE_*``) and one key in the optional JSON
configuration file (the variable name without the prefix, lower case).  The environment wins
over the file, so a container can override one value of a mounted file.  Invalid values raise
:class:`ConfigError` naming the variable; unknown ``VANTAGE_*`` variables and unknown file keys
produce warnings (they are usually typos) but do not stop the agent.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vantage import contract

ENV_PREFIX = "VANTAGE_"
CONFIG_FILE_VARIABLE = "VANTAGE_CONFIG"
DEFAULT_STATE_DIR = "/var/lib/vantage"
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: ``VANTAGE_*`` variables that are not settings but must not be reported as typos.
_OTHER_KNOWN = frozenset({CONFIG_FILE_VARIABLE})


class ConfigError(ValueError):
    """An invalid or missing setting; ``variable`` names it the way the operator spelt it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


@dataclass(frozen=True)
class AgentConfig:
    """The validated agent configuration."""

    control_plane_url: str
    checkpoint: str
    instance: str
    identity_key: Path
    trusted_keys: Path
    state_dir: Path
    ca_bundle: Path | None = None
    credentials_file: Path | None = None
    strip_content: bool = False
    strip_headers: bool = False
    strip_ips: bool = False
    max_concurrency: int = 32
    image_digest: str | None = None
    host_name: str | None = None
    allow_networks: tuple[str, ...] = ()
    log_level: str = "INFO"
    outbox_max_results: int = 10_000
    outbox_max_bytes: int = 50 * 1024 * 1024

    @property
    def audience(self) -> str:
        """The instruction audience of this instance: ``<checkpoint>/<instance>``."""
        return f"{self.checkpoint}/{self.instance}"

    @property
    def connect_url(self) -> str:
        """The websocket URL of the agent session on the control plane."""
        scheme, rest = self.control_plane_url.split("://", 1)
        ws_scheme = "wss" if scheme == "https" else "ws"
        return f"{ws_scheme}://{rest}/api/v1/agent/connect"


# --------------------------------------------------------------------------- value parsers


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number

    return parse


def _parse_name(value: str) -> str:
    if not contract.is_valid("name", value):
        raise ValueError(f"must be {contract.RULES['name'][1]}, got {value!r}")
    return value


def _parse_path(value: str) -> Path:
    if not value.strip():
        raise ValueError("must not be empty")
    return Path(value)


def _parse_existing_file(value: str) -> Path:
    path = _parse_path(value)
    if not path.is_file():
        raise ValueError(f"{value} is not a readable file")
    return path


def _parse_digest(value: str) -> str | None:
    if not value:
        return None
    if not contract.is_valid("digest", value):
        raise ValueError(f"expected sha256:<64 lowercase hex digits>, got {value!r}")
    return value


def _parse_host_name(value: str) -> str | None:
    if not value:
        return None
    if not contract.is_valid("host_name", value):
        raise ValueError(f"must be {contract.RULES['host_name'][1]}, got {value!r}")
    return value


def _parse_networks(value: str) -> tuple[str, ...]:
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR network such as 10.0.0.0/8 ({exc})") from None
    return tuple(networks)


def _parse_log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return level


def _parse_url(value: str) -> str:
    """Check the control plane URL (the one policy of :mod:`vantage.contract`); no trailing slash."""
    try:
        return contract.control_plane_url(value)
    except contract.ContractError:
        raise ValueError(f"must be {contract.URL_RULE}, got {value!r}") from None


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Setting:
    """One configuration setting: its field, parser, default and documentation."""

    field: str
    parse: Callable[[str], Any]
    required: bool
    default: str | None
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "control_plane_url",
        _parse_url,
        True,
        None,
        "Control plane base URL (https://; http:// only to a loopback address).",
    ),
    Setting("checkpoint", _parse_name, True, None, "Checkpoint name."),
    Setting("instance", _parse_name, True, None, "Instance name within the checkpoint."),
    Setting(
        "identity_key",
        _parse_existing_file,
        True,
        None,
        "Instance identity key: Ed25519 private key, PKCS#8 PEM.",
    ),
    Setting(
        "trusted_keys",
        _parse_existing_file,
        True,
        None,
        'Trusted control-plane signing keys (JSON, {"keys": [...]}).',
    ),
    Setting(
        "state_dir",
        _parse_path,
        False,
        DEFAULT_STATE_DIR,
        "Writable directory for outbox, replay cache, trust store and status file.",
    ),
    Setting(
        "ca_bundle",
        _parse_existing_file,
        False,
        None,
        "Extra CA certificates (PEM) trusted for the control plane and for checks.",
    ),
    Setting(
        "credentials_file",
        _parse_existing_file,
        False,
        None,
        'Secrets for checks that log in (JSON, {"credentials": {name: {username, password, '
        "private_key, passphrase}}}), referenced by name in monitors; mount it read-only.",
    ),
    Setting(
        "dp_strip_content",
        _parse_bool,
        False,
        "false",
        "Data protection: never send response bodies or excerpts.",
    ),
    Setting("dp_strip_headers", _parse_bool, False, "false", "Data protection: never send HTTP headers."),
    Setting(
        "dp_strip_ips",
        _parse_bool,
        False,
        "false",
        "Data protection: never send resolved or peer IP addresses.",
    ),
    Setting("max_concurrency", _int_range(1, 1024), False, "32", "Checks run at the same time."),
    Setting(
        "image_digest",
        _parse_digest,
        False,
        "",
        "Digest of the running image (sha256:…), reported in heartbeats.",
    ),
    Setting(
        "host_name",
        _parse_host_name,
        False,
        "",
        "Name of the host the instance runs on (the Docker host), reported in heartbeats instead of the "
        "container's own host name.",
    ),
    Setting(
        "allow_networks",
        _parse_networks,
        False,
        "",
        "Comma-separated CIDRs that checks may reach although they are in a blocked range.",
    ),
    Setting("log_level", _parse_log_level, False, "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Setting(
        "outbox_max_results",
        _int_range(10, 10_000_000),
        False,
        "10000",
        "Outbox bound: results kept while undelivered (oldest dropped).",
    ),
    Setting(
        "outbox_max_bytes",
        _int_range(65_536, 10 * 1024**3),
        False,
        str(50 * 1024 * 1024),
        "Outbox bound in bytes (oldest dropped).",
    ),
)
_BY_ENV = {setting.env: setting for setting in SETTINGS}
_BY_FIELD = {setting.field: setting for setting in SETTINGS}
_FIELD_TO_ATTR = {
    "dp_strip_content": "strip_content",
    "dp_strip_headers": "strip_headers",
    "dp_strip_ips": "strip_ips",
}


def _file_value(value: Any) -> str:
    """Turn a JSON config-file value into the string form the parsers take."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if value is None:
        return ""
    return str(value)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON configuration file (an object of setting keys)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(CONFIG_FILE_VARIABLE, f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(CONFIG_FILE_VARIABLE, f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(CONFIG_FILE_VARIABLE, f"{path} must hold a JSON object")
    return data


def unknown_variable_warnings(env: Mapping[str, str]) -> list[str]:
    """Warnings for ``VANTAGE_*`` variables that no setting uses (likely typos)."""
    warnings = []
    known = sorted(_BY_ENV)
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in _BY_ENV and name not in _OTHER_KNOWN:
            import difflib  # only a misspelt variable needs it

            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"unknown variable {name} ignored{hint}")
    return warnings


def raw_values(
    env: Mapping[str, str], config_file: Path | None = None
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Merge file and environment: ``{field: (value, source name)}`` plus warnings."""
    warnings = unknown_variable_warnings(env)
    values: dict[str, tuple[str, str]] = {}
    if config_file is not None:
        for key, value in read_config_file(config_file).items():
            if key not in _BY_FIELD:
                warnings.append(f"unknown key {key!r} in {config_file} ignored")
                continue
            values[key] = (_file_value(value), f"{key} (in {config_file})")
    for name, setting in _BY_ENV.items():
        if name in env:
            values[setting.field] = (env[name], name)
    return values, warnings


def config_file_from(env: Mapping[str, str], explicit: str | None) -> Path | None:
    """The configuration file named on the command line or by ``VANTAGE_CONFIG``."""
    chosen = explicit if explicit is not None else env.get(CONFIG_FILE_VARIABLE)
    return Path(chosen) if chosen else None


def load_config(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> tuple[AgentConfig, list[str]]:
    """Validate the configuration; return it with the warnings to log.

    Raises :class:`ConfigError` naming the first invalid or missing variable.
    """
    env = os.environ if env is None else env
    values, warnings = raw_values(env, config_file)
    parsed: dict[str, Any] = {}
    for setting in SETTINGS:
        raw, source = values.get(setting.field, (setting.default, setting.env))
        if setting.required and (raw is None or not raw.strip()):
            raise ConfigError(setting.env, "is required")
        if raw is None or (setting.default is None and not raw.strip()):
            continue  # an optional setting without a default: left unset (None)
        try:
            parsed[_FIELD_TO_ATTR.get(setting.field, setting.field)] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(source, str(exc)) from None
    config = AgentConfig(**parsed)
    return config, warnings


def state_dir_only(env: Mapping[str, str], config_file: Path | None) -> Path:
    """The state directory alone (for ``healthcheck``, which needs nothing else)."""
    values, _ = raw_values(env, config_file)
    raw, source = values.get("state_dir", (DEFAULT_STATE_DIR, "VANTAGE_STATE_DIR"))
    try:
        return _parse_path(raw)
    except ValueError as exc:
        raise ConfigError(source, str(exc)) from None
