# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Jinja filters over the collection's contract (``plugins/module_utils/_contract.py``).

Roles validate their settings and find their files with these filters instead of restating a
regular expression or a path: every rule, message and path comes from the contract, which the
agent, the control plane and the modules apply too (docs/architecture.md, "Where each rule
lives"). Each filter is a thin wrapper; documentation is in the ``.yml`` file of its name.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract

#: the rule name that stands for the control-plane URL policy in contract_errors
URL = "control_plane_url"


def _checker(rule):
    if rule == URL:
        return _contract.control_plane_url
    if rule not in _contract.RULES:
        raise AnsibleFilterError(
            "contract_errors: unknown rule %r (rules: %s)" % (rule, ", ".join(sorted(list(_contract.RULES) + [URL])))
        )
    return lambda value, what: _contract.check(rule, value, what)


def _error(checker, value, what):
    try:
        checker(value, what)
    except _contract.ContractError as exc:
        return [str(exc)]
    return []


def contract_errors(value, rule, what, elements=False):
    """The messages (a list, empty when ``value`` is fine) for ``value`` under the contract's ``rule``.

    ``what`` names the setting in the messages. With ``elements``, ``value`` must be a list and
    each element is checked (named ``what[index]``).
    """
    checker = _checker(rule)
    if not elements:
        return _error(checker, value, what)
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        return ["%s must be a list, got %s" % (what, type(value).__name__)]
    errors = []
    for index, item in enumerate(value):
        errors.extend(_error(checker, item, "%s[%d]" % (what, index)))
    return errors


def _or_filter_error(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except _contract.ContractError as exc:
        raise AnsibleFilterError(str(exc))


def control_plane_url(value, what=URL):
    """The control-plane URL as every part uses it (no trailing slash); an error naming ``what`` otherwise."""
    return _or_filter_error(_contract.control_plane_url, value, what)


def host_layout(checkpoint, instances=None, platform="linux", config_dir=None, state_dir=None):
    """Every path one checkpoint keeps on a host (an empty directory setting means the default)."""
    return _or_filter_error(
        _contract.host_layout,
        checkpoint,
        list(instances or []),
        platform=platform,
        config_dir=config_dir or None,
        state_dir=state_dir or None,
    )


def container_name(checkpoint, instance):
    """The container of one instance, ``vantage-<checkpoint>-<instance>``."""
    _or_filter_error(_contract.check, "name", checkpoint, "checkpoint")
    _or_filter_error(_contract.check, "name", instance, "instance")
    return _contract.container_name(checkpoint, instance)


def default_network(checkpoint):
    """The checkpoint's dedicated Docker network, ``vantage-<checkpoint>``."""
    return _contract.default_network(_or_filter_error(_contract.check, "name", checkpoint, "checkpoint"))


def bridge_name(network):
    """The host interface of the bridge of ``network``, known before the network exists."""
    if not isinstance(network, str) or not network:
        raise AnsibleFilterError("bridge_name: the network must be a non-empty name, got %r" % (network,))
    return _contract.bridge_name(network)


class FilterModule(object):
    """vantage.checkpoint filters: the contract for roles and playbooks."""

    def filters(self):
        return {
            "contract_errors": contract_errors,
            "control_plane_url": control_plane_url,
            "host_layout": host_layout,
            "container_name": container_name,
            "default_network": default_network,
            "bridge_name": bridge_name,
        }
