# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The contract's filters: thin wrappers that say exactly what _contract says, in Ansible's terms."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.vantage.checkpoint.plugins.filter import contract as filters
from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract

FILTER_DIR = os.path.dirname(filters.__file__)
DIGEST = "sha256:" + "ab" * 32

GOOD = {
    "name": "office-berlin",
    "credential_name": "db.readonly",
    "channel": "stable",
    "host_name": "dockerhost-01.example.com",
    "version": "1.4.2",
    "digest": DIGEST,
    "key_id": "0123456789abcdef",
    "pinned_image": "registry.example.com:5000/vantage/checkpoint@" + DIGEST,
    "control_plane_url": "https://cp.example.com",
}
BAD = {
    "name": "Office_Berlin",
    "credential_name": "db readonly",
    "channel": ".hidden",
    "host_name": "dockerhost-01.",
    "version": "1.4.2-rc1",
    "digest": "sha256:ABC",
    "key_id": "0123456789abcdef\n",
    "pinned_image": "vantage/checkpoint:latest",
    "control_plane_url": "http://cp.example.com",
}


def test_every_rule_of_the_contract_has_an_example():
    assert set(GOOD) == set(BAD) == set(_contract.RULES) | {"control_plane_url"}


@pytest.mark.parametrize("rule", sorted(GOOD))
def test_contract_errors_is_empty_for_a_good_value_and_states_the_rule_for_a_bad_one(rule):
    assert filters.contract_errors(GOOD[rule], rule, "setting_x") == []
    errors = filters.contract_errors(BAD[rule], rule, "setting_x")
    if rule == "control_plane_url":
        expected = "setting_x must be %s, got %r" % (_contract.URL_RULE, BAD[rule])
    else:
        expected = "setting_x must be %s, got %r" % (_contract.RULES[rule][1], BAD[rule])
    assert errors == [expected]


def test_contract_errors_checks_each_element_and_names_its_index():
    errors = filters.contract_errors(["a", "A_b", "c", 7], "name", "checkpoint_instances", elements=True)
    assert errors == [
        "checkpoint_instances[1] must be %s, got 'A_b'" % _contract.RULES["name"][1],
        "checkpoint_instances[3] must be %s, got 7" % _contract.RULES["name"][1],
    ]
    assert filters.contract_errors([], "name", "checkpoint_instances", elements=True) == []
    assert filters.contract_errors(("a", "b"), "name", "checkpoint_instances", elements=True) == []


@pytest.mark.parametrize("value", ["a,b", {"a": 1}, None, 3])
def test_contract_errors_wants_a_list_with_elements(value):
    errors = filters.contract_errors(value, "name", "checkpoint_instances", elements=True)
    assert errors == ["checkpoint_instances must be a list, got %s" % type(value).__name__]


def test_contract_errors_never_shows_the_user_info_of_a_refused_url():
    errors = filters.contract_errors("https://admin:s3cret@cp.example.com", "control_plane_url", "cp_url")
    assert len(errors) == 1 and "s3cret" not in errors[0] and "https://***@cp.example.com" in errors[0]


def test_contract_errors_refuses_an_unknown_rule():
    with pytest.raises(AnsibleFilterError, match=r"unknown rule 'hostname' \(rules: channel, control_plane_url, "):
        filters.contract_errors("x", "hostname", "x")


def test_control_plane_url_is_normalized_or_refused_with_the_one_sentence():
    assert filters.control_plane_url(" https://cp.example.com:8443/base/ ") == "https://cp.example.com:8443/base"
    assert filters.control_plane_url("http://127.0.0.1:8443/") == "http://127.0.0.1:8443"
    with pytest.raises(AnsibleFilterError) as info:
        filters.control_plane_url("http://10.0.0.5:8443", "checkpoint_control_plane_url")
    assert str(info.value).startswith("checkpoint_control_plane_url must be " + _contract.URL_RULE)


def test_host_layout_is_the_contracts():
    assert filters.host_layout("office", ["a", "b"]) == _contract.host_layout("office", ["a", "b"])
    # empty directory settings (an unset inventory variable) mean the defaults
    assert filters.host_layout("office", None, config_dir="", state_dir="") == _contract.host_layout("office")
    layout = filters.host_layout("office", ["a"], config_dir="/srv/cfg", state_dir="/srv/state")
    assert layout["trusted_keys"] == "/srv/cfg/office/trusted-keys.json"
    assert layout["instances"]["a"] == {
        "config_dir": "/srv/cfg/office/a",
        "identity_key": "/srv/cfg/office/a/identity.pem",
        "state_dir": "/srv/state/office/a",
    }
    windows = filters.host_layout("office", ["a"], platform="windows")
    assert windows["ca"] == "C:\\ProgramData\\Vantage\\checkpoints\\office\\ca.pem"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Office",), "^checkpoint must be"),
        (("office", ["a", "b/c"]), "^instance must be"),
        (("office", [], "darwin"), "^platform must be one of linux, windows"),
    ],
)
def test_host_layout_refuses_what_the_contract_refuses(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        filters.host_layout(*args)


def test_names_of_containers_networks_and_bridges():
    assert filters.container_name("office", "a") == "vantage-office-a" == _contract.container_name("office", "a")
    assert filters.default_network("office") == "vantage-office"
    assert filters.bridge_name("vantage-office") == _contract.bridge_name("vantage-office")
    assert filters.bridge_name("vantage-office").startswith("vtg-") and len(filters.bridge_name("vantage-office")) == 15
    with pytest.raises(AnsibleFilterError, match="^instance must be"):
        filters.container_name("office", "A")
    with pytest.raises(AnsibleFilterError, match="^checkpoint must be"):
        filters.default_network("office\n")
    with pytest.raises(AnsibleFilterError, match="non-empty"):
        filters.bridge_name("")


def test_every_filter_is_documented_under_its_name():
    names = set(filters.FilterModule().filters())
    documented = set(f[:-4] for f in os.listdir(FILTER_DIR) if f.endswith(".yml"))
    assert names == documented
    for name in names:
        with open(os.path.join(FILTER_DIR, name + ".yml")) as handle:
            doc = yaml.safe_load(handle)
        assert doc["DOCUMENTATION"]["name"] == name
        assert "vantage.checkpoint.%s" % name in doc["EXAMPLES"]
