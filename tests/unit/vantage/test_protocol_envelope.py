"""Envelopes: the PAE byte layout, signing, and steps 1-2 of verification."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import (
    INSTRUCTION_TYPE,
    MAX_PAYLOAD_BYTES,
    TrustedKey,
    TrustStore,
    VerificationError,
    generate_key,
    key_id,
    pae,
    public_key_b64,
    sign,
    verify,
)

NOW = 1_800_000_000.0


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def trust(key: Ed25519PrivateKey) -> TrustStore:
    return TrustStore.single_key(key)


def reason(excinfo: pytest.ExceptionInfo[VerificationError]) -> str:
    return excinfo.value.reason


def test_pae_matches_the_dsse_specification_vector() -> None:
    # DSSE protocol.md example: "http://example.com/HelloWorld" is 29 bytes, "hello world" 11.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_hand_computed_vectors() -> None:
    # "application/vnd.vantage.instruction+json" = 12 + 28 = 40 bytes; b"{}" = 2 bytes.
    assert pae(INSTRUCTION_TYPE, b"{}") == b"DSSEv1 40 application/vnd.vantage.instruction+json 2 {}"
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    # lengths are in bytes, not characters: "\u00e9" is 2 bytes in UTF-8
    assert pae("\u00e9", "\u00e9\u00e9".encode()) == b"DSSEv1 2 \xc3\xa9 4 \xc3\xa9\xc3\xa9"
    # the payload is taken verbatim, spaces and newlines included
    assert pae("a b", b"1 2\n") == b"DSSEv1 3 a b 4 1 2\n"


def test_signature_covers_exactly_the_pae_bytes(key: Ed25519PrivateKey) -> None:
    envelope = sign("application/example", b"hello", key)
    assert envelope["payloadType"] == "application/example"
    assert base64.b64decode(envelope["payload"]) == b"hello"
    [signature] = envelope["signatures"]
    assert signature["keyid"] == key_id(key)
    # raises InvalidSignature if the signed bytes were anything else
    key.public_key().verify(base64.b64decode(signature["sig"]), b"DSSEv1 19 application/example 5 hello")


def test_verify_returns_type_payload_and_keyid(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = sign("application/example", b"not json at all", key)
    assert verify(envelope, trust, NOW) == ("application/example", b"not json at all", key_id(key))


def test_tampered_payload_is_a_bad_signature(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = sign("application/example", b'{"aud": "cp/a"}', key)
    envelope["payload"] = base64.b64encode(b'{"aud": "cp/b"}').decode()
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "bad_signature"
    assert str(excinfo.value).startswith("bad_signature: ")


def test_payload_type_is_signed(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = sign("application/vnd.vantage.hello+json", b"{}", key)
    envelope["payloadType"] = INSTRUCTION_TYPE
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "bad_signature"


def test_signature_by_an_unknown_key_is_refused_before_checking_it(trust: TrustStore) -> None:
    envelope = sign("application/example", b"x", generate_key())
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "unknown_key"
    envelope["signatures"][0]["sig"] = base64.b64encode(b"\x00" * 64).decode()
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "unknown_key"


def test_a_trusted_keyid_with_a_forged_signature_is_a_bad_signature(
    key: Ed25519PrivateKey, trust: TrustStore
) -> None:
    envelope = sign("application/example", b"x", generate_key())
    envelope["signatures"][0]["keyid"] = key_id(key)  # claims the trusted key
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "bad_signature"


def test_retired_and_expired_keys_are_unknown(key: Ed25519PrivateKey) -> None:
    envelope = sign("application/example", b"x", key)
    b64 = public_key_b64(key)
    retired = TrustStore([TrustedKey(key_id(key), b64, "retired")])
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, retired, NOW)
    assert reason(excinfo) == "unknown_key"
    limited = TrustStore([TrustedKey(key_id(key), b64, "active", not_after=NOW)])
    assert verify(envelope, limited, NOW - 1)[2] == key_id(key)
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, limited, NOW)  # not accepted *at* not_after
    assert reason(excinfo) == "unknown_key"


def test_any_trusted_valid_signature_suffices(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = sign("application/example", b"x", key)
    stranger = sign("application/example", b"x", generate_key())
    envelope["signatures"] = stranger["signatures"] + envelope["signatures"]
    assert verify(envelope, trust, NOW)[2] == key_id(key)


def _good(key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign("application/example", b"x", key)


MALFORMED = {
    "not an object": lambda e: ["list"],
    "no payloadType": lambda e: {k: v for k, v in e.items() if k != "payloadType"},
    "empty payloadType": lambda e: {**e, "payloadType": ""},
    "payloadType not a string": lambda e: {**e, "payloadType": 7},
    "payload not a string": lambda e: {**e, "payload": 7},
    "payload not base64": lambda e: {**e, "payload": "%%%"},
    "no signatures": lambda e: {**e, "signatures": []},
    "signatures not a list": lambda e: {**e, "signatures": e["signatures"][0]},
    "signature not an object": lambda e: {**e, "signatures": ["x"]},
    "keyid missing": lambda e: {**e, "signatures": [{"sig": e["signatures"][0]["sig"]}]},
    "sig not base64": lambda e: {**e, "signatures": [{**e["signatures"][0], "sig": "!!"}]},
    "sig wrong length": lambda e: {
        **e,
        "signatures": [{**e["signatures"][0], "sig": base64.b64encode(b"\x00" * 63).decode()}],
    },
    "too many signatures": lambda e: {**e, "signatures": e["signatures"] * 9},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_envelopes_are_refused(case: str, key: Ed25519PrivateKey, trust: TrustStore) -> None:
    envelope = MALFORMED[case](copy.deepcopy(_good(key)))
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "malformed_envelope"


def test_oversized_payloads_are_refused(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    assert verify(sign("t", b"a" * MAX_PAYLOAD_BYTES, key), trust, NOW)[1] == b"a" * MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError):
        sign("t", b"a" * (MAX_PAYLOAD_BYTES + 1), key)
    envelope = _good(key)
    envelope["payload"] = base64.b64encode(b"a" * (MAX_PAYLOAD_BYTES + 1)).decode()
    with pytest.raises(VerificationError) as excinfo:
        verify(envelope, trust, NOW)
    assert reason(excinfo) == "payload_too_large"
