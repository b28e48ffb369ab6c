"""One contract, applied the same way by every layer.

The rules are written once, in the collection's ``plugins/module_utils/_contract.py``: modules load
it on managed hosts as it stands (loaded here from its file, without Ansible or ``vantage``), and
the package reads the same file through ``vantage.contract``. These tests run the file, the
package's face and every place that applies a rule (agent settings, the control plane's API
schemas, the signed hello, check specs, the credentials file) over one table of valid and invalid
inputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vantage import contract
from vantage.agent import config as agent_config
from vantage.checks import CheckSpecError
from vantage.checks.spec import validate_spec
from vantage.control_plane import api_checkpoints, web_common
from vantage.control_plane import validation as cp_validation
from vantage.protocol import hello

ROOT = Path(__file__).resolve().parents[3]


def _load_collection_contract() -> ModuleType:
    path = ROOT / "plugins" / "module_utils" / "_contract.py"
    spec = importlib.util.spec_from_file_location("vantage_collection_contract", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


collection = _load_collection_contract()

NAMES = {
    "valid": ["a", "cp1", "office-berlin", "0", "a" * 63, "a-b-c", "9lives"],
    "invalid": [
        "", "A", "cp1\n", "\ncp1", " cp1", "cp1 ", "-a", "a_b", "a.b", "a/b", "a" * 64, "é",
        "cp1%0A", None, 1, ["a"],
    ],
}
CREDENTIAL_NAMES = {
    "valid": ["db", "DB_ro", "mail.probe", "a-b", "A" * 64, "0x"],
    "invalid": ["", "_x", ".x", "-x", "x\n", "x y", "A" * 65, "x/y", "mail:probe", None, 3],
}
DIGESTS = {
    "valid": ["sha256:" + "0" * 64, "sha256:" + "af" * 32],
    "invalid": ["sha256:" + "0" * 63, "sha256:" + "A" * 64, "sha256:" + "0" * 64 + "\n", "sha512:" + "0" * 64, ""],
}
PINNED_IMAGES = {
    "valid": ["sha256:" + "1" * 64, "registry.local:5000/vantage/checkpoint@sha256:" + "1" * 64],
    "invalid": [
        "vantage/checkpoint:1.0", "vantage/checkpoint@sha256:" + "1" * 64 + "\n", "Registry/x@sha256:" + "1" * 64, "",
    ],
}
KEY_IDS = {"valid": ["0123456789abcdef"], "invalid": ["0123456789ABCDEF", "0123456789abcde", "0123456789abcdef\n"]}
CHANNELS = {"valid": ["stable", "Beta.2", "lts_2026"], "invalid": ["", ".x", "stable\n", "a" * 65, "st able"]}
HOST_NAMES = {
    "valid": ["vantage-sandbox-host1", "WIN-7K2J3ABC", "docker01.example.com", "h", "a_b", "a" * 253],
    "invalid": ["", "-host", "host-", "host.", "ho st", "host\n", "d65d7d3cc889\n", "<script>", "a" * 254, "hôte", None],
}
VERSIONS = {"valid": ["1", "1.2.3", "10.0.0.1"], "invalid": ["", "1.", "v1", "1.2.3\n", "1..2", "1.2.3-rc1"]}

RULE_TABLE = {
    "name": NAMES,
    "credential_name": CREDENTIAL_NAMES,
    "digest": DIGESTS,
    "pinned_image": PINNED_IMAGES,
    "key_id": KEY_IDS,
    "channel": CHANNELS,
    "version": VERSIONS,
    "host_name": HOST_NAMES,
}

URLS = {
    "valid": {
        "https://cp.example.com": "https://cp.example.com",
        "https://cp.example.com/": "https://cp.example.com",
        "https://cp.example.com:8443/vantage/": "https://cp.example.com:8443/vantage",
        "  https://10.0.0.5:8443  ": "https://10.0.0.5:8443",
        "https://[2001:db8::1]:8443": "https://[2001:db8::1]:8443",
        "http://127.0.0.1:8080": "http://127.0.0.1:8080",
        "http://127.8.9.1": "http://127.8.9.1",
        "http://[::1]:8080": "http://[::1]:8080",
        "http://localhost:8080": "http://localhost:8080",
        "http://LOCALHOST:8080": "http://LOCALHOST:8080",
    },
    "invalid": [
        "http://cp.example.com",
        "http://10.0.0.5:8080",
        "http://[2001:db8::1]:8080",
        "http://127.0.0.1.nip.io",
        "ftp://cp.example.com",
        "cp.example.com",
        "https://",
        "https://user:secret@cp.example.com",
        "https://token@cp.example.com",
        "https://cp.example.com/?token=x",
        "https://cp.example.com/#x",
        "https://cp.example.com:99999",
        "https://cp.example.com:x",
        "https://cp.exa mple.com",
        "https://cp.example.com\n/x",
        "wss://cp.example.com",
        "",
        None,
    ],
}


def _cases(table: dict[str, Any]) -> list[tuple[Any, bool]]:
    return [(value, True) for value in table["valid"]] + [(value, False) for value in table["invalid"]]


@pytest.mark.parametrize("rule", sorted(RULE_TABLE))
def test_every_rule_is_tabled_and_the_package_reads_the_collections_file(rule: str) -> None:
    assert set(RULE_TABLE) == set(contract.RULES)
    assert collection.RULES[rule] == contract.RULES[rule]
    assert Path(contract._source.__file__).resolve() == ROOT / "plugins" / "module_utils" / "_contract.py"


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [(rule, value, expected) for rule, table in RULE_TABLE.items() for value, expected in _cases(table)],
)
def test_rules_agree(rule: str, value: Any, expected: bool) -> None:
    assert contract.is_valid(rule, value) is expected
    assert collection.is_valid(rule, value) is expected
    if expected:
        assert contract.check(rule, value, "x") == value == collection.check(rule, value, "x")
    else:
        with pytest.raises(contract.ContractError, match=r"^setting_x must be .*, got "):
            contract.check(rule, value, "setting_x")
        with pytest.raises(collection.ContractError, match=r"^setting_x must be .*, got "):
            collection.check(rule, value, "setting_x")


@pytest.mark.parametrize(("value", "expected"), _cases(NAMES))
def test_names_in_every_layer(value: Any, expected: bool) -> None:
    """The agent's settings, the control plane's API and the signed hello apply the same rule."""
    layers: list[tuple[str, Any]] = [
        ("agent", lambda: agent_config._parse_name(value)),
        ("control plane path", lambda: web_common.PATH_PARAMS["cp"].validate(value, "cp")),
        ("control plane body", lambda: api_checkpoints.NAME.validate(value, "checkpoint")),
        ("hello", lambda: hello._check_name(value, "checkpoint")),
    ]
    for layer, call in layers:
        if expected:
            assert call() == value or call() is None, layer
        else:
            with pytest.raises((ValueError, cp_validation.ApiError)):
                call()


@pytest.mark.parametrize(("value", "expected"), _cases(CREDENTIAL_NAMES))
def test_credential_names_in_every_layer(value: Any, expected: bool) -> None:
    """Monitor specs, the control plane's declared names and the checkpoint's file agree."""
    from vantage.checks.credentials import CredentialError, CredentialStore

    spec = {"type": "postgres", "target": "db.example.com:5432", "credential": value}
    declared = {"credentials": [value]}
    store_data = {"credentials": {value: {"username": "u"}}} if isinstance(value, str) else None
    if expected:
        assert validate_spec(spec)["credential"] == value
        assert api_checkpoints.CREDENTIALS.validate(declared["credentials"], "credentials") == [value]
        assert store_data is not None and CredentialStore.from_mapping(store_data, "file").names() == {value}
    else:
        if value is not None:  # a null credential means "none" in a spec
            with pytest.raises(CheckSpecError):
                validate_spec(spec)
        with pytest.raises(cp_validation.ApiError):
            api_checkpoints.CREDENTIALS.validate(declared["credentials"], "credentials")
        if store_data is not None:
            with pytest.raises(CredentialError):
                CredentialStore.from_mapping(store_data, "file")


@pytest.mark.parametrize(("value", "expected"), list(URLS["valid"].items()) + [(v, None) for v in URLS["invalid"]])
def test_control_plane_url_policy(value: Any, expected: str | None) -> None:
    """One URL policy: https://, http:// only to loopback, no credentials, query or fragment."""
    if expected is not None:
        assert contract.control_plane_url(value) == expected
        assert collection.control_plane_url(value) == expected
        assert agent_config._parse_url(value) == expected
        return
    message = r"^control_plane_url must be an https:// URL without credentials, query or fragment"
    with pytest.raises(contract.ContractError, match=message):
        contract.control_plane_url(value)
    with pytest.raises(collection.ContractError, match=message):
        collection.control_plane_url(value)
    if isinstance(value, str):
        with pytest.raises(ValueError, match=r"^must be an https:// URL"):
            agent_config._parse_url(value)


@pytest.mark.parametrize(
    "value", ["https://user:s3cret@cp.example.com", "http://s3cret@cp.example.com/x", "https://u:s3cret@x@cp.example.com"]
)
def test_a_refused_url_never_shows_its_user_info(value: str) -> None:
    for module in (contract, collection):
        with pytest.raises(module.ContractError) as info:
            module.control_plane_url(value, "url")
        assert "s3cret" not in str(info.value) and "//***@" in str(info.value)


@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_host_layout_agrees(platform: str) -> None:
    ours = contract.host_layout("office", ["a", "b"], platform=platform)
    theirs = collection.host_layout("office", ["a", "b"], platform=platform)
    assert ours == theirs
    if platform == "linux":
        assert ours["trusted_keys"] == "/etc/vantage/checkpoints/office/trusted-keys.json"
        assert ours["release"] == "/var/lib/vantage/checkpoints/office/release.json"
        assert ours["instances"]["b"]["identity_key"] == "/etc/vantage/checkpoints/office/b/identity.pem"
        assert ours["instances"]["a"]["state_dir"] == "/var/lib/vantage/checkpoints/office/a"
    else:
        assert ours["ca"] == "C:\\ProgramData\\Vantage\\checkpoints\\office\\ca.pem"
        assert ours["instances"]["a"]["identity_key"] == "C:\\ProgramData\\Vantage\\checkpoints\\office\\a\\identity.pem"


def test_host_layout_refuses_bad_names_and_platforms() -> None:
    for module in (contract, collection):
        with pytest.raises(module.ContractError, match=r"^checkpoint must be"):
            module.host_layout("Office\n")
        with pytest.raises(module.ContractError, match=r"^instance must be"):
            module.host_layout("office", ["a/b"])
        with pytest.raises(module.ContractError, match=r"^platform must be one of linux, windows"):
            module.host_layout("office", platform="darwin")


def test_container_names_and_defaults_agree() -> None:
    assert collection.CONTAINER_DEFAULTS == contract.CONTAINER_DEFAULTS
    assert collection.container_name("cp", "a") == contract.container_name("cp", "a") == "vantage-cp-a"
    assert collection.default_network("cp") == contract.default_network("cp") == "vantage-cp"
    bridge = contract.bridge_name("vantage-cp")
    assert collection.bridge_name("vantage-cp") == bridge
    assert bridge.startswith("vtg-") and len(bridge) == 15
