"""Credentials for checks: the secrets file, lookup, redaction, the agent setting, the control plane's names."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.agents import Api, RunningServer, make_settings, start_server

from vantage.agent.config import ConfigError, load_config
from vantage.checks import CheckOptions, run_check, validate_spec
from vantage.checks.credentials import Credential, CredentialError, CredentialStore
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import LOADED, check_type

CANARY = "Canary-c0ffee-7d1e\"q'\\"
KEY_CANARY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABD\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def store() -> CredentialStore:
    return CredentialStore.from_mapping(
        {
            "credentials": {
                "mail": {"username": "probe", "password": CANARY},
                "sftp": {"username": "probe", "private_key": KEY_CANARY, "passphrase": "pass-phrase-canary"},
            }
        }
    )


def test_load_file_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": {"mail": {"username": "probe", "password": CANARY}}}))
    loaded = CredentialStore.load(path)
    assert loaded.names() == frozenset({"mail"})
    cred = loaded.get("mail")
    assert cred == Credential(name="mail", username="probe", password=CANARY)
    assert CANARY not in repr(cred) and CANARY not in str(cred) and CANARY not in repr(loaded)
    assert "password" in repr(cred)
    with pytest.raises(CheckFailure, match=r"unknown credential 'nope'.*known: mail"):
        loaded.get("nope")
    assert CredentialStore.empty().names() == frozenset()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"credentials": {}, "extra": 1}, "unknown top-level key 'extra'"),
        ({"credentials": {"bad name": {"password": "x"}}}, "name 'bad name' is invalid"),
        ({"credentials": {"a": {"pasword": CANARY}}}, "unknown field 'pasword'"),
        ({"credentials": {"a": {"password": 5}}}, "field 'password' must be a non-empty string"),
        ({"credentials": {"a": {}}}, "has no fields"),
    ],
)
def test_invalid_files_name_the_entry_never_the_value(data: Any, message: str) -> None:
    with pytest.raises(CredentialError, match=message) as info:
        CredentialStore.from_mapping(data)
    assert CANARY not in str(info.value)


def test_json_syntax_error_does_not_quote_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"credentials": {"a": {"password": "' + CANARY + '" oops}}}')
    with pytest.raises(CredentialError, match="not valid JSON \\(line 1") as info:
        CredentialStore.load(path)
    assert "Canary" not in str(info.value)
    with pytest.raises(CredentialError, match="cannot read"):
        CredentialStore.load(tmp_path / "missing.json")


def test_redact_covers_encodings_and_nested_values() -> None:
    s = store()
    plain = base64.b64encode(f"\0probe\0{CANARY}".encode()).decode()
    basic = base64.b64encode(f"probe:{CANARY}".encode()).decode()
    key_line = KEY_CANARY.splitlines()[1]
    text = f"a {CANARY} b {CANARY!r} c {plain} d {basic} e {key_line} f pass-phrase-canary g"
    redacted = s.redact(text)
    assert "Canary" not in redacted and key_line not in redacted and "pass-phrase" not in redacted
    assert redacted.startswith("a *** b ")
    nested = s.redact_value({"x": [CANARY, {CANARY: b"pass-phrase-canary"}], "n": 1})
    assert "Canary" not in json.dumps(nested) and "pass-phrase" not in json.dumps(nested)
    assert nested["n"] == 1
    assert CredentialStore.empty().redact(CANARY) == CANARY


def test_require_names_missing_fields() -> None:
    cred = store().get("sftp")
    cred.require("username", "private_key")
    with pytest.raises(CheckFailure, match="credential 'sftp' has no password, which SMTP AUTH needs"):
        cred.require("password", purpose="SMTP AUTH")


async def test_run_check_redacts_error_and_details_even_from_a_buggy_check(monkeypatch: pytest.MonkeyPatch) -> None:
    async def leaky(spec: Any, options: CheckOptions, probe: Probe) -> None:
        cred = options.credentials.get("mail")
        probe.details["banner"] = f"server said {cred.password}"
        probe.warnings.append(f"warning {cred.password}")
        raise CheckFailure(f"535 bad password {cred.password}")

    monkeypatch.setitem(LOADED, "tcp", dataclasses.replace(check_type("tcp"), run=leaky))
    result = await run_check({"type": "tcp", "target": "127.0.0.1:9"}, CheckOptions(credentials=store()))
    dumped = json.dumps(result.to_dict())
    assert not result.ok and "535 bad password ***" == result.error
    assert "Canary" not in dumped and "c0ffee" not in dumped


async def test_unknown_credential_at_run_time_is_a_readable_failure() -> None:
    spec = {"type": "smtp", "target": "127.0.0.1:9", "credential": "absent"}
    result = await run_check(spec, CheckOptions(credentials=store()))
    assert not result.ok and result.error is not None
    assert result.error.startswith("unknown credential 'absent'")


def test_spec_credential_field() -> None:
    assert validate_spec({"type": "imap", "target": "h:993", "credential": "mail"})["credential"] == "mail"
    for bad in ("has space", "x" * 65, "-lead"):
        with pytest.raises(ValueError, match="credential"):
            validate_spec({"type": "imap", "target": "h:993", "credential": bad})
    with pytest.raises(ValueError, match="credential: needs tls"):
        validate_spec({"type": "smtp", "target": "h:25", "tls": "none", "credential": "mail"})


def test_agent_setting(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("x")
    env = {
        "VANTAGE_CONTROL_PLANE_URL": "https://cp.example",
        "VANTAGE_CHECKPOINT": "cp1",
        "VANTAGE_INSTANCE": "a",
        "VANTAGE_IDENTITY_KEY": str(key),
        "VANTAGE_TRUSTED_KEYS": str(key),
    }
    config, _ = load_config(env)
    assert config.credentials_file is None
    config, _ = load_config({**env, "VANTAGE_CREDENTIALS_FILE": str(key)})
    assert config.credentials_file == key
    with pytest.raises(ConfigError, match="VANTAGE_CREDENTIALS_FILE"):
        load_config({**env, "VANTAGE_CREDENTIALS_FILE": str(tmp_path / "missing")})


# --- control plane: names only ------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    running: RunningServer = await start_server(make_settings(tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(http, running.url)
    finally:
        await running.stop()


async def test_control_plane_checks_monitor_credentials_against_declared_names(api: Api) -> None:
    cp = await api.ok("PUT", "/api/v1/checkpoints/cp1", {"credentials": ["mail", "db-ro", "mail"]})
    assert cp["credentials"] == ["db-ro", "mail"]
    again = await api.ok("PUT", "/api/v1/checkpoints/cp1", {"credentials": ["mail", "db-ro"]})
    assert again["changed"] is False
    untouched = await api.ok("PUT", "/api/v1/checkpoints/cp1", {"description": "x"})
    assert untouched["credentials"] == ["db-ro", "mail"]

    monitor = {"name": "m", "checkpoint": "cp1", "type": "smtp", "target": "mail.internal:25"}
    created = await api.ok("POST", "/api/v1/monitors", {**monitor, "credential": "mail"})
    assert created["credential"] == "mail"

    status, data = await api.call("POST", "/api/v1/monitors", {**monitor, "credential": "mial"})
    assert status == 422 and data["field"] == "credential"
    assert "checkpoint 'cp1' has no credential 'mial' (declared: db-ro, mail)" in data["error"]

    status, data = await api.call("POST", "/api/v1/monitors", {**monitor, "credential": "p@ss w0rd!"})
    assert status == 422 and data["field"] == "credential" and "not a secret value" in data["error"]

    status, data = await api.call("PUT", "/api/v1/checkpoints/cp1", {"credentials": [{"password": "x"}]})
    assert status == 422 and data["field"] == "credentials.0"

    changed = await api.ok("PUT", "/api/v1/checkpoints/cp1", {"credentials": []})
    assert changed["credentials"] == [] and changed["changed"] is True
    status, data = await api.call("POST", "/api/v1/monitors", {**monitor, "credential": "mail"})
    assert status == 422 and "(declared: none)" in data["error"]

