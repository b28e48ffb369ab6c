"""The rules every part of Vantage agrees on, stated once.

Names, the control-plane URL policy, the files a checkpoint keeps on its host and the container
defaults. They are written in exactly one file, the collection's
``plugins/module_utils/_contract.py``, because the collection's modules run on managed hosts that
do not have this package; the package carries that very file as :mod:`vantage._collection._contract`
(a link in the source tree, the file itself in a wheel) and this module is its typed face for the
agent, the control plane, the checks and the update engine. ``tests/unit/vantage/test_contract.py``
runs every layer that applies a rule over one table of accepted and refused inputs (see
``docs/architecture.md``, "Where each rule lives").

Every check is a full match: a value with a trailing newline is not a name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vantage._collection import _contract as _source

#: rule name -> (regular expression matched in full, what it means in an error message)
RULES: dict[str, tuple[str, str]] = _source.RULES
#: the control-plane URL policy in one sentence, said the same way everywhere
URL_RULE: str = _source.URL_RULE
#: where the checkpoint role keeps configuration and state, per host platform
DEFAULT_DIRS: dict[str, dict[str, str]] = _source.DEFAULT_DIRS
#: files in <config_dir>/<checkpoint>/ and <state_dir>/<checkpoint>/
CONFIG_FILES: dict[str, str] = _source.CONFIG_FILES
STATE_FILES: dict[str, str] = _source.STATE_FILES
#: the instance identity key, in <config_dir>/<checkpoint>/<instance>/
IDENTITY_KEY_FILE: str = _source.IDENTITY_KEY_FILE
#: what every checkpoint instance gets unless the operator says otherwise
CONTAINER_DEFAULTS: dict[str, Any] = _source.CONTAINER_DEFAULTS
NETWORK_PREFIX: str = _source.NETWORK_PREFIX
BRIDGE_PREFIX: str = _source.BRIDGE_PREFIX

ContractError = _source.ContractError
"""A value that breaks one of the rules (a :class:`ValueError`); the message names the setting and the rule."""


def is_valid(rule: str, value: Any) -> bool:
    """Whether ``value`` is a string that matches ``rule`` in full."""
    return bool(_source.is_valid(rule, value))


def check(rule: str, value: Any, what: str) -> str:
    """``value`` when it follows ``rule``; :class:`ContractError` naming ``what`` otherwise."""
    return str(_source.check(rule, value, what))


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets) is this machine's loopback."""
    return bool(_source.is_loopback_host(host))


def control_plane_url(value: Any, what: str = "control_plane_url") -> str:
    """The control-plane base URL without trailing slashes, or :class:`ContractError`.

    One policy everywhere: ``https://``; plain ``http://`` only to a loopback address; no user
    info, query or fragment.
    """
    return str(_source.control_plane_url(value, what))


def host_layout(
    checkpoint: str,
    instances: Iterable[str] = (),
    *,
    platform: str = "linux",
    config_dir: str | None = None,
    state_dir: str | None = None,
) -> dict[str, Any]:
    """Every path the roles, modules and the update engine use for one checkpoint on a host."""
    layout: dict[str, Any] = _source.host_layout(
        checkpoint, instances, platform=platform, config_dir=config_dir, state_dir=state_dir
    )
    return layout


def container_name(checkpoint: str, instance: str) -> str:
    """The container of one instance: ``vantage-<checkpoint>-<instance>``."""
    return str(_source.container_name(checkpoint, instance))


def default_network(checkpoint: str) -> str:
    """The dedicated Docker network of a checkpoint: ``vantage-<checkpoint>``."""
    return str(_source.default_network(checkpoint))


def bridge_name(network: str) -> str:
    """The host interface of ``network``'s bridge: known before the network exists, <= 15 chars."""
    return str(_source.bridge_name(network))
