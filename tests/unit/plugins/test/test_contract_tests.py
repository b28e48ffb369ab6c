# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The contract's Jinja tests: one per rule, answering exactly as _contract does."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract
from ansible_collections.vantage.checkpoint.plugins.test import contract as tests_plugin

TEST_DIR = os.path.dirname(tests_plugin.__file__)
TESTS = tests_plugin.TestModule().tests()
DIGEST = "sha256:" + "0" * 64

CASES = {
    "valid_name": (["a", "office-berlin", "0", "a" * 63], ["", "A", "-a", "a_b", "a" * 64, "cp\n", None, 1]),
    "valid_credential_name": (["db", "DB_ro", "mail.probe"], ["", "_x", "x y", "x/y", "A" * 65, None]),
    "valid_channel": (["stable", "Beta.2"], ["", ".x", "st able", "stable\n"]),
    "valid_host_name": (["a", "DockerHost-01", "host.example.com", "a" * 253], ["", "-a", "a.", "a b", "a" * 254, "a\n"]),
    "valid_version": (["1", "1.2.3"], ["", "v1", "1.", "1.2.3-rc1"]),
    "valid_digest": ([DIGEST], ["sha256:" + "0" * 63, "sha256:" + "A" * 64, DIGEST + "\n"]),
    "valid_key_id": (["0123456789abcdef"], ["0123456789ABCDEF", "0123456789abcde", 16]),
    "valid_pinned_image": ([DIGEST, "registry.local:5000/vantage/checkpoint@" + DIGEST], ["vantage/checkpoint:1.0", ""]),
    "valid_control_plane_url": (
        ["https://cp.example.com", "https://cp.example.com/", "http://127.0.0.1:8443", "http://[::1]:1", "http://localhost"],
        ["http://cp.example.com", "http://10.0.0.1", "https://u:p@cp.example.com", "https://cp/?x=1", "ftp://cp", "", None],
    ),
}


def test_one_test_per_rule_and_one_for_the_url():
    assert set(TESTS) == set("valid_" + rule for rule in _contract.RULES) | {"valid_control_plane_url"}
    assert set(CASES) == set(TESTS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_answers(name):
    good, bad = CASES[name]
    for value in good:
        assert TESTS[name](value) is True, value
    for value in bad:
        assert TESTS[name](value) is False, value


@pytest.mark.parametrize("rule", sorted(_contract.RULES))
def test_rule_tests_are_the_contracts(rule):
    good, bad = CASES["valid_" + rule]
    for value in good + bad:
        assert TESTS["valid_" + rule](value) is _contract.is_valid(rule, value)


def test_every_test_is_documented_under_its_name():
    documented = set(f[:-4] for f in os.listdir(TEST_DIR) if f.endswith(".yml"))
    assert documented == set(TESTS)
    for name in TESTS:
        with open(os.path.join(TEST_DIR, name + ".yml")) as handle:
            doc = yaml.safe_load(handle)
        assert doc["DOCUMENTATION"]["name"] == name
        assert "is vantage.checkpoint.%s" % name in doc["EXAMPLES"]
