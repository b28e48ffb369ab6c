"""Release manifests: signature, type, channel, time window and rollback protection."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import (
    RELEASE_TYPE,
    TrustStore,
    VerificationError,
    compare_versions,
    generate_key,
    make_instruction,
    make_release,
    parse_version,
    sign,
    verify_release,
)

NOW = 1_800_000_000
DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = "registry.example.com:5000/vantage/checkpoint"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def trust(key: Ed25519PrivateKey) -> TrustStore:
    return TrustStore.single_key(key)


def release(key: Ed25519PrivateKey, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "channel": "stable",
        "version": "1.4.2",
        "image": IMAGE,
        "digest": DIGEST,
        "now": NOW,
    }
    args.update(overrides)
    return make_release(key, **args)


def rejection(envelope: Any, trust: TrustStore, **overrides: Any) -> str:
    args: dict[str, Any] = {"channel": "stable", "now": NOW}
    args.update(overrides)
    with pytest.raises(VerificationError) as excinfo:
        verify_release(envelope, trust, **args)
    return excinfo.value.reason


def test_parse_version() -> None:
    assert parse_version("1.4.2") == (1, 4, 2)
    assert parse_version("2") == (2,)
    assert parse_version("2026.01.15") == (2026, 1, 15)
    for bad in ["", "v1.4.2", "1.4.2-rc1", "1..2", "1.4.", " 1.4", "a.b", "1.2.3.4.5.6.7.8.9"]:
        with pytest.raises(ValueError):
            parse_version(bad)


def test_versions_compare_numerically() -> None:
    assert compare_versions("1.10.0", "1.9.0") == 1
    assert compare_versions("1.4", "1.4.0") == 0
    assert compare_versions("1.4.1", "1.4.2") == -1


def test_a_valid_release_is_accepted(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    verified = verify_release(release(key), trust, channel="stable", now=NOW + 3600)
    assert (verified.channel, verified.version, verified.image, verified.digest) == (
        "stable",
        "1.4.2",
        IMAGE,
        DIGEST,
    )
    assert (verified.iat, verified.exp) == (NOW, NOW + 7 * 86400)
    assert verified.reference == f"{IMAGE}@{DIGEST}"


def test_downgrade_is_refused(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = release(key, version="1.4.2")
    assert rejection(envelope, trust, installed_version="1.4.3") == "downgrade"
    assert rejection(envelope, trust, installed_version="1.10.0") == "downgrade"
    assert (
        verify_release(envelope, trust, channel="stable", installed_version="1.4.2", now=NOW).version
        == "1.4.2"
    )
    assert (
        verify_release(envelope, trust, channel="stable", installed_version="1.3.9", now=NOW).version
        == "1.4.2"
    )
    assert verify_release(envelope, trust, channel="stable", installed_version="0.9", now=NOW)


def test_an_invalid_installed_version_is_a_caller_error(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    with pytest.raises(ValueError):
        verify_release(release(key), trust, channel="stable", installed_version="latest", now=NOW)


def test_a_tampered_payload_is_refused(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = release(key)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["digest"] = "sha256:" + "f" * 64
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    assert rejection(envelope, trust) == "bad_signature"


def test_a_release_signed_by_an_untrusted_key_is_refused(trust: TrustStore) -> None:
    assert rejection(release(generate_key()), trust) == "unknown_key"


def test_wrong_channel(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    assert rejection(release(key, channel="beta"), trust) == "wrong_channel"


def test_time_window(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = release(key, lifetime=3600)
    assert rejection(envelope, trust, now=NOW + 3600 + 301) == "expired"
    assert verify_release(envelope, trust, channel="stable", now=NOW + 3600 + 300)
    assert rejection(release(key, now=NOW + 301), trust) == "not_yet_valid"
    assert rejection(release(key, now=NOW + 11), trust, skew=10) == "not_yet_valid"


def test_an_instruction_is_not_a_release(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    instruction = make_instruction(key, iss="https://cp", aud="c/i", kind="ping", body={}, seq=1, now=NOW)
    assert rejection(instruction, trust) == "wrong_payload_type"


@pytest.mark.parametrize(
    "patch",
    [
        {"digest": "sha256:abc"},
        {"digest": "md5:" + "0" * 32},
        {"version": "latest"},
        {"iat": float(NOW)},
        {"exp": None},
        {"image": ""},
        {"image": f"{IMAGE}@{DIGEST}"},
    ],
)
def test_malformed_release_payloads(key: Ed25519PrivateKey, trust: TrustStore, patch: dict[str, Any]) -> None:
    good = json.loads(base64.b64decode(release(key)["payload"]))
    envelope = sign(RELEASE_TYPE, json.dumps({**good, **patch}).encode(), key)
    assert rejection(envelope, trust) == "malformed_payload"


@pytest.mark.parametrize(
    "overrides",
    [
        {"digest": "sha256:" + "A" * 64},
        {"digest": "0" * 64},
        {"version": "1.4.2-beta"},
        {"channel": ""},
        {"lifetime": 0},
    ],
)
def test_make_release_validates(key: Ed25519PrivateKey, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        release(key, **overrides)
