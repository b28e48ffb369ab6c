"""``ssh`` spec validation, and the check's behaviour that needs no server (the real sshd tests are in
``tests/integration/test_checks_ssh_sshd.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from vantage.checks import CheckOptions, run_check, validate_spec
from vantage.checks.credentials import CredentialStore
from vantage.checks.spec import CheckSpecError

PIN = "SHA256:" + "A" * 43
PIN2 = "SHA256:" + "b/+9" * 10 + "xyz"


def _error(spec: dict[str, Any]) -> CheckSpecError:
    with pytest.raises(CheckSpecError) as info:
        validate_spec(spec)
    return info.value


def test_minimal_spec_is_normalised_and_idempotent() -> None:
    norm = validate_spec({"type": "ssh", "target": "SFTP.example.com:22"})
    assert norm == {"type": "ssh", "target": "sftp.example.com:22", "timeout_s": 10.0,
                    "host_key_sha256": None, "credential": None, "sftp": None}
    assert validate_spec(norm) == norm


def test_pins_accept_one_or_many_and_normalise() -> None:
    assert validate_spec({"type": "ssh", "target": "h:22", "host_key_sha256": PIN})["host_key_sha256"] == [PIN]
    norm = validate_spec({"type": "ssh", "target": "h:22",
                          "host_key_sha256": [PIN, " " + PIN2[7:] + "=", PIN]})
    assert norm["host_key_sha256"] == [PIN, PIN2]  # prefix added, padding stripped, duplicates dropped


@pytest.mark.parametrize("pins", ["SHA256:short", "MD5:aa:bb", [], [PIN] * 0, ["x" * 43 + "!"], [1], {"a": 1}])
def test_bad_pins_name_the_entry(pins: Any) -> None:
    err = _error({"type": "ssh", "target": "h:22", "host_key_sha256": pins})
    assert err.field.startswith("host_key_sha256")


def test_login_requires_pins() -> None:
    err = _error({"type": "ssh", "target": "h:22", "credential": "sftp"})
    assert err.field == "host_key_sha256" and "required with credential" in err.message


def test_sftp_block_validation() -> None:
    base = {"type": "ssh", "target": "h:22", "host_key_sha256": PIN}
    norm = validate_spec({**base, "credential": "sftp", "sftp": {"list_dir": "/upload"}})
    assert norm["sftp"] == {"list_dir": "/upload", "file_exists": None}
    assert _error({**base, "sftp": {"list_dir": "/"}}).message.startswith("needs credential")
    assert _error({**base, "credential": "c", "sftp": {}}).field == "sftp"
    assert _error({**base, "credential": "c", "sftp": {"lst_dir": "/"}}).field == "sftp.lst_dir"
    assert _error({**base, "credential": "c", "sftp": {"file_exists": ""}}).field == "sftp.file_exists"
    assert _error({**base, "credential": "c", "sftp": "/upload"}).field == "sftp"


def test_credential_must_be_a_name() -> None:
    err = _error({"type": "ssh", "target": "h:22", "host_key_sha256": PIN, "credential": "pass word!"})
    assert err.field == "credential"


def test_port_is_required() -> None:
    assert _error({"type": "ssh", "target": "sftp.example.com"}).field == "target"


async def test_unknown_credential_fails_before_connecting() -> None:
    # 192.0.2.1 (TEST-NET-1) is never contacted: the credential lookup comes first.
    spec = {"type": "ssh", "target": "192.0.2.1:22", "host_key_sha256": PIN, "credential": "missing",
            "timeout_s": 2}
    result = await run_check(spec, CheckOptions(credentials=CredentialStore.empty()))
    assert not result.ok and result.error is not None
    assert result.error.startswith("unknown credential 'missing'")
    assert "connect_ms" not in result.phases


async def test_unreadable_private_key_is_reported_without_the_key() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\ncanary-not-a-real-key-body-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"
    store = CredentialStore.from_mapping({"credentials": {"k": {"username": "u", "private_key": key}}})
    spec = {"type": "ssh", "target": "192.0.2.1:22", "host_key_sha256": PIN, "credential": "k", "timeout_s": 2}
    result = await run_check(spec, CheckOptions(credentials=store))
    assert not result.ok and result.error is not None
    assert result.error.startswith("credential 'k': the private key cannot be loaded")
    assert "canary-not-a-real-key-body" not in str(result.to_dict())
