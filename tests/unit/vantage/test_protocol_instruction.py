"""Instructions: every rejection reason, the verification order, replay protection, rotation."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import (
    INSTRUCTION_TYPE,
    RELEASE_TYPE,
    InstructionVerifier,
    ReplayCache,
    TrustedKey,
    TrustStore,
    VerificationError,
    apply_rotation,
    generate_key,
    key_id,
    make_instruction,
    make_release,
    public_key_b64,
    rotation_body,
    sign,
)

NOW = 1_800_000_000
AUD = "office-paris/a"
ISS = "https://cp.example.com"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def trust(key: Ed25519PrivateKey) -> TrustStore:
    return TrustStore.single_key(key)


@pytest.fixture
def verifier(trust: TrustStore) -> InstructionVerifier:
    return InstructionVerifier(trust, AUD, ReplayCache())


def instruction(key: Ed25519PrivateKey, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"iss": ISS, "aud": AUD, "kind": "ping", "body": {}, "seq": 1, "now": NOW}
    args.update(overrides)
    return make_instruction(key, **args)


def signed_payload(
    key: Ed25519PrivateKey, payload: Any, payload_type: str = INSTRUCTION_TYPE
) -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return sign(payload_type, raw, key)


def base_payload(**overrides: Any) -> dict[str, Any]:
    payload = {
        "v": 1,
        "iss": ISS,
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + 60,
        "nonce": "0" * 32,
        "seq": 1,
        "kind": "ping",
        "body": {},
    }
    payload.update(overrides)
    return payload


def rejection(verifier: InstructionVerifier, envelope: Any, now: float = NOW) -> str:
    with pytest.raises(VerificationError) as excinfo:
        verifier.verify(envelope, now=now)
    return excinfo.value.reason


def test_a_valid_instruction_is_accepted(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    body = {"check_id": "c1", "monitor_id": "m1", "attempt": 1, "check": {"type": "tcp", "target": "db:5432"}}
    envelope = instruction(key, kind="run_check", body=body, seq=7, nonce="ab" * 16, lifetime=120)
    result = verifier.verify(envelope, now=NOW + 5)
    assert (result.v, result.iss, result.aud, result.kind, result.seq) == (1, ISS, AUD, "run_check", 7)
    assert (result.iat, result.exp, result.nonce) == (NOW, NOW + 120, "ab" * 16)
    assert result.body == body
    assert result.keyid == key_id(key)


def test_make_instruction_defaults(key: Ed25519PrivateKey) -> None:
    envelope = make_instruction(key, iss=ISS, aud=AUD, kind="ping", body={}, seq=0)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["exp"] - payload["iat"] == 60
    assert len(payload["nonce"]) == 32 and int(payload["nonce"], 16) >= 0
    other = make_instruction(key, iss=ISS, aud=AUD, kind="ping", body={}, seq=0)
    assert json.loads(base64.b64decode(other["payload"]))["nonce"] != payload["nonce"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "reboot"},
        {"aud": "no-slash"},
        {"seq": -1},
        {"lifetime": 0},
        {"nonce": "XYZ"},
        {"nonce": "A" * 32},
    ],
)
def test_make_instruction_validates(key: Ed25519PrivateKey, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        instruction(key, **overrides)


def test_bad_signature(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    envelope = instruction(key)
    forged = base_payload(aud=AUD, kind="drain")
    envelope["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    assert rejection(verifier, envelope) == "bad_signature"


def test_unknown_key(verifier: InstructionVerifier) -> None:
    assert rejection(verifier, instruction(generate_key())) == "unknown_key"


def test_wrong_payload_type(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    # a perfectly valid instruction payload, signed by the trusted key, but as another type
    assert rejection(verifier, signed_payload(key, base_payload(), RELEASE_TYPE)) == "wrong_payload_type"
    release = make_release(
        key, channel="stable", version="1.0.0", image="r/vantage", digest="sha256:" + "a" * 64
    )
    assert rejection(verifier, release) == "wrong_payload_type"


def test_wrong_audience(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    assert rejection(verifier, instruction(key, aud="office-paris/b")) == "wrong_audience"
    assert rejection(verifier, instruction(key, aud="office-lyon/a")) == "wrong_audience"


def test_expired(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    envelope = instruction(key, lifetime=60)  # exp = NOW + 60, skew 30
    assert rejection(verifier, envelope, now=NOW + 91) == "expired"
    assert verifier.verify(envelope, now=NOW + 90).nonce  # the boundary is still inside


def test_issued_too_far_in_the_future(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    assert rejection(verifier, instruction(key, now=NOW + 31)) == "not_yet_valid"
    assert verifier.verify(instruction(key, now=NOW + 30), now=NOW).iat == NOW + 30


def test_lifetime_over_the_cap(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    assert rejection(verifier, instruction(key, lifetime=301)) == "lifetime_too_long"
    assert verifier.verify(instruction(key, lifetime=300), now=NOW).exp == NOW + 300


def test_custom_skew_and_lifetime(key: Ed25519PrivateKey, tmp_path: Path, trust: TrustStore) -> None:
    strict = InstructionVerifier(trust, AUD, ReplayCache(), skew=0, max_lifetime=10)
    assert rejection(strict, instruction(key, lifetime=11)) == "lifetime_too_long"
    assert rejection(strict, instruction(key, now=NOW + 1)) == "not_yet_valid"
    assert rejection(strict, instruction(key, lifetime=10), now=NOW + 11) == "expired"


def test_replayed_nonce(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    envelope = instruction(key)
    verifier.verify(envelope, now=NOW)
    assert rejection(verifier, envelope, now=NOW + 1) == "replayed"
    # another envelope carrying the same nonce is a replay too
    same_nonce = json.loads(base64.b64decode(envelope["payload"]))["nonce"]
    assert rejection(verifier, instruction(key, nonce=same_nonce)) == "replayed"


def test_replayed_nonce_after_a_restart(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    persisted: list[tuple[str, float]] = []  # what the owner of the cache made durable
    envelope = instruction(key)
    first = InstructionVerifier(trust, AUD, ReplayCache(sink=persisted.extend))
    first.verify(envelope, now=NOW)
    assert persisted == [(json.loads(base64.b64decode(envelope["payload"]))["nonce"], NOW + 60 + 30)]
    restarted_cache = ReplayCache()
    restarted_cache.load(persisted)
    restarted = InstructionVerifier(trust, AUD, restarted_cache)
    assert rejection(restarted, envelope, now=NOW + 2) == "replayed"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"not json", "malformed_payload"),
        (b"\xff\xfe", "malformed_payload"),
        (b"[1, 2]", "malformed_payload"),
        (b'{"v": 1, "aud": "x", "aud": "y"}', "malformed_payload"),  # duplicate keys
        (b'{"v": NaN}', "malformed_payload"),
        (base_payload(iat=float(NOW)), "malformed_payload"),
        (base_payload(exp=str(NOW + 60)), "malformed_payload"),
        (base_payload(iat=True), "malformed_payload"),
        (base_payload(exp=NOW - 1), "malformed_payload"),
        (base_payload(nonce="short"), "malformed_payload"),
        (base_payload(nonce="A" * 32), "malformed_payload"),
        (base_payload(body=[]), "malformed_payload"),
        (base_payload(seq=1.5), "malformed_payload"),
        ({k: v for k, v in base_payload().items() if k != "aud"}, "malformed_payload"),
        (base_payload(v=2), "unsupported_version"),
        (base_payload(kind="format_disk"), "unknown_kind"),
    ],
)
def test_malformed_payloads(
    key: Ed25519PrivateKey, verifier: InstructionVerifier, payload: Any, expected: str
) -> None:
    assert rejection(verifier, signed_payload(key, payload)) == expected


def test_a_duplicate_key_payload_is_refused_even_if_its_last_value_is_right(
    key: Ed25519PrivateKey, verifier: InstructionVerifier
) -> None:
    text = json.dumps(base_payload())[:-1] + f', "aud": "{AUD}"}}'
    assert rejection(verifier, signed_payload(key, text.encode())) == "malformed_payload"
    assert verifier.verify(signed_payload(key, base_payload()), now=NOW).aud == AUD


def test_the_payload_is_not_parsed_before_the_signature_verifies(verifier: InstructionVerifier) -> None:
    stranger = signed_payload(generate_key(), b"not json")
    assert rejection(verifier, stranger) == "unknown_key"


def test_order_signature_before_payload(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    envelope = signed_payload(key, b"not json")
    envelope["payload"] = base64.b64encode(b"still not json").decode()
    assert rejection(verifier, envelope) == "bad_signature"


def test_order_type_audience_time_replay(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    everything_wrong = base_payload(aud="other/x", iat=NOW - 1000, exp=NOW - 500)
    assert rejection(verifier, signed_payload(key, everything_wrong, RELEASE_TYPE)) == "wrong_payload_type"
    assert rejection(verifier, signed_payload(key, everything_wrong)) == "wrong_audience"
    assert (
        rejection(verifier, signed_payload(key, base_payload(iat=NOW + 100, exp=NOW + 1000)))
        == "not_yet_valid"
    )
    assert rejection(verifier, signed_payload(key, base_payload(iat=NOW - 1000, exp=NOW - 500))) == (
        "lifetime_too_long"
    )
    envelope = signed_payload(key, base_payload(nonce="1" * 32))
    verifier.verify(envelope, now=NOW)
    assert rejection(verifier, envelope, now=NOW + 1000) == "expired"  # time before replay


def test_a_rejected_instruction_does_not_consume_its_nonce(
    key: Ed25519PrivateKey, trust: TrustStore, verifier: InstructionVerifier
) -> None:
    envelope = instruction(key)
    other = InstructionVerifier(trust, "office-paris/b", verifier.replay)
    assert rejection(other, envelope) == "wrong_audience"
    assert rejection(verifier, envelope, now=NOW + 1000) == "expired"
    assert verifier.verify(envelope, now=NOW).aud == AUD


# -- key rotation ------------------------------------------------------------------------


def test_rotation_introduces_the_next_key_and_retires_the_old_one(
    key: Ed25519PrivateKey, verifier: InstructionVerifier, tmp_path: Path
) -> None:
    new_key = generate_key()
    retire_at = NOW + 3600
    body = rotation_body(new_key, retire_keyid=key_id(key), retire_at=retire_at)
    assert body == {
        "key": {"keyid": key_id(new_key), "public_key": public_key_b64(new_key)},
        "retire_keyid": key_id(key),
        "retire_at": retire_at,
    }
    assert rejection(verifier, instruction(new_key)) == "unknown_key"  # not trusted yet

    rotation = verifier.verify(instruction(key, kind="rotate_key", body=body), now=NOW)
    old_trust = verifier.trust
    verifier.trust = apply_rotation(verifier.trust, rotation)
    assert not old_trust.is_trusted(key_id(new_key), NOW)  # the input store is unchanged
    verifier.trust.save(tmp_path / "trusted_keys.json")
    verifier.trust = TrustStore.load(tmp_path / "trusted_keys.json")  # as after a restart

    assert verifier.trust.get(key_id(new_key)).status == "active"  # type: ignore[union-attr]
    assert verifier.trust.get(key_id(key)).not_after == retire_at  # type: ignore[union-attr]
    assert verifier.verify(instruction(new_key, now=NOW + 10), now=NOW + 10).keyid == key_id(new_key)
    # the old key: still accepted before retire_at ...
    assert verifier.verify(instruction(key, now=retire_at - 5), now=retire_at - 5).keyid == key_id(key)
    # ... and refused from retire_at on
    assert rejection(verifier, instruction(key, now=retire_at), now=retire_at) == "unknown_key"
    assert rejection(verifier, instruction(key, now=retire_at + 60), now=retire_at + 60) == "unknown_key"
    assert verifier.verify(instruction(new_key, now=retire_at + 60), now=retire_at + 60).keyid == key_id(
        new_key
    )


def test_rotation_survives_merging_with_the_mounted_file(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    new_key = generate_key()
    verifier = InstructionVerifier(trust, AUD, ReplayCache())
    body = rotation_body(new_key, retire_keyid=key_id(key), retire_at=NOW + 60)
    persisted = apply_rotation(
        trust, verifier.verify(instruction(key, kind="rotate_key", body=body), now=NOW)
    )
    mounted = TrustStore.single_key(key)  # the original file still says the old key is active forever
    merged = mounted.merge(persisted)
    assert merged.is_trusted(key_id(new_key), NOW + 120)
    assert not merged.is_trusted(key_id(key), NOW + 60)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b, k: {**b, "key": {**b["key"], "keyid": "0123456789abcdef"}},  # keyid does not match
        lambda b, k: {**b, "key": {**b["key"], "public_key": "not base64"}},
        lambda b, k: {**b, "key": "nope"},
        lambda b, k: {**b, "retire_keyid": "0123456789abcdef"},  # unknown key to retire
        lambda b, k: {**b, "retire_keyid": b["key"]["keyid"]},
        lambda b, k: {**b, "retire_at": "soon"},
        lambda b, k: {**b, "retire_at": 1.5},
        lambda b, k: {k: v for k, v in b.items() if k != "retire_at"},
    ],
)
def test_invalid_rotations_are_refused(key: Ed25519PrivateKey, trust: TrustStore, mutate: Any) -> None:
    verifier = InstructionVerifier(trust, AUD, ReplayCache())
    body = mutate(rotation_body(generate_key(), retire_keyid=key_id(key), retire_at=NOW + 60), key)
    verified = verifier.verify(instruction(key, kind="rotate_key", body=body), now=NOW)
    with pytest.raises(VerificationError) as excinfo:
        apply_rotation(trust, verified)
    assert excinfo.value.reason == "invalid_rotation"
    assert len(trust) == 1


def test_rotation_cannot_revive_a_retired_key(key: Ed25519PrivateKey, trust: TrustStore) -> None:
    old = generate_key()
    trust.add(TrustedKey(key_id(old), public_key_b64(old), "retired"))
    verifier = InstructionVerifier(trust, AUD, ReplayCache())
    body = rotation_body(old, retire_keyid=key_id(key), retire_at=NOW + 60)
    verified = verifier.verify(instruction(key, kind="rotate_key", body=body), now=NOW)
    with pytest.raises(VerificationError, match="retired") as excinfo:
        apply_rotation(trust, verified)
    assert excinfo.value.reason == "invalid_rotation"


def test_apply_rotation_needs_a_rotate_key_instruction(
    key: Ed25519PrivateKey, verifier: InstructionVerifier
) -> None:
    with pytest.raises(VerificationError) as excinfo:
        apply_rotation(verifier.trust, verifier.verify(instruction(key), now=NOW))
    assert excinfo.value.reason == "invalid_rotation"


def test_refusals_after_the_signature_carry_the_nonce(
    key: Ed25519PrivateKey, verifier: InstructionVerifier
) -> None:
    nonce = "c" * 32
    for envelope, expected in [
        (instruction(key, nonce=nonce, aud="office-paris/b"), "wrong_audience"),
        (instruction(key, nonce=nonce, now=NOW - 1000), "expired"),
    ]:
        with pytest.raises(VerificationError) as excinfo:
            verifier.verify(envelope, now=NOW)
        assert (excinfo.value.reason, excinfo.value.nonce) == (expected, nonce)
    verifier.verify(instruction(key, nonce=nonce), now=NOW)
    with pytest.raises(VerificationError) as excinfo:
        verifier.verify(instruction(key, nonce=nonce), now=NOW)
    assert (excinfo.value.reason, excinfo.value.nonce) == ("replayed", nonce)
    # before the signature verified, nothing from the payload is trusted
    with pytest.raises(VerificationError) as excinfo:
        verifier.verify(instruction(generate_key(), nonce="d" * 32), now=NOW)
    assert (excinfo.value.reason, excinfo.value.nonce) == ("unknown_key", None)
