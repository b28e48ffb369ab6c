"""Every boolean and number of every role works when it arrives as a string, as AWX surveys and
``-e key=value`` pass it.

The options come from each role's ``meta/argument_specs.yml`` (suboptions included), so a new one
is covered the day it is added. For each option the role runs twice more than with its defaults:
once with a non-default value as a YAML/JSON native (``false``, ``30``) and once with the same
value as a string (``"false"``, ``"30"``). What the role sends to the host must be identical in
both runs - every module call with its arguments and every file it writes (``daemon.json``, the
egress policy, unit files, configuration) - and must differ from the defaults' run, so the
option visibly reached the host (an option that only the role's Windows files use cannot show
here: the recorded host is Linux, and Windows tasks run PowerShell modules). A final run per role
passes all of them at once as strings in an extra-vars file, exactly as AWX writes a job's survey
answers, and checks the rendered results.

The real ``ansible-playbook`` runs the real roles on the controller; only the modules that would
run on the managed host are recorded instead of run (``module_recorder.py``, the host's Python
for these runs), so nothing on this machine changes. Real hosts run the roles in the Molecule
scenarios and in the execution-environment run of ``site.yml`` with survey-style strings
(``test_execution_environment.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from module_recorder import ROLE_VARS, Recorder

TOP = Path(__file__).resolve().parents[2]
#: non-default values where default + 2 would be refused or show nothing (the recorded schedule
#: leaves three days between runs: 2 days refuses it, as the preflight must)
VALUES: dict[str, Any] = {
    "auto_update_max_interval_days": 2,
    "health_min_healthy": 1,
}
#: the values of the all-strings run where VALUES would stop the role early
AWX_VALUES: dict[str, Any] = {"auto_update_max_interval_days": 5}
#: options that only steer the controller: a string must work as the number does (the string
#: run must equal the native one), but nothing different reaches the host
CONTROLLER_ONLY = {
    "control_plane_wait_timeout": "how long the controller polls the container's health (retries)",
}
def typed_options(role: str) -> dict[str, tuple[str, Any]]:
    """``{option path: (type, default)}`` of every bool, int and float option of the role."""
    spec = yaml.safe_load((TOP / "roles" / role / "meta" / "argument_specs.yml").read_text())
    found: dict[str, tuple[str, Any]] = {}

    def walk(options: dict[str, Any], prefix: str) -> None:
        for name, option in options.items():
            if option.get("type") in ("bool", "int", "float"):
                found[prefix + name] = (option["type"], option.get("default"))
            walk(option.get("options") or {}, f"{prefix}{name}.")

    walk(spec["argument_specs"]["main"]["options"], "")
    return found


def windows_only(role: str, name: str) -> bool:
    """Whether only the role's Windows files use the option (the recorded host is Linux: those
    tasks run as PowerShell modules, which the recorder cannot stand in for)."""
    users = [
        path for folder in ("tasks", "templates", "vars", "handlers")
        for path in (TOP / "roles" / role / folder).rglob("*")
        if path.is_file() and re.search(rf"\b{re.escape(name)}\b", path.read_text())
    ]  # fmt: skip
    return bool(users) and all("windows" in str(path.relative_to(TOP / "roles" / role)).lower() for path in users)


def non_default(path: str, kind: str, default: Any) -> Any:
    if path in VALUES:
        return VALUES[path]
    if kind == "bool":
        # a templated default ("{{ checkpoint_validate_certs | default(true) }}") is true here
        return not (default if isinstance(default, bool) else True)
    if kind == "int":
        return int(default or 0) + 2
    return float(default or 0) + 0.5


def as_awx_string(value: Any) -> str:
    """How a survey answer or ``-e key=value`` arrives."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def nested(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


def first_difference(left: list[Any], right: list[Any]) -> str:
    """Where two recordings part: the call and the text around the first differing character."""
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            x, y = json.dumps(a), json.dumps(b)
            if x[: len(y)] != y[: len(x)]:
                at = next(i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q)
            else:
                at = min(len(x), len(y))
            around = slice(max(0, at - 200), at + 200)
            return f"call {index} ({a['module']}):\n  native: ...{x[around]}...\n  string: ...{y[around]}..."
    return f"{len(left)} calls with the native value, {len(right)} with the string"


def calls(records: list[Any], module: str, **match: Any) -> list[dict[str, Any]]:
    """The arguments of the recorded calls of ``module`` whose arguments have the given values."""
    return [
        r["args"] for r in records
        if r["module"].endswith("." + module) and all(r["args"].get(k) == v for k, v in match.items())
    ]  # fmt: skip


def written(records: list[Any], dest: str) -> str:
    (args,) = [a for a in calls(records, "copy") if a["dest"] == dest]
    content: str = args["content"]
    return content


def check_docker_host(awx: list[Any], defaults: list[Any]) -> None:
    daemon = json.loads(written(awx, "/etc/docker/daemon.json"))
    assert daemon["live-restore"] is False and daemon["no-new-privileges"] is False
    assert daemon["userland-proxy"] is False and daemon["log-opts"]["max-file"] == "5"
    assert json.loads(written(defaults, "/etc/docker/daemon.json"))["live-restore"] is True
    (service,) = calls(awx, "systemd_service", name="docker", state="started")
    assert service["enabled"] is False


def check_egress_firewall(awx: list[Any], defaults: list[Any]) -> None:
    (applied,) = calls(awx, "egress_rules")
    assert [rule["name"] for rule in applied["rules"]] == ["control-plane"]
    assert applied["host_timeout"] == 3602
    policy = json.loads(written(awx, "/etc/vantage/egress/policy.json"))
    assert policy["host_timeout"] == 3602 and [rule["name"] for rule in policy["rules"]] == ["control-plane"]
    (by_default,) = calls(defaults, "egress_rules")
    registry = next(rule for rule in by_default["rules"] if rule["name"] == "registry")
    assert registry["hosts"] == ["registry.example.test"] and registry["ports"] == [5000]


def check_checkpoint(awx: list[Any], defaults: list[Any]) -> None:
    (container,) = calls(awx, "checkpoint_container")
    assert container["cpus"] == 1.5 and container["pids_limit"] == 258 and container["health_timeout"] == 122
    assert container["healthcheck"] == {"interval": 7, "start_period": 21}
    assert {k: v for k, v in container["env"].items() if k.startswith("VANTAGE_DP_")} == {
        "VANTAGE_DP_STRIP_CONTENT": "true", "VANTAGE_DP_STRIP_HEADERS": "true", "VANTAGE_DP_STRIP_IPS": "true",
    }  # fmt: skip
    assert [a["validate_certs"] for a in calls(awx, "uri") + calls(awx, "checkpoint_enrollment")] == [False] * 3
    assert calls(awx, "slurp") == [] and len(calls(defaults, "slurp")) == 1  # the installed release is not read


def check_auto_update(awx: list[Any], defaults: list[Any]) -> None:
    conf = written(awx, "/etc/vantage/checkpoints/office/update.conf")
    assert "\nvalidate_certs = false\n" in conf
    assert "\nhealth_timeout = 182\n" in conf and "\ngate_timeout = 302\n" in conf
    unit = written(awx, "/etc/systemd/system/vantage-checkpoint-update@.service")
    assert "\nTimeoutStartSec=3264\n" in unit  # (302 + 2 * 182) * 2 instances * 2 + 600
    (timer,) = calls(awx, "systemd_service", name="vantage-checkpoint-update@office.timer")
    assert timer["enabled"] is False and timer["state"] == "stopped"
    assert calls(awx, "apt", name="unattended-upgrades") == []  # auto_update_os_updates: "false"
    assert len(calls(defaults, "apt", name="unattended-upgrades")) == 1


def check_health(awx: list[Any], defaults: list[Any]) -> None:
    (check,) = calls(awx, "checkpoint_health")
    assert check["wait"] is False and check["local_engine"] is False and check["validate_certs"] is False
    assert check["wait_timeout"] == 122 and check["min_healthy"] == 1
    assert check["poll_interval"] == 3.5 and check["max_clock_offset"] == 30.5

    def failed(records: list[Any]) -> bool:
        return any(r["module"] == "ansible.builtin.ping" and r["args"]["data"].startswith("failed:") for r in records)

    # the recorded checkpoint is unhealthy: health_fail "false" reports it without failing the run
    assert not failed(awx) and failed(defaults)


def check_control_plane(awx: list[Any], defaults: list[Any]) -> None:
    (container,) = calls(awx, "docker_container", name="vantage-control-plane", command=["control-plane", "serve"])
    assert container["cpus"] == 1.5 and container["pids_limit"] == 258
    assert container["published_ports"] == ["0.0.0.0:8445:8443"]
    assert container["env"]["VANTAGE_HEARTBEAT_INTERVAL"] == "17"
    assert container["env"]["VANTAGE_UNAVAILABLE_GRACE"] == "122"
    assert container["log_options"]["max-file"] == "5"
    (server_cert,) = calls(awx, "x509_certificate", provider="ownca")
    assert server_cert["ownca_not_after"] == "+827d"


#: what the all-strings run must have rendered, per role (the examples a reviewer checks first)
CHECKS = {
    "docker_host": check_docker_host,
    "egress_firewall": check_egress_firewall,
    "checkpoint": check_checkpoint,
    "auto_update": check_auto_update,
    "health": check_health,
    "control_plane": check_control_plane,
}


def test_every_role_is_covered() -> None:
    roles = sorted(p.name for p in (TOP / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
    assert sorted(ROLE_VARS) == sorted(CHECKS) == roles


@pytest.mark.parametrize("role", sorted(CHECKS))
def test_numbers_and_booleans_given_as_strings(tmp_path: Path, role: str) -> None:
    options = typed_options(role)
    assert options, f"{role} has no bool/int/float option: nothing to test"
    base = ROLE_VARS[role]
    variants: dict[str, dict[str, Any]] = {"defaults": base}
    all_native: dict[str, Any] = dict(base)
    all_strings: dict[str, Any] = dict(base)
    for path, (kind, default) in options.items():
        value = non_default(path, kind, default)
        variants[f"{path} native"] = {**base, **nested(path, value)}
        variants[f"{path} string"] = {**base, **nested(path, as_awx_string(value))}
        value = AWX_VALUES.get(path, value)
        for target, given in ((all_native, value), (all_strings, as_awx_string(value))):
            head, _, rest = path.partition(".")
            target[head] = {**target.get(head, {}), rest: given} if rest else given
    variants["all native"] = all_native
    recorder = Recorder(tmp_path, role)
    records = recorder.run(variants)

    # each option alone: the string reaches the host exactly as the number or boolean does
    unconverted = [
        f"{path}: {first_difference(records[f'{path} native'], records[f'{path} string'])}"
        for path in options
        if records[f"{path} native"] != records[f"{path} string"]
    ]
    assert not unconverted, "given as strings, these options change what reaches the host:\n" + "\n".join(unconverted)
    no_effect = [
        path for path in options
        if records[f"{path} native"] == records["defaults"] and path not in CONTROLLER_ONLY
        and not windows_only(role, path.split(".")[0])
    ]  # fmt: skip
    assert not no_effect, f"these options changed nothing that reaches the host, so the test proves nothing: {no_effect}"

    # all of them at once, as strings in an extra-vars file (the way AWX passes survey answers)
    awx = recorder.run({"awx": {}}, extra_vars=all_strings)["awx"]
    assert awx == records["all native"], first_difference(records["all native"], awx)
    CHECKS[role](awx, records["defaults"])
