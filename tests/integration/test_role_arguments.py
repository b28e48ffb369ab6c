"""Role arguments: validated before anything changes, with the contract's rules and words; each
default stated once.

The role runs use the real roles with ansible-playbook against localhost; argument validation and
the preflight happen before the first task that changes something, so nothing on this machine is
touched (every run below is made to fail in its preflight). The other tests read the roles'
defaults, argument specs and module documentation and compare them with ``vantage.contract``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vantage import contract

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())

CHECKPOINT_VARS = {
    "checkpoint_name": "office",
    "checkpoint_instances": ["a"],
    "checkpoint_control_plane_url": "https://cp.example.test",
    "checkpoint_api_token": "canary-token-value-0123456789abcdef",
    "checkpoint_trusted_key_ids": ["0123456789abcdef"],
    "checkpoint_image": "sha256:" + "0" * 64,
}
CONTROL_PLANE_VARS = {
    "control_plane_image": "sha256:" + "0" * 64,
    "control_plane_public_url": "https://cp.example.test",
    "control_plane_admin_token": "canary-admin-token-0123456789abcdef",
}
SECRETS = (CHECKPOINT_VARS["checkpoint_api_token"], CONTROL_PLANE_VARS["control_plane_admin_token"])


def run_role(tmp_path: Path, role: str, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: vantage.checkpoint.{role}\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_NOCOLOR="1")
    (ROOT / "build" / "collections" / "ansible_collections" / "vantage").mkdir(parents=True, exist_ok=True)
    link = ROOT / "build" / "collections" / "ansible_collections" / "vantage" / "checkpoint"
    if not link.exists():
        link.symlink_to(ROOT)
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
         "-e", f"@{extra}", str(playbook)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


@pytest.mark.parametrize("missing", ["checkpoint_control_plane_url", "checkpoint_api_token", "checkpoint_image"])
def test_checkpoint_role_names_a_missing_variable(tmp_path: Path, missing: str) -> None:
    variables = {k: v for k, v in CHECKPOINT_VARS.items() if k != missing}
    result = run_role(tmp_path, "checkpoint", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "missing required arguments" in output and missing in output
    assert "Validating arguments against arg spec" in output
    assert CHECKPOINT_VARS["checkpoint_api_token"] not in output


@pytest.mark.parametrize("missing", ["control_plane_public_url", "control_plane_admin_token"])
def test_control_plane_role_names_a_missing_variable(tmp_path: Path, missing: str) -> None:
    variables = {k: v for k, v in CONTROL_PLANE_VARS.items() if k != missing}
    result = run_role(tmp_path, "control_plane", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "missing required arguments" in output and missing in output
    assert CONTROL_PLANE_VARS["control_plane_admin_token"] not in output


def test_checkpoint_role_names_every_bad_value_in_the_contracts_words(tmp_path: Path) -> None:
    variables = dict(CHECKPOINT_VARS, checkpoint_image="vantage/checkpoint:latest", checkpoint_instances=["a", "A_b"],
                     checkpoint_trusted_key_ids=["0123456789ABCDEF"], checkpoint_name="office\n")
    result = run_role(tmp_path, "checkpoint", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for rule, what, value in [
        ("pinned_image", "checkpoint_image", "'vantage/checkpoint:latest'"),
        ("name", "checkpoint_instances[1]", "'A_b'"),
        ("key_id", "checkpoint_trusted_key_ids[0]", "'0123456789ABCDEF'"),
        ("name", "checkpoint_name", "'office\\n'"),
    ]:
        assert f"{what} must be {contract.RULES[rule][1]}, got {value}" in output
    assert "changed=0" in output


# For each role: the variable holding the control-plane URL, and variables that make its preflight
# fail for another reason (so that a URL the policy accepts still stops the run before any change).
URL_SETTINGS: dict[str, tuple[str, dict[str, object], dict[str, object], str]] = {
    "checkpoint": ("checkpoint_control_plane_url", CHECKPOINT_VARS, {"checkpoint_image": "x:1"}, "checkpoint_image must be"),
    "control_plane": ("control_plane_public_url", CONTROL_PLANE_VARS, {"control_plane_image": "x:1"},
                      "control_plane_image must be"),
    "health": ("health_control_plane_url", CHECKPOINT_VARS, {"health_min_healthy": -1}, "health_min_healthy must be 0"),
    "egress_firewall": ("egress_firewall_control_plane_url", CHECKPOINT_VARS,
                        {"egress_firewall_revocation_endpoints": ["crl.example.test"]},
                        "egress_firewall_revocation_endpoints entries must be URLs or host:port"),
    "auto_update": ("auto_update_control_plane_url", CHECKPOINT_VARS, {"auto_update_channel": ".x"},
                    "auto_update_channel must be"),
}


def test_every_role_that_takes_a_control_plane_url_is_tabled() -> None:
    takes_url = {
        role for role in ROLES
        if re.search(r"_(control_plane|public)_url:", (ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    }
    assert takes_url == set(URL_SETTINGS)


@pytest.mark.parametrize("role", sorted(URL_SETTINGS))
@pytest.mark.parametrize(
    ("url", "refused"),
    [("http://cp.example.test", True), ("https://token@cp.example.test/", True), ("http://127.0.0.1:8443/", False)],
)
def test_every_role_applies_the_one_url_policy_before_changing_anything(
    tmp_path: Path, role: str, url: str, refused: bool
) -> None:
    setting, base, other_error, other_message = URL_SETTINGS[role]
    result = run_role(tmp_path, role, dict(base, **{setting: url}, **({} if refused else other_error)))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "changed=0" in output
    sentence = f"must be {contract.URL_RULE}, got "
    if refused:
        assert re.search(rf"{setting}( \(default: [a-z_]+\))? {re.escape(sentence)}", output)
        assert "token@" not in output
    else:
        assert sentence not in output
        assert other_message in output
    for secret in SECRETS:
        assert secret not in output


# ----------------------------------------------------------------------------- defaults, stated once


def _defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


def _spec_options(role: str) -> dict[str, dict[str, Any]]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return dict(specs["main"].get("options") or {})


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_and_argument_spec_state_the_same_defaults(role: str) -> None:
    """Every default is an option; a default the spec states is the role's; the spec states no other.

    Ansible applies ``defaults/main.yml`` only: a default in the spec alone would be documented but
    never set. A default that is a template (another role's variable) may be left to the description.
    """
    defaults, options = _defaults(role), _spec_options(role)
    assert set(defaults) <= set(options), f"defaults without an option: {sorted(set(defaults) - set(options))}"
    for name, option in options.items():
        if "default" in option:
            assert name in defaults, f"{name}: the spec states a default that defaults/main.yml does not set"
            assert option["default"] == defaults[name], name
        elif name in defaults:
            assert "{{" in str(defaults[name]), f"{name}: default {defaults[name]!r} is not stated in the argument spec"
            assert not option.get("required"), name


#: checkpoint role variable -> CONTAINER_DEFAULTS key
CHECKPOINT_CONTAINER_SETTINGS = {
    "checkpoint_user": "user",
    "checkpoint_memory": "memory",
    "checkpoint_cpus": "cpus",
    "checkpoint_pids_limit": "pids_limit",
    "checkpoint_health_timeout": "health_timeout",
    "checkpoint_healthcheck_interval": "healthcheck_interval",
}


def test_the_checkpoint_role_defaults_are_the_contracts() -> None:
    defaults = _defaults("checkpoint")
    assert set(CHECKPOINT_CONTAINER_SETTINGS.values()) == set(contract.CONTAINER_DEFAULTS)
    for variable, key in CHECKPOINT_CONTAINER_SETTINGS.items():
        assert defaults[variable] == contract.CONTAINER_DEFAULTS[key], variable
    assert defaults["checkpoint_config_dir"] == contract.DEFAULT_DIRS["linux"]["config_dir"]
    assert defaults["checkpoint_state_dir"] == contract.DEFAULT_DIRS["linux"]["state_dir"]


def _module_options(module: str) -> dict[str, dict[str, Any]]:
    tree = ast.parse((ROOT / "plugins" / "modules" / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            assert isinstance(node.value, ast.Constant)
            return dict(yaml.safe_load(node.value.value)["options"])
    raise AssertionError(f"{module} has no DOCUMENTATION")


@pytest.mark.parametrize(
    ("option", "key"),
    [
        ("user", "user"),
        ("memory", "memory"),
        ("cpus", "cpus"),
        ("pids_limit", "pids_limit"),
        ("health_timeout", "health_timeout"),
        ("healthcheck.interval", "healthcheck_interval"),
    ],
)
def test_checkpoint_container_documents_the_contracts_defaults(option: str, key: str) -> None:
    options = _module_options("checkpoint_container")
    parent, _, child = option.partition(".")
    documented = options[parent]["suboptions"][child] if child else options[parent]
    assert documented.get("default") == contract.CONTAINER_DEFAULTS[key]


# ----------------------------------------------------------------------------- no restated rules

#: roles and playbooks read rules, paths and names from the contract's filters and tests. The update
#: command in roles/auto_update/files keeps its own copy of the rules until it moves into the
#: vantage package (which imports vantage.contract).
COLLECTION_FILES = sorted(
    p for p in [*ROOT.glob("roles/*/*/*"), *ROOT.glob("playbooks/**/*.yml"), ROOT / "plugins/module_utils/_control_plane.py"]
    if p.is_file() and "roles/auto_update/files" not in p.as_posix()
)
LAYOUT_FILES = [*contract.CONFIG_FILES.values(), *contract.STATE_FILES.values(), contract.IDENTITY_KEY_FILE]


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that are not comments, and not descriptions of an argument spec."""
    if path.name == "argument_specs.yml":
        return []
    return [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if not line.lstrip().startswith("#")]


def test_no_role_or_playbook_restates_a_rule() -> None:
    patterns = [pattern for pattern, _ in contract.RULES.values()]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in COLLECTION_FILES for n, line in _code_lines(path)
        if any(p in line for p in patterns) or "hash('sha256')" in line or "vtg-" in line or "match('^https://" in line
    ]
    assert found == []


def test_no_role_task_or_playbook_derives_a_layout_path() -> None:
    names = "|".join(re.escape(name) for name in LAYOUT_FILES)
    derived = re.compile(rf"[/'\"]({names})(?=['\"\s}}]|$)")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in COLLECTION_FILES if path.parent.name in ("tasks", "vars") or "playbooks" in path.relative_to(ROOT).parts
        for n, line in _code_lines(path)
        if derived.search(line)
    ]
    assert found == []
