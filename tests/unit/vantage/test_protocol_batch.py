"""Signed batches of instructions: the builder, the verification order, atomicity, hostile batches."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import (
    INSTRUCTION_BATCH_TYPE,
    INSTRUCTION_TYPE,
    MAX_BATCH_ITEMS,
    MAX_PAYLOAD_BYTES,
    InstructionVerifier,
    ReplayCache,
    TrustStore,
    VerificationError,
    generate_key,
    instruction_payload,
    make_instruction,
    make_instruction_batch,
    sign,
)
from vantage.protocol import envelope as envelope_module

NOW = 1_800_000_000
AUD = "office-paris/a"
ISS = "https://cp.example.com"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> InstructionVerifier:
    return InstructionVerifier(TrustStore.single_key(key), AUD, ReplayCache())


def item(seq: int = 1, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "kind": "run_check",
        "body": {"check_id": f"c{seq}", "monitor_id": "m", "attempt": 1, "check": {"type": "tcp"}},
        "seq": seq,
        "now": NOW,
    }
    payload = instruction_payload(**args)
    payload.update(overrides)
    return payload


def signed_batch(key: Ed25519PrivateKey, payload: Any, payload_type: str = INSTRUCTION_BATCH_TYPE) -> dict[str, Any]:
    """A batch envelope built by hand (the builder refuses what these tests need to send)."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return sign(payload_type, raw, key)


def refused(verifier: InstructionVerifier, envelope: Any, now: float = NOW) -> VerificationError:
    with pytest.raises(VerificationError) as excinfo:
        verifier.verify_batch(envelope, now=now)
    return excinfo.value


def test_a_batch_verifies_every_item_with_one_signature(
    key: Ed25519PrivateKey, verifier: InstructionVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_verify = envelope_module.verify
    monkeypatch.setattr(
        "vantage.protocol.instruction.verify_envelope",
        lambda *args, **kwargs: (calls.append(1), real_verify(*args, **kwargs))[1],
    )
    items = [item(seq) for seq in range(1, 11)]
    instructions = verifier.verify_batch(make_instruction_batch(key, items), now=NOW)
    assert [i.seq for i in instructions] == list(range(1, 11))
    assert [i.nonce for i in instructions] == [p["nonce"] for p in items]
    assert all(i.aud == AUD and i.kind == "run_check" for i in instructions)
    assert len(calls) == 1
    assert all(p["nonce"] in verifier.replay for p in items)  # each item's nonce is recorded


def test_the_builder_refuses_what_the_verifier_would(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="1 to"):
        make_instruction_batch(key, [])
    with pytest.raises(ValueError, match="1 to"):
        make_instruction_batch(key, [item(i) for i in range(MAX_BATCH_ITEMS + 1)])
    with pytest.raises(ValueError, match="used twice"):
        make_instruction_batch(key, _twice())
    with pytest.raises(ValueError, match="item 1"):
        make_instruction_batch(key, [item(1), {**item(2), "kind": "format_disk"}])
    big = item(1, body={"padding": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(ValueError, match="exceeds"):
        make_instruction_batch(key, [big])


def _twice() -> list[dict[str, Any]]:
    first = item(1)
    return [first, {**item(2), "nonce": first["nonce"]}]


# ----------------------------------------------------------------------------- hostile batches


def test_forged_signature(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    envelope = make_instruction_batch(key, [item(1), item(2)])
    forged = json.loads(base64.b64decode(envelope["payload"]))
    forged["items"][0]["body"]["check"] = {"type": "http", "target": "http://169.254.169.254/"}
    envelope["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    error = refused(verifier, envelope)
    assert error.reason == "bad_signature"
    assert error.nonces == ()  # nothing of an unverified payload is echoed
    assert len(verifier.replay) == 0


def test_signed_by_a_key_nobody_trusts(verifier: InstructionVerifier) -> None:
    error = refused(verifier, make_instruction_batch(generate_key(), [item(1)]))
    assert error.reason == "unknown_key" and error.nonces == ()


def test_wrong_type_either_way(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    # a single instruction presented as a batch, and a batch presented as a single instruction
    single = make_instruction(key, iss=ISS, aud=AUD, kind="ping", body={}, seq=1, now=NOW)
    assert refused(verifier, single).reason == "wrong_payload_type"
    batch = make_instruction_batch(key, [item(1)])
    with pytest.raises(VerificationError) as excinfo:
        verifier.verify(batch, now=NOW)
    assert excinfo.value.reason == "wrong_payload_type"
    # the payload of a batch, signed under the single instruction's type
    as_single = signed_batch(key, {"v": 1, "items": [item(1)]}, INSTRUCTION_TYPE)
    assert refused(verifier, as_single).reason == "wrong_payload_type"
    assert len(verifier.replay) == 0


def test_an_item_for_another_audience_refuses_the_whole_batch(
    key: Ed25519PrivateKey, verifier: InstructionVerifier
) -> None:
    items = [item(1), item(2, aud="office-paris/b"), item(3)]
    error = refused(verifier, signed_batch(key, {"v": 1, "items": items}))
    assert error.reason == "wrong_audience" and "item 1" in error.message
    assert error.nonce == items[1]["nonce"]
    assert error.nonces == tuple(p["nonce"] for p in items)  # each item is answered "rejected"
    assert len(verifier.replay) == 0  # not even the good items' nonces are recorded
    # the good items alone, in a batch of their own, are accepted afterwards
    assert len(verifier.verify_batch(signed_batch(key, {"v": 1, "items": [items[0], items[2]]}), now=NOW)) == 2


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"iat": NOW - 1000, "exp": NOW - 940}, "expired"),
        ({"iat": NOW + 100, "exp": NOW + 160}, "not_yet_valid"),
        ({"exp": NOW + 3600}, "lifetime_too_long"),
        ({"kind": "format_disk"}, "unknown_kind"),
        ({"v": 2}, "unsupported_version"),
        ({"nonce": "short"}, "malformed_payload"),
        ({"body": []}, "malformed_payload"),
    ],
)
def test_one_bad_item_refuses_the_whole_batch(
    key: Ed25519PrivateKey, verifier: InstructionVerifier, overrides: dict[str, Any], expected: str
) -> None:
    items = [item(1), item(2, **overrides), item(3)]
    error = refused(verifier, signed_batch(key, {"v": 1, "items": items}))
    assert error.reason == expected
    assert len(verifier.replay) == 0


def test_duplicate_nonce_inside_one_batch(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    items = _twice()
    error = refused(verifier, signed_batch(key, {"v": 1, "items": items}))
    assert error.reason == "replayed" and error.nonce == items[0]["nonce"]
    assert len(verifier.replay) == 0


def test_a_replayed_item_refuses_the_batch_and_records_none_of_its_nonces(
    key: Ed25519PrivateKey, verifier: InstructionVerifier
) -> None:
    old = item(1)
    verifier.verify_batch(make_instruction_batch(key, [old]), now=NOW)
    fresh = [item(2), item(3)]
    error = refused(verifier, make_instruction_batch(key, [fresh[0], old, fresh[1]]), now=NOW + 1)
    assert error.reason == "replayed" and error.nonce == old["nonce"]
    assert all(p["nonce"] not in verifier.replay for p in fresh)
    # the same nonce in a single instruction is a replay too, and the batch itself cannot come back
    single = make_instruction(key, iss=ISS, aud=AUD, kind="ping", body={}, seq=9, now=NOW, nonce=old["nonce"])
    with pytest.raises(VerificationError, match="replayed"):
        verifier.verify(single, now=NOW + 1)


def test_a_whole_batch_replayed(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    envelope = make_instruction_batch(key, [item(1), item(2)])
    verifier.verify_batch(envelope, now=NOW)
    assert refused(verifier, envelope, now=NOW + 5).reason == "replayed"


def test_an_oversized_batch_is_refused_before_its_signature_is_checked(
    key: Ed25519PrivateKey, verifier: InstructionVerifier
) -> None:
    payload = json.dumps({"v": 1, "items": [item(1, body={"padding": "x" * MAX_PAYLOAD_BYTES})]}).encode()
    envelope = {
        "payloadType": INSTRUCTION_BATCH_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "0" * 16, "sig": base64.b64encode(b"\0" * 64).decode()}],
    }
    assert refused(verifier, envelope).reason == "payload_too_large"


def test_too_many_items(key: Ed25519PrivateKey, verifier: InstructionVerifier) -> None:
    items = [item(i) for i in range(MAX_BATCH_ITEMS + 1)]
    error = refused(verifier, signed_batch(key, {"v": 1, "items": items}))
    assert error.reason == "payload_too_large"
    assert len(error.nonces) == MAX_BATCH_ITEMS  # bounded, like everything answered
    assert len(verifier.replay) == 0
    assert len(verifier.verify_batch(signed_batch(key, {"v": 1, "items": items[:-1]}), now=NOW)) == MAX_BATCH_ITEMS


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 1, "items": []},
        {"v": 1, "items": "all of them"},
        {"v": 1},
        {"v": 1, "items": [item(1), "not an object"]},
        {"items": [item(1)]},
        b'{"v": 1, "items": [], "items": []}',
        b"[]",
    ],
)
def test_malformed_batches(key: Ed25519PrivateKey, verifier: InstructionVerifier, payload: Any) -> None:
    assert refused(verifier, signed_batch(key, payload)).reason == "malformed_payload"
    assert len(verifier.replay) == 0
