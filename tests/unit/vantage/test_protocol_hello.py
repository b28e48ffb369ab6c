"""The session hello: bound to the challenge, the instance and the control plane's URL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import (
    HELLO_TYPE,
    InstructionVerifier,
    ReplayCache,
    TrustStore,
    VerificationError,
    generate_key,
    make_hello,
    make_instruction,
    normalize_url,
    public_key_b64,
    sign,
    verify_hello,
)

NOW = 1_800_000_000
CHALLENGE = "3f" * 32
URL = "https://cp.example.com"


@pytest.fixture
def identity() -> Ed25519PrivateKey:
    return generate_key()


def hello(identity: Ed25519PrivateKey, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "challenge": CHALLENGE,
        "checkpoint": "office-paris",
        "instance": "a",
        "control_plane": URL,
        "now": NOW,
    }
    args.update(overrides)
    return make_hello(identity, **args)


def check(envelope: Any, identity: Ed25519PrivateKey, **overrides: Any) -> None:
    args: dict[str, Any] = {
        "enrolled_public_key": public_key_b64(identity),
        "challenge": CHALLENGE,
        "checkpoint": "office-paris",
        "instance": "a",
        "control_plane": URL,
        "now": NOW,
    }
    args.update(overrides)
    verify_hello(envelope, **args)


def rejection(envelope: Any, identity: Ed25519PrivateKey, **overrides: Any) -> str:
    with pytest.raises(VerificationError) as excinfo:
        check(envelope, identity, **overrides)
    return excinfo.value.reason


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://cp.example.com", "https://cp.example.com:443"),
        ("HTTPS://CP.Example.COM/", "https://cp.example.com:443"),
        ("https://cp.example.com:443", "https://cp.example.com:443"),
        ("wss://cp.example.com", "https://cp.example.com:443"),
        ("https://cp.example.com:8443", "https://cp.example.com:8443"),
        ("http://127.0.0.1", "http://127.0.0.1:80"),
        ("ws://127.0.0.1:80/", "http://127.0.0.1:80"),
        ("https://[::1]:9000/", "https://[::1]:9000"),
        ("https://proxy.example.com/vantage/", "https://proxy.example.com:443/vantage"),
    ],
)
def test_normalize_url(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cp.example.com",
        "cp.example.com",
        "https://",
        "https://user:pw@cp.example.com",
        "https://cp.example.com/?x=1",
        "https://cp.example.com/#frag",
        "https://cp.example.com:99999",
        "https://cp.example.com:abc",
    ],
)
def test_normalize_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(url)


def test_a_valid_hello_is_accepted(identity: Ed25519PrivateKey) -> None:
    envelope = hello(identity)
    assert envelope["payloadType"] == HELLO_TYPE
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload == {
        "v": 1,
        "challenge": CHALLENGE,
        "checkpoint": "office-paris",
        "instance": "a",
        "control_plane": URL,
        "iat": NOW,
    }
    check(envelope, identity)
    # an equivalent spelling of the server URL matches
    check(envelope, identity, control_plane="wss://CP.example.com:443/")
    check(hello(identity, control_plane="https://cp.example.com/"), identity)


def test_a_hello_for_another_challenge_is_rejected(identity: Ed25519PrivateKey) -> None:
    assert rejection(hello(identity), identity, challenge="00" * 32) == "wrong_challenge"


def test_a_hello_for_another_control_plane_is_rejected(identity: Ed25519PrivateKey) -> None:
    envelope = hello(identity, control_plane="https://evil.example.com")
    assert rejection(envelope, identity) == "wrong_control_plane"
    assert (
        rejection(hello(identity), identity, control_plane="https://cp.example.com:8443")
        == "wrong_control_plane"
    )
    assert (
        rejection(hello(identity), identity, control_plane="http://cp.example.com") == "wrong_control_plane"
    )


def test_a_hello_for_another_instance_is_rejected(identity: Ed25519PrivateKey) -> None:
    assert rejection(hello(identity), identity, instance="b") == "wrong_instance"
    assert rejection(hello(identity), identity, checkpoint="office-lyon") == "wrong_instance"


def test_a_hello_signed_by_another_key_is_rejected(identity: Ed25519PrivateKey) -> None:
    assert rejection(hello(generate_key()), identity) == "unknown_key"


def test_a_tampered_hello_is_rejected(identity: Ed25519PrivateKey) -> None:
    envelope = hello(identity)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["instance"] = "b"
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    assert rejection(envelope, identity, instance="b") == "bad_signature"


def test_hello_age(identity: Ed25519PrivateKey) -> None:
    check(hello(identity, now=NOW - 60), identity)
    assert rejection(hello(identity, now=NOW - 61), identity) == "expired"
    assert rejection(hello(identity, now=NOW + 61), identity) == "not_yet_valid"
    check(hello(identity, now=NOW - 100), identity, max_age=120)


def test_an_instruction_envelope_never_passes_as_a_hello(identity: Ed25519PrivateKey) -> None:
    # even signed by the enrolled identity key, and carrying every field a hello has
    instruction = make_instruction(
        identity, iss=URL, aud="office-paris/a", kind="ping", body={}, seq=1, now=NOW
    )
    assert rejection(instruction, identity) == "wrong_payload_type"
    fields = json.loads(base64.b64decode(hello(identity)["payload"]))
    disguised = sign("application/vnd.vantage.instruction+json", json.dumps(fields).encode(), identity)
    assert rejection(disguised, identity) == "wrong_payload_type"
    # relabelling a real hello's type breaks its signature
    relabelled = hello(identity)
    relabelled["payloadType"] = "application/vnd.vantage.instruction+json"
    assert rejection(relabelled, identity) == "bad_signature"


def test_a_hello_never_passes_as_an_instruction(identity: Ed25519PrivateKey) -> None:
    verifier = InstructionVerifier(TrustStore.single_key(identity), "office-paris/a", ReplayCache())
    with pytest.raises(VerificationError) as excinfo:
        verifier.verify(hello(identity), now=NOW)
    assert excinfo.value.reason == "wrong_payload_type"


@pytest.mark.parametrize(
    "overrides",
    [
        {"challenge": "short"},
        {"challenge": "3F" * 32},
        {"checkpoint": ""},
        {"instance": "a/b"},
        {"control_plane": "ftp://cp"},
    ],
)
def test_make_hello_validates(identity: Ed25519PrivateKey, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        hello(identity, **overrides)


def test_malformed_hello_payloads(identity: Ed25519PrivateKey) -> None:
    good = json.loads(base64.b64decode(hello(identity)["payload"]))
    for patch, expected in [
        ({"iat": float(NOW)}, "malformed_payload"),
        ({"challenge": 5}, "malformed_payload"),
        ({"v": 2}, "unsupported_version"),
        ({"control_plane": "not a url"}, "wrong_control_plane"),
    ]:
        envelope = sign(HELLO_TYPE, json.dumps({**good, **patch}).encode(), identity)
        assert rejection(envelope, identity) == expected, patch
