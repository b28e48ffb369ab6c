"""AWX's validation rules for the objects in ``playbooks/awx/vars/objects.yml``, and AWX's way of
injecting a credential and answering a survey - so that the tests can check the objects and run
the job templates' playbooks the way AWX would, without an AWX.

The rules are AWX's own, restated here (see docs/awx.md for the list and where each comes from in
the AWX source): the credential type input and injector schemas and their extra checks
(``awx/main/fields.py``), the blocked environment variables (``awx/main/constants.py``), the kinds a
custom credential type may have and the schedule's RRULE checks (``awx/api/serializers.py``), the
survey specification checks (``awx/api/views/__init__.py``), the checks of a survey's answers
(``awx/main/models/mixins.py``) and the injection itself (``awx/main/models/credential.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from dateutil import rrule
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

OBJECTS = Path(__file__).resolve().parents[2] / "playbooks" / "awx" / "vars" / "objects.yml"
FIELD_ID = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")
FILE_KEY = re.compile(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$")
ENV_KEY = FIELD_ID
#: extra_vars keys, nested ones included: a variable name, where { and } are allowed for templating
EXTRA_VARS_KEY = re.compile(r"^[a-zA-Z_{}]+[a-zA-Z0-9_{}]*$")
FIELD_KEYS = {"id", "label", "type", "format", "choices", "help_text", "multiline", "secret", "ask_at_runtime", "default"}
STRING_ONLY = ("choices", "multiline", "format", "secret")
ENV_BLOCKLIST = {
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
    "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH",
}  # fmt: skip
SURVEY_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "textarea": (str,), "password": (str,), "multiplechoice": (str,), "multiselect": (str,),
    "integer": (int,), "float": (float, int),
}  # fmt: skip


# ----------------------------------------------------------------------------- credential types


def input_errors(inputs: Any) -> list[str]:
    """The ``inputs`` of a custom credential type."""
    if not isinstance(inputs, dict):
        return ["inputs must be an object"]
    errors = [f"inputs: unknown key {key!r}" for key in inputs if key not in ("fields", "required")]
    if "dependencies" in inputs:
        errors.append("inputs: 'dependencies' is not supported for custom credentials")
    required = inputs.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        errors.append("inputs.required must be a list of strings")
    fields = inputs.get("fields", [])
    if not isinstance(fields, list):
        return [*errors, "inputs.fields must be a list"]
    seen: set[str] = set()
    for index, field in enumerate(fields):
        where = f"inputs.fields[{index}]"
        if not isinstance(field, dict):
            errors.append(f"{where} must be an object")
            continue
        errors += [f"{where}: unknown key {key!r}" for key in field if key not in FIELD_KEYS]
        errors += [f"{where}: {key} is required" for key in ("id", "label") if key not in field]
        field_id, kind = field.get("id"), field.get("type", "string")
        if not isinstance(field_id, str) or not FIELD_ID.match(field_id):
            errors.append(f"{where}: {field_id!r} is an invalid variable name")
        elif field_id == "tower":
            errors.append(f'{where}: "tower" is a reserved field name')
        elif field_id in seen:
            errors.append(f"{where}: field IDs must be unique ({field_id})")
        seen.add(str(field_id))
        if not isinstance(field.get("label", ""), str) or not isinstance(field.get("help_text", ""), str):
            errors.append(f"{where}: label and help_text must be strings")
        if kind not in ("string", "boolean"):
            errors.append(f"{where}: type must be string or boolean, not {kind!r}")
        if "format" in field and field["format"] not in ("ssh_private_key", "url"):
            errors.append(f"{where}: format must be ssh_private_key or url")
        choices = field.get("choices")
        if choices is not None and (
            not isinstance(choices, list) or not choices or len(set(map(str, choices))) != len(choices)
            or not all(isinstance(c, str) for c in choices)
        ):  # fmt: skip
            errors.append(f"{where}: choices must be a non-empty list of unique strings")
        for key in ("multiline", "secret", "ask_at_runtime"):
            if key in field and not isinstance(field[key], bool):
                errors.append(f"{where}: {key} must be a boolean")
        if "default" in field and type(field["default"]) is not {"string": str, "boolean": bool}.get(kind, str):
            errors.append(f"{where}: default {field['default']!r} is not a {kind}")
        errors += [f"{where}: {key} not allowed for {kind} type ({field_id})" for key in STRING_ONLY
                   if key in field and kind != "string"]  # fmt: skip
    return errors


def _render_check(template: Any, namespace: dict[str, Any], where: str) -> list[str]:
    if not isinstance(template, str):
        return [f"{where} must be a string"]
    try:
        ImmutableSandboxedEnvironment(undefined=StrictUndefined).from_string(template).render(namespace)
    except UndefinedError as exc:
        return [f"{where} uses an undefined field ({exc})"]
    except SecurityError as exc:
        return [f"{where}: unsafe code ({exc})"]
    except TemplateSyntaxError as exc:
        return [f"{where}: template syntax error ({exc})"]
    return []


class _Unavailable:
    """``tower.filename`` without the file injector it needs: fails when rendered."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __str__(self) -> str:
        raise UndefinedError(self.message)


def injector_errors(injectors: Any, inputs: dict[str, Any]) -> list[str]:
    """The ``injectors`` of a custom credential type with these (valid) ``inputs``."""
    if not isinstance(injectors, dict):
        return ["injectors must be an object"]
    errors = [f"injectors: unknown key {key!r}" for key in injectors if key not in ("file", "env", "extra_vars")]
    files, env, extra = injectors.get("file", {}), injectors.get("env", {}), injectors.get("extra_vars", {})
    for name, kind in ((files, "file"), (env, "env"), (extra, "extra_vars")):
        if not isinstance(name, dict):
            errors.append(f"injectors.{kind} must be an object")
    if errors:
        return errors
    errors += [f"injectors.file: {key!r} is not template or template.<name>" for key in files if not FILE_KEY.match(key)]
    for key, value in env.items():
        if not ENV_KEY.match(key):
            errors.append(f"injectors.env: {key!r} is not an environment variable name")
        elif key.startswith("ANSIBLE_"):
            errors.append(f"injectors.env: {key} may affect Ansible configuration, so it is not allowed in credentials")
        elif key in ENV_BLOCKLIST:
            errors.append(f"injectors.env: {key} is not allowed in credentials")
        if not isinstance(value, str) or not value.isascii():
            errors.append(f"injectors.env.{key} must be an ASCII string")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str) or not EXTRA_VARS_KEY.match(key):
                    errors.append(f"injectors.{where}: key {key!r} is not a variable name (letters, digits, _, or a template)")
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")
        elif not isinstance(node, str):
            errors.append(f"injectors.{where} must be a string, a list or an object")

    walk(extra, "extra_vars")
    if errors:
        return errors

    # every template renders with the input fields defined (and tower.filename only with a file injector)
    namespace: dict[str, Any] = {str(f["id"]): "EXAMPLE" for f in inputs.get("fields", [])}
    tower: Any = type("Tower", (), {"filename": _Unavailable("define a file injector to reference tower.filename")})()
    names = [key for key in files if key.startswith("template")]
    if "template" in names:
        if len(names) > 1:
            return ["injectors.file: use the multi-file syntax (template.<name>) to inject several files"]
        tower.filename = "EXAMPLE_FILENAME"
    elif names:
        tower.filename = type("Files", (), {n.split(".", 1)[1]: "EXAMPLE_FILENAME" for n in names})()
    namespace["tower"] = tower

    def templates(node: Any, where: str) -> list[str]:
        if isinstance(node, dict):
            found = []
            for key, value in node.items():
                found += _render_check(key, namespace, f"{where} key {key!r}") + templates(value, f"{where}.{key}")
            return found
        if isinstance(node, list):
            return [e for index, value in enumerate(node) for e in templates(value, f"{where}[{index}]")]
        return _render_check(node, namespace, where)

    for key, value in [*files.items(), *env.items()]:
        errors += _render_check(value, namespace, f"injectors {key}")
    errors += templates(extra, "injectors.extra_vars")
    return errors


def credential_type_errors(credential_type: dict[str, Any]) -> list[str]:
    errors = []
    if credential_type.get("kind") not in ("cloud", "net"):
        errors.append(f"kind must be 'cloud' or 'net', not {credential_type.get('kind')!r}")
    inputs = credential_type.get("inputs", {})
    found = input_errors(inputs)
    errors += found
    if not found:  # AWX checks the injectors' templates only against valid inputs
        errors += injector_errors(credential_type.get("injectors", {}), inputs)
    return errors


def inject(credential_type: dict[str, Any], inputs: dict[str, Any], private_dir: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """What AWX gives a job for a credential of this type: ``(environment, extra variables)``.

    Inputs left empty are undefined (rendered as ""), each file template becomes a 0600 file under
    ``private_dir/env`` named by ``tower.filename``, keys and values of ``extra_vars`` are rendered.
    """
    environment = ImmutableSandboxedEnvironment()
    namespace: dict[str, Any] = {k: v for k, v in inputs.items() if isinstance(v, bool) or len(v)}
    tower: Any = type("Tower", (), {})()
    namespace["tower"] = tower
    (private_dir / "env").mkdir(parents=True, exist_ok=True)
    for label, template in credential_type["injectors"].get("file", {}).items():
        path = private_dir / "env" / f"credential-{label}"
        path.write_text(environment.from_string(template).render(**namespace))
        os.chmod(path, 0o600)
        if "." in label:
            if not hasattr(tower, "filename"):
                tower.filename = type("Files", (), {})()
            setattr(tower.filename, label.split(".", 1)[1], str(path))
        else:
            tower.filename = str(path)
    env = {k: environment.from_string(v).render(**namespace) for k, v in credential_type["injectors"].get("env", {}).items()}

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            return {build(k): build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v) for v in node]
        return environment.from_string(node).render(**namespace)

    return env, build(credential_type["injectors"].get("extra_vars", {}))


# ----------------------------------------------------------------------------- surveys and schedules


def survey_errors(survey: Any) -> list[str]:
    """A job template's survey specification, as AWX accepts it."""
    if not isinstance(survey, dict):
        return ["the survey must be an object"]
    errors = []
    for key, kind in (("name", str), ("description", str), ("spec", list)):
        if key not in survey:
            errors.append(f"field {key!r} is missing from survey spec")
        elif not isinstance(survey[key], kind):
            errors.append(f"expected {kind.__name__} for field {key!r}")
    if errors:
        return errors
    if not survey["spec"]:
        return ["'spec' doesn't contain any items"]
    variables: set[str] = set()
    for index, item in enumerate(survey["spec"]):
        if not isinstance(item, dict):
            errors.append(f"survey question {index} is not an object")
            continue
        missing = [key for key in ("type", "question_name", "variable", "required") if key not in item]
        if missing:
            errors.append(f"{missing} missing from survey question {index}")
            continue
        if not all(isinstance(item[key], str) for key in ("type", "question_name", "variable")):
            errors.append(f"type, question_name and variable of survey question {index} must be strings")
        if not isinstance(item["required"], bool):
            errors.append(f"'required' in survey question {index} must be a boolean")
        if item["variable"] in variables:
            errors.append(f"'variable' {item['variable']!r} duplicated in survey question {index}")
        variables.add(item["variable"])
        kind = item["type"]
        if kind not in SURVEY_TYPES:
            errors.append(f"{kind!r} in survey question {index} is not one of {', '.join(SURVEY_TYPES)}")
            continue
        default = item.get("default", "")
        if default != "" and (not isinstance(default, SURVEY_TYPES[kind]) or isinstance(default, bool)):
            errors.append(f"default {default!r} in survey question {index} is not a {kind}")
        for key in ("min", "max"):
            if item.get(key) is not None and (not isinstance(item[key], int) or isinstance(item[key], bool)):
                errors.append(f"the {key} limit in survey question {index} must be an integer")
        if kind in ("multiplechoice", "multiselect"):
            if "choices" not in item:
                errors.append(f"survey question {index} of type {kind} must specify choices")
                continue
            choices = item["choices"].splitlines() if isinstance(item["choices"], str) else item["choices"]
            defaults = default.splitlines() if isinstance(default, str) else default
            defaults = [d for d in defaults if str(d).strip()]
            if kind == "multiplechoice" and len(defaults) > 1:
                errors.append(f"survey question {index}: multiple choice (single select) can only have one default")
            if any(d not in choices for d in defaults):
                errors.append(f"survey question {index}: the default must be one of the choices")
    return errors


def answer_errors(survey: dict[str, Any], answers: dict[str, Any]) -> list[str]:
    """Answers (extra variables of a launch or a schedule's extra_data), as AWX checks them."""
    errors = []
    known = {item["variable"] for item in survey["spec"]}
    errors += [f"variable {name!r} is not a question of the survey" for name in answers if name not in known]
    for item in survey["spec"]:
        name, kind = item["variable"], item["type"]
        if name not in answers:
            if item["required"] and "default" not in item:
                errors.append(f"{name!r} value missing")
            continue
        value = answers[name]
        low, high = item.get("min"), item.get("max")
        if kind in ("text", "textarea", "password"):
            if not isinstance(value, str):
                errors.append(f"value {value!r} for {name!r} expected to be a string")
            elif (low not in ("", None) and len(value) < int(low)) or (high not in ("", None) and len(value) > int(high)):
                errors.append(f"{name!r}: length {len(value)} is outside {low}..{high}")
        elif kind in ("integer", "float"):
            numeric = (int,) if kind == "integer" else (int, float)
            if type(value) not in numeric:
                errors.append(f"value {value!r} for {name!r} expected to be {kind}")
            elif (low not in ("", None) and value < low) or (high not in ("", None) and value > high):
                errors.append(f"{name!r}: {value} is outside {low}..{high}")
        elif kind == "multiplechoice":
            choices = item["choices"].splitlines() if isinstance(item["choices"], str) else item["choices"]
            if value not in choices:
                errors.append(f"value {value!r} for {name!r} must be one of {choices}")
    return errors


def survey_answers(survey: dict[str, Any], **given: Any) -> dict[str, Any]:
    """The extra variables AWX passes for a launch: the given answers, the defaults for the rest."""
    answers = {item["variable"]: item["default"] for item in survey["spec"] if item.get("default", "") != ""}
    answers.update(given)
    return answers


def rrule_errors(value: str) -> list[str]:
    """A schedule's ``rrule``, as AWX accepts it."""
    errors = []
    starts = re.findall(r"DTSTART(?:;[^:]+)?:[0-9]+T[0-9]+Z?", value)
    if not starts:
        errors.append("a valid DTSTART is required (DTSTART:YYYYMMDDTHHMMSSZ)")
    if re.search(r"DTSTART:[0-9]+T[0-9]+ ", value):
        errors.append("DTSTART cannot be a naive datetime: give ;TZID= or a Z suffix")
    if len(starts) > 1:
        errors.append("only one DTSTART is supported")
    if "rrule:" not in value.lower():
        errors.append("one or more RRULE is required")
    for word in ("exdate:", "rdate:"):
        if word in value.lower():
            errors.append(f"{word[:-1].upper()} is not allowed")
    for rule in re.findall(r"RULE:\S*", value):
        if "interval" not in rule.lower():
            errors.append(f"INTERVAL is required in {rule}")
        elif "secondly" in rule.lower():
            errors.append(f"SECONDLY is not supported: {rule}")
        if re.match(r".*?BYDAY[:=][0-9]+[a-zA-Z]{2}", rule):
            errors.append(f"BYDAY with a numeric prefix is not supported: {rule}")
        if "COUNT" in rule and "UNTIL" in rule:
            errors.append(f"an RRULE may not have both COUNT and UNTIL: {rule}")
        count = re.search(r"COUNT=([0-9]+)", rule)
        if count and int(count.group(1)) > 999:
            errors.append(f"COUNT > 999 is not supported: {rule}")
    try:
        rrule.rrulestr(value.replace(" ", "\n"), forceset=True)
    except (ValueError, TypeError) as exc:
        errors.append(f"the rrule does not parse: {exc}")
    return errors


# ----------------------------------------------------------------------------- the objects


class AnsibleLoader(yaml.SafeLoader):
    """YAML as Ansible reads it here: ``!unsafe`` marks a string Ansible must not template."""


AnsibleLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def objects() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(OBJECTS.read_text(), Loader=AnsibleLoader)  # a SafeLoader
    return data


def credential_type(name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in objects()["vantage_awx_credential_types"] if t["name"] == name)
    return found


def job_template(name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in objects()["vantage_awx_job_templates"] if t["name"] == name)
    return found
