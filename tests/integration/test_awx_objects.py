"""The AWX objects of ``playbooks/awx/`` pass AWX's own validation rules (``awx_rules.py``), and
what their credentials inject is what the roles expect.

AWX cannot run here: the objects are checked with AWX's rules, the rules are shown to refuse what
AWX refuses, and a check credential injected the AWX way is run through the checkpoint role. The
job templates' playbooks run with survey answers and injected credentials in the execution
environment (``test_execution_environment.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from awx_rules import (
    answer_errors,
    credential_type,
    credential_type_errors,
    inject,
    job_template,
    objects,
    rrule_errors,
    survey_answers,
    survey_errors,
)
from module_recorder import CHECKPOINT_VARS, Recorder

TOP = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["Vantage control plane", "Vantage check credential"])
def test_credential_types_pass_awx_validation(name: str) -> None:
    assert credential_type_errors(credential_type(name)) == []


def test_every_injected_token_has_the_least_scope() -> None:
    injected = credential_type("Vantage control plane")["injectors"]
    assert injected["extra_vars"]["checkpoint_api_token"] == "{{ enroll_token }}"  # enrolls, stored nowhere
    for stored_or_read in ("health_api_token", "auto_update_api_token"):
        assert injected["extra_vars"][stored_or_read] == "{{ read_token }}"
    assert injected["env"]["VANTAGE_CONTROL_PLANE_TOKEN"] == "{{ read_token }}"  # the inventory plugin
    uses_admin = [key for key, value in injected["extra_vars"].items() if "admin_token" in value]
    assert uses_admin == ["control_plane_admin_token"]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda t: t["injectors"]["extra_vars"]["checkpoint_credentials"].update({"mail-probe": {"username": "x"}}),
         "key 'mail-probe' is not a variable name"),
        (lambda t: t["injectors"]["env"].update({"ANSIBLE_CONFIG": "/tmp/x"}), "ANSIBLE_CONFIG may affect Ansible"),
        (lambda t: t["injectors"]["env"].update({"PATH": "/tmp"}), "PATH is not allowed"),
        (lambda t: t["injectors"]["env"].update({"X": "{{ no_such_field }}"}), "uses an undefined field"),
        (lambda t: t["injectors"]["env"].update({"X": "{{ tower.filename }}"}), "define a file injector"),
        (lambda t: t["inputs"]["fields"].append({"id": "username", "label": "again"}), "field IDs must be unique"),
        (lambda t: t["inputs"]["fields"].append({"id": "tower", "label": "x"}), '"tower" is a reserved field name'),
        (lambda t: t["inputs"]["fields"].append({"id": "x", "label": "x", "type": "boolean", "secret": True}),
         "secret not allowed for boolean type"),
        (lambda t: t.update(kind="ssh"), "kind must be 'cloud' or 'net'"),
    ],
)  # fmt: skip
def test_the_rules_refuse_what_awx_refuses(change: Any, refusal: str) -> None:
    broken = credential_type("Vantage check credential")
    broken["injectors"].setdefault("env", {})
    change(broken)
    assert any(refusal in error for error in credential_type_errors(broken)), credential_type_errors(broken)


def test_the_credential_type_example_in_the_checks_docs_is_valid() -> None:
    text = (TOP / "docs" / "checks.md").read_text()
    block = re.search(r"```yaml\n# credential type - input configuration\n(.*?)```", text, re.DOTALL)
    assert block, "docs/checks.md no longer has the AWX credential type example"
    inputs_part, injectors_part = block.group(1).split("# injector configuration\n")
    example = {"kind": "cloud", "inputs": yaml.safe_load(inputs_part), "injectors": yaml.safe_load(injectors_part)}
    assert credential_type_errors(example) == []


def test_job_templates_surveys_pass_awx_validation() -> None:
    templates = objects()["vantage_awx_job_templates"]
    assert [t["name"] for t in templates] == ["Vantage deploy", "Vantage verify", "Vantage update"]
    for template in templates:
        assert (TOP / template["playbook"]).is_file(), template["playbook"]
        assert survey_errors(template["survey"]) == [], template["name"]
        # the defaults are valid answers, as AWX passes them when nobody changes them
        assert answer_errors(template["survey"], survey_answers(template["survey"])) == [], template["name"]


def test_survey_variables_are_variables_the_playbooks_use() -> None:
    specs = " ".join(p.read_text() for p in (TOP / "roles").rglob("argument_specs.yml"))
    plays = " ".join(p.read_text() for p in (TOP / "playbooks").glob("*.yml"))
    for template in objects()["vantage_awx_job_templates"]:
        for question in template["survey"]["spec"]:
            name = question["variable"]
            assert re.search(rf"^\s+{name}:$", specs, re.MULTILINE) or name in plays, name


def test_the_survey_rules_refuse_what_awx_refuses() -> None:
    survey = job_template("Vantage update")["survey"]
    assert answer_errors(survey, {"update_serial": "2"}) == ["value '2' for 'update_serial' expected to be integer"]
    assert answer_errors(survey, {"update_retry_failed": "yes"}) == [
        "value 'yes' for 'update_retry_failed' must be one of ['true', 'false']"
    ]
    assert answer_errors(survey, {"surprise": 1}) == ["variable 'surprise' is not a question of the survey"]
    broken = {**survey, "spec": [*survey["spec"], {"type": "integer", "question_name": "x", "variable": "update_serial",
                                                   "required": True, "default": "1"}]}  # fmt: skip
    assert any("duplicated" in e for e in survey_errors(broken)) and any("is not a integer" in e for e in survey_errors(broken))


def test_the_verify_schedule_is_valid() -> None:
    (schedule,) = objects()["vantage_awx_schedules"]
    assert schedule["job_template"] == "Vantage verify"
    assert rrule_errors(schedule["rrule"]) == []
    assert answer_errors(job_template("Vantage verify")["survey"], schedule["extra_data"]) == []
    assert rrule_errors("DTSTART:20250101T000000 RRULE:FREQ=HOURLY") == [
        "DTSTART cannot be a naive datetime: give ;TZID= or a Z suffix",
        "INTERVAL is required in RULE:FREQ=HOURLY",
    ]


def test_the_configure_playbook_creates_every_object() -> None:
    text = (TOP / "playbooks" / "awx" / "configure.yml").read_text()
    for module, listing in (("credential_type", "vantage_awx_credential_types"),
                            ("job_template", "vantage_awx_job_templates"), ("schedule", "vantage_awx_schedules")):  # fmt: skip
        assert re.search(rf"awx\.awx\.{module}:.*?loop: \"{{{{ {listing} }}}}\"", text, re.DOTALL), module
    assert "source_path: inventories/awx/control_plane.yml" in text
    assert (TOP / "inventories" / "awx" / "control_plane.yml").is_file()


def test_control_plane_credential_injection(tmp_path: Path) -> None:
    inputs = {"control_plane_url": "https://cp.example.test", "admin_token": "adm", "enroll_token": "enr",
              "read_token": "rd", "ca_cert": "-----BEGIN CERTIFICATE-----\n"}  # fmt: skip
    env, extra = inject(credential_type("Vantage control plane"), inputs, tmp_path)
    assert env["VANTAGE_CONTROL_PLANE_URL"] == "https://cp.example.test" and env["VANTAGE_CONTROL_PLANE_TOKEN"] == "rd"
    assert Path(env["VANTAGE_CONTROL_PLANE_CA_PATH"]).read_text() == inputs["ca_cert"]
    assert extra == {"checkpoint_control_plane_url": "https://cp.example.test", "control_plane_admin_token": "adm",
                     "checkpoint_api_token": "enr", "health_api_token": "rd", "auto_update_api_token": "rd"}  # fmt: skip
    # without a CA the file is empty, which the inventory plugin takes as the system trust store
    env, _ = inject(credential_type("Vantage control plane"), {**inputs, "ca_cert": ""}, tmp_path / "no-ca")
    assert Path(env["VANTAGE_CONTROL_PLANE_CA_PATH"]).read_text() == ""


def test_a_check_credential_reaches_the_checkpoint_credentials_file(tmp_path: Path) -> None:
    """AWX injects empty strings for the inputs left empty; the checkpoint role leaves them out."""
    secret = "canary-mail-password-5d1f"
    _, extra = inject(credential_type("Vantage check credential"),
                      {"credential_name": "mail-probe", "username": "probe@example.test", "password": secret}, tmp_path)  # fmt: skip
    assert extra == {"checkpoint_credentials": {"mail-probe": {
        "username": "probe@example.test", "password": secret, "private_key": "", "passphrase": ""}}}  # fmt: skip
    (tmp_path / "run").mkdir()
    recorder = Recorder(tmp_path / "run", "checkpoint")
    records = recorder.run({"deploy": CHECKPOINT_VARS}, extra_vars=extra)["deploy"]
    (written,) = [r["args"] for r in records if r["args"].get("dest", "").endswith("/credentials.json")]
    assert yaml.safe_load(written["content"]) == {
        "credentials": {"mail-probe": {"password": secret, "username": "probe@example.test"}}
    }
    assert written["mode"] == "0600"
    (enrolled, *_) = [r["args"] for r in records if r["module"].endswith("checkpoint_enrollment")]
    assert enrolled["credentials"] == ["mail-probe"]
