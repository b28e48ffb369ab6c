# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Jinja tests over the collection's contract (``plugins/module_utils/_contract.py``).

One test per value rule of the contract, ``valid_<rule>`` (``checkpoint_name is
vantage.checkpoint.valid_name``), and ``valid_control_plane_url`` for the URL policy. They say
yes or no; the filter ``vantage.checkpoint.contract_errors`` says why (docs/architecture.md,
"Where each rule lives"). Documentation is in the ``.yml`` file of each test's name.
"""

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract


def _rule_test(rule):
    def test(value):
        return _contract.is_valid(rule, value)

    test.__name__ = "valid_" + rule
    test.__doc__ = "Whether the value is %s." % _contract.RULES[rule][1]
    return test


def valid_control_plane_url(value):
    """Whether the value is a control-plane URL every part accepts (https://, http:// only to loopback)."""
    try:
        _contract.control_plane_url(value)
    except _contract.ContractError:
        return False
    return True


class TestModule(object):
    """vantage.checkpoint tests: the contract's rules for roles and playbooks."""

    def tests(self):
        tests = dict(("valid_" + rule, _rule_test(rule)) for rule in _contract.RULES)
        tests["valid_control_plane_url"] = valid_control_plane_url
        return tests
