"""The rules every part of Vantage agrees on, stated once.

Names, the control-plane URL policy, the files a checkpoint keeps on its host and the container
defaults are read from here by the agent, the control plane and the update engine. The Ansible
collection runs on managed hosts that do not have this package, so it keeps one small copy in
``plugins/module_utils/_contract.py``; ``tests/unit/vantage/test_contract.py`` proves that both
accept and refuse exactly the same inputs and produce the same layout (see
``docs/architecture.md``, "Where each rule lives").

Every check uses a full match: a value with a trailing newline is not a name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ntpath
import posixpath
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

# ----------------------------------------------------------------------------- value rules

#: rule name -> (regular expression matched in full, what it means in an error message)
RULES: dict[str, tuple[str, str]] = {
    "name": (
        r"[a-z0-9][a-z0-9-]{0,62}",
        "1 to 63 characters a-z, 0-9 and '-', starting with a letter or digit",
    ),
    "credential_name": (
        r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
        "1 to 64 characters A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit",
    ),
    "channel": (
        r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        "1 to 64 characters A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
    ),
    "host_name": (
        r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?",
        "1 to 253 characters A-Z, a-z, 0-9, '.', '_' and '-', starting and ending with a letter or digit",
    ),
    "version": (r"[0-9]{1,9}(\.[0-9]{1,9}){0,7}", "dotted numbers such as 1.4.2"),
    "digest": (r"sha256:[0-9a-f]{64}", "sha256:<64 lower-case hex digits>"),
    "key_id": (r"[0-9a-f]{16}", "16 lower-case hex digits"),
    "pinned_image": (
        r"([a-z0-9][a-z0-9._/:-]*@)?sha256:[0-9a-f]{64}",
        "an image pinned by digest, repository@sha256:<64 hex> or sha256:<64 hex>",
    ),
}
_COMPILED = {rule: re.compile(pattern) for rule, (pattern, _) in RULES.items()}


class ContractError(ValueError):
    """A value that breaks one of the rules; the message names the setting and the rule."""


def is_valid(rule: str, value: Any) -> bool:
    """Whether ``value`` is a string that matches ``rule`` in full."""
    return isinstance(value, str) and _COMPILED[rule].fullmatch(value) is not None


def check(rule: str, value: Any, what: str) -> str:
    """``value`` when it follows ``rule``; :class:`ContractError` naming ``what`` otherwise."""
    if not is_valid(rule, value):
        raise ContractError(f"{what} must be {RULES[rule][1]}, got {value!r}")
    return str(value)


# ----------------------------------------------------------------------------- control-plane URL

URL_RULE = (
    "an https:// URL without credentials, query or fragment "
    "(http:// only to a loopback address: 127.0.0.0/8, ::1 or localhost)"
)
#: the user info of a URL (up to its last "@" before the path), masked in error messages
_USER_INFO = re.compile(r"//[^/?#]*@")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets) is this machine's loopback."""
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def control_plane_url(value: Any, what: str = "control_plane_url") -> str:
    """The control-plane base URL without trailing slashes, or :class:`ContractError`.

    One policy everywhere: ``https://``; plain ``http://`` only to a loopback address (a local
    test or a TLS-terminating proxy on the same host); no user info, query or fragment.
    """
    text = value.strip() if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    host = parts.hostname or ""
    good = (
        port_ok
        and bool(host)
        and parts.scheme in ("https", "http")
        and parts.username is None
        and parts.password is None
        and not parts.query
        and not parts.fragment
        and not any(c.isspace() for c in text)
        and (parts.scheme == "https" or is_loopback_host(host))
    )
    if not good:
        raise ContractError(f"{what} must be {URL_RULE}, got {_without_user_info(value)!r}")
    return text.rstrip("/")


def _without_user_info(value: Any) -> Any:
    """``value`` with the user info of a URL masked, so that a refused URL never shows a password."""
    return _USER_INFO.sub("//***@", value) if isinstance(value, str) else value


# ----------------------------------------------------------------------------- host layout

#: where the checkpoint role keeps configuration and state, per host platform
DEFAULT_DIRS = {
    "linux": {"config_dir": "/etc/vantage/checkpoints", "state_dir": "/var/lib/vantage/checkpoints"},
    "windows": {
        "config_dir": "C:\\ProgramData\\Vantage\\checkpoints",
        "state_dir": "C:\\ProgramData\\Vantage\\state",
    },
}
#: files in <config_dir>/<checkpoint>/
CONFIG_FILES = {
    "ca": "ca.pem",
    "trusted_keys": "trusted-keys.json",
    "credentials": "credentials.json",
    "update_config": "update.conf",
    "update_token": "update-token",
}
#: files in <state_dir>/<checkpoint>/
STATE_FILES = {"release": "release.json", "update_status": "update-status.json"}
#: the instance identity key, in <config_dir>/<checkpoint>/<instance>/
IDENTITY_KEY_FILE = "identity.pem"


def host_layout(
    checkpoint: str,
    instances: Iterable[str] = (),
    *,
    platform: str = "linux",
    config_dir: str | None = None,
    state_dir: str | None = None,
) -> dict[str, Any]:
    """Every path the roles, modules and the update engine use for one checkpoint on a host."""
    if platform not in DEFAULT_DIRS:
        raise ContractError(f"platform must be one of {', '.join(sorted(DEFAULT_DIRS))}, got {platform!r}")
    check("name", checkpoint, "checkpoint")
    join = ntpath.join if platform == "windows" else posixpath.join
    base_config = join(config_dir or DEFAULT_DIRS[platform]["config_dir"], checkpoint)
    base_state = join(state_dir or DEFAULT_DIRS[platform]["state_dir"], checkpoint)
    layout: dict[str, Any] = {"config_dir": base_config, "state_dir": base_state}
    layout.update({key: join(base_config, name) for key, name in CONFIG_FILES.items()})
    layout.update({key: join(base_state, name) for key, name in STATE_FILES.items()})
    layout["instances"] = {
        check("name", instance, "instance"): {
            "config_dir": join(base_config, instance),
            "identity_key": join(base_config, instance, IDENTITY_KEY_FILE),
            "state_dir": join(base_state, instance),
        }
        for instance in instances
    }
    return layout


# ----------------------------------------------------------------------------- containers

#: what every checkpoint instance gets unless the operator says otherwise
CONTAINER_DEFAULTS: dict[str, Any] = {
    "user": "10001:10001",
    "memory": "256m",
    "cpus": 1.0,
    "pids_limit": 256,
    "health_timeout": 120,
    "healthcheck_interval": 5,
}
NETWORK_PREFIX = "vantage-"
BRIDGE_PREFIX = "vtg-"


def container_name(checkpoint: str, instance: str) -> str:
    """The container of one instance: ``vantage-<checkpoint>-<instance>``."""
    return f"{NETWORK_PREFIX}{checkpoint}-{instance}"


def default_network(checkpoint: str) -> str:
    """The dedicated Docker network of a checkpoint: ``vantage-<checkpoint>``."""
    return f"{NETWORK_PREFIX}{checkpoint}"


def bridge_name(network: str) -> str:
    """The host interface of ``network``'s bridge: known before the network exists, <= 15 chars."""
    return BRIDGE_PREFIX + hashlib.sha256(network.encode("utf-8")).hexdigest()[:11]
