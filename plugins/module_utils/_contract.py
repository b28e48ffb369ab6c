# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rules every part of Vantage agrees on, stated once: this file.

Names, the control-plane URL policy, the files a checkpoint keeps on its host and the container
defaults. Modules, action, filter and test plugins read them from here; the ``vantage`` package
(agent, control plane, checks, update engine) carries this very file as
``vantage._collection._contract`` and reads it through its typed face ``vantage.contract``. It
imports neither Ansible nor ``vantage``, so that both can carry it (see docs/architecture.md,
"Where each rule lives").

Every check is a full match: a value with a trailing newline is not a name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ntpath
import posixpath
import re

from urllib.parse import urlsplit

# ----------------------------------------------------------------------------- value rules

#: rule name -> (regular expression matched in full, what it means in an error message)
RULES = {
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
_COMPILED = dict((rule, re.compile(spec[0])) for rule, spec in RULES.items())


class ContractError(ValueError):
    """A value that breaks one of the rules; the message names the setting and the rule."""


def is_valid(rule, value):
    """Whether ``value`` is a string that matches ``rule`` in full."""
    return isinstance(value, str) and _COMPILED[rule].fullmatch(value) is not None


def check(rule, value, what):
    """``value`` when it follows ``rule``; :class:`ContractError` naming ``what`` otherwise."""
    if not is_valid(rule, value):
        raise ContractError("%s must be %s, got %r" % (what, RULES[rule][1], value))
    return value


# ----------------------------------------------------------------------------- control-plane URL

URL_RULE = (
    "an https:// URL without credentials, query or fragment "
    "(http:// only to a loopback address: 127.0.0.0/8, ::1 or localhost)"
)
#: the user info of a URL (up to its last "@" before the path), masked in error messages
_USER_INFO = re.compile(r"//[^/?#]*@")


def is_loopback_host(host):
    """Whether ``host`` (a name or an address, without brackets) is this machine's loopback."""
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def control_plane_url(value, what="control_plane_url"):
    """The control-plane base URL without trailing slashes, or :class:`ContractError`.

    One policy everywhere: ``https://``; plain ``http://`` only to a loopback address; no user
    info, query or fragment.
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
        raise ContractError("%s must be %s, got %r" % (what, URL_RULE, _without_user_info(value)))
    return text.rstrip("/")


def _without_user_info(value):
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


def host_layout(checkpoint, instances=(), platform="linux", config_dir=None, state_dir=None):
    """Every path the roles, modules and the update engine use for one checkpoint on a host."""
    if platform not in DEFAULT_DIRS:
        raise ContractError("platform must be one of %s, got %r" % (", ".join(sorted(DEFAULT_DIRS)), platform))
    check("name", checkpoint, "checkpoint")
    join = ntpath.join if platform == "windows" else posixpath.join
    base_config = join(config_dir or DEFAULT_DIRS[platform]["config_dir"], checkpoint)
    base_state = join(state_dir or DEFAULT_DIRS[platform]["state_dir"], checkpoint)
    layout = {"config_dir": base_config, "state_dir": base_state}
    layout.update(dict((key, join(base_config, name)) for key, name in CONFIG_FILES.items()))
    layout.update(dict((key, join(base_state, name)) for key, name in STATE_FILES.items()))
    layout["instances"] = dict(
        (
            check("name", instance, "instance"),
            {
                "config_dir": join(base_config, instance),
                "identity_key": join(base_config, instance, IDENTITY_KEY_FILE),
                "state_dir": join(base_state, instance),
            },
        )
        for instance in instances
    )
    return layout


# ----------------------------------------------------------------------------- containers

#: what every checkpoint instance gets unless the operator says otherwise
CONTAINER_DEFAULTS = {
    "user": "10001:10001",
    "memory": "256m",
    "cpus": 1.0,
    "pids_limit": 256,
    "health_timeout": 120,
    "healthcheck_interval": 5,
}
NETWORK_PREFIX = "vantage-"
BRIDGE_PREFIX = "vtg-"


def container_name(checkpoint, instance):
    """The container of one instance: ``vantage-<checkpoint>-<instance>``."""
    return "%s%s-%s" % (NETWORK_PREFIX, checkpoint, instance)


def default_network(checkpoint):
    """The dedicated Docker network of a checkpoint: ``vantage-<checkpoint>``."""
    return NETWORK_PREFIX + checkpoint


def bridge_name(network):
    """The host interface of ``network``'s bridge: known before the network exists, <= 15 chars."""
    return BRIDGE_PREFIX + hashlib.sha256(network.encode("utf-8")).hexdigest()[:11]
