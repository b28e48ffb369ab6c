"""Signed instructions from the control plane to one checkpoint instance, singly or in batches.

:class:`InstructionVerifier` applies the verification order of ``docs/protocol.md`` exactly
and stops at the first failure with a :class:`~vantage.protocol.errors.VerificationError`
whose ``reason`` is the documented code.

A **batch** (:func:`make_instruction_batch`, :meth:`InstructionVerifier.verify_batch`) is one
signed envelope of type ``application/vnd.vantage.instruction-batch+json`` whose payload is
``{"v": 1, "items": [<instruction payload>, ...]}``: one signature verification for up to
:data:`MAX_BATCH_ITEMS` instructions, each item checked exactly like a single instruction's
payload.  A batch is atomic: one bad, expired, misaddressed, duplicated or replayed item refuses
the whole batch, and then none of its nonces is recorded.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vantage.protocol import _payload
from vantage.protocol.constants import INSTRUCTION_BATCH_TYPE, INSTRUCTION_TYPE
from vantage.protocol.envelope import sign
from vantage.protocol.envelope import verify as verify_envelope
from vantage.protocol.errors import VerificationError
from vantage.protocol.keys import key_id, public_key_b64
from vantage.protocol.replay import ReplayCache
from vantage.protocol.trust import TrustedKey, TrustStore

__all__ = [
    "KINDS",
    "MAX_BATCH_ITEMS",
    "Instruction",
    "InstructionVerifier",
    "ReplayCache",
    "apply_rotation",
    "instruction_payload",
    "make_instruction",
    "make_instruction_batch",
    "rotation_body",
]

PROTOCOL_VERSION = 1
#: Instruction kinds of protocol v1; anything else is refused (``unknown_kind``).
KINDS = frozenset({"run_check", "ping", "rotate_key", "configure", "drain"})
#: Most instructions one batch may carry (``payload_too_large`` beyond).
MAX_BATCH_ITEMS = 256
DEFAULT_SKEW = 30
DEFAULT_MAX_LIFETIME = 300
_AUDIENCE = re.compile(r"[^/\s]+/[^/\s]+")


@dataclass(frozen=True)
class Instruction:
    """A verified instruction; ``keyid`` is the key whose signature was accepted."""

    v: int
    iss: str
    aud: str
    iat: int
    exp: int
    nonce: str
    seq: int
    kind: str
    body: dict[str, Any]
    keyid: str


def instruction_payload(
    *,
    iss: str,
    aud: str,
    kind: str,
    body: Mapping[str, Any],
    seq: int,
    lifetime: int = 60,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """An instruction payload (``iat`` = ``now``, ``exp`` = ``iat + lifetime``), not yet signed.

    Sign one with :func:`make_instruction`'s envelope, or several together with
    :func:`make_instruction_batch`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown instruction kind {kind!r}")
    if not _AUDIENCE.fullmatch(aud):
        raise ValueError(f"aud must be '<checkpoint>/<instance>', not {aud!r}")
    if type(seq) is not int or seq < 0:
        raise ValueError("seq must be a non-negative integer")
    if type(lifetime) is not int or lifetime <= 0:
        raise ValueError("lifetime must be a positive integer (seconds)")
    nonce = secrets.token_hex(16) if nonce is None else nonce
    if not _payload.HEX32.fullmatch(nonce):
        raise ValueError("nonce must be 32 lowercase hex digits")
    iat = int(time.time() if now is None else now)
    return {
        "v": PROTOCOL_VERSION,
        "iss": iss,
        "aud": aud,
        "iat": iat,
        "exp": iat + lifetime,
        "nonce": nonce,
        "seq": seq,
        "kind": kind,
        "body": dict(body),
    }


def make_instruction(
    key: Ed25519PrivateKey,
    *,
    iss: str,
    aud: str,
    kind: str,
    body: Mapping[str, Any],
    seq: int,
    lifetime: int = 60,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Build and sign an instruction envelope (``iat`` = ``now``, ``exp`` = ``iat + lifetime``)."""
    payload = instruction_payload(
        iss=iss, aud=aud, kind=kind, body=body, seq=seq, lifetime=lifetime, now=now, nonce=nonce
    )
    return sign(INSTRUCTION_TYPE, _payload.encode(payload), key)


def make_instruction_batch(key: Ed25519PrivateKey, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sign several instruction payloads (:func:`instruction_payload`) as one batch envelope.

    Raises :class:`ValueError` for an empty batch, more than :data:`MAX_BATCH_ITEMS` items, an
    item that is not a valid instruction payload, a nonce used twice, or a payload over
    :data:`~vantage.protocol.envelope.MAX_PAYLOAD_BYTES`.  The verifier refuses a batch as a
    whole, so a control plane should put in one batch only instructions for one instance.
    """
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} instructions, not {len(items)}")
    nonces: set[str] = set()
    for index, item in enumerate(items):
        try:
            parsed = _parse_instruction(item, "")
        except VerificationError as exc:
            raise ValueError(f"item {index}: {exc}") from None
        if parsed.nonce in nonces:
            raise ValueError(f"item {index}: nonce {parsed.nonce} is used twice")
        nonces.add(parsed.nonce)
    payload = {"v": PROTOCOL_VERSION, "items": [dict(item) for item in items]}
    return sign(INSTRUCTION_BATCH_TYPE, _payload.encode(payload), key)


def _parse_instruction(obj: Mapping[str, Any], keyid: str) -> Instruction:
    """Field-level validation of an instruction payload (``malformed_payload``)."""
    _payload.require_version(obj, PROTOCOL_VERSION)
    iss = _payload.require_str(obj, "iss")
    aud = _payload.require_str(obj, "aud", max_length=512)
    iat = _payload.require_int(obj, "iat")
    exp = _payload.require_int(obj, "exp")
    nonce = _payload.require_str(obj, "nonce", pattern=_payload.HEX32)
    seq = _payload.require_int(obj, "seq", maximum=2**63 - 1)
    kind = _payload.require_str(obj, "kind", max_length=64)
    body = obj.get("body")
    if not isinstance(body, dict):
        raise VerificationError("malformed_payload", "body must be an object")
    if exp < iat:
        raise VerificationError("malformed_payload", "exp is before iat")
    if kind not in KINDS:
        raise VerificationError("unknown_kind", f"instruction kind {kind[:64]!r} is not supported")
    return Instruction(PROTOCOL_VERSION, iss, aud, iat, exp, nonce, seq, kind, body, keyid)


class InstructionVerifier:
    """Verifies instruction envelopes addressed to ``audience`` (``<checkpoint>/<instance>``).

    ``trust`` is a public attribute: replace it after a rotation
    (``verifier.trust = apply_rotation(verifier.trust, instruction)``).
    """

    def __init__(
        self,
        trust: TrustStore,
        audience: str,
        replay: ReplayCache,
        *,
        skew: int = DEFAULT_SKEW,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> None:
        if skew < 0 or max_lifetime <= 0:
            raise ValueError("skew must be >= 0 and max_lifetime > 0")
        self.trust = trust
        self.audience = audience
        self.replay = replay
        self.skew = skew
        self.max_lifetime = max_lifetime

    def verify(self, envelope: Mapping[str, Any], now: float | None = None) -> Instruction:
        """Return the verified :class:`Instruction` or raise :class:`VerificationError`.

        Order (docs/protocol.md): 1 well-formed envelope and trusted key id (``malformed_envelope``,
        ``unknown_key``) → 2 signature over the PAE (``bad_signature``) → 3 JSON parse
        (``malformed_payload``) → 4 payload type (``wrong_payload_type``), then the fields
        (``malformed_payload``, ``unsupported_version``, ``unknown_kind``) → 5 audience
        (``wrong_audience``) → 6 time (``not_yet_valid``, ``lifetime_too_long``, ``expired``)
        → 7 nonce (``replayed``). The nonce is recorded only when everything else passed.
        """
        now = time.time() if now is None else now
        payload_type, payload, keyid = verify_envelope(envelope, self.trust, now)
        obj = _payload.decode(payload)
        try:
            if payload_type != INSTRUCTION_TYPE:
                raise _wrong_type(INSTRUCTION_TYPE, payload_type)
            instruction = self._check(obj, keyid, now)
            self.replay.check_and_add(instruction.nonce, instruction.exp + self.skew, now)
            return instruction
        except VerificationError as exc:
            # the payload is signed by a trusted key: its nonce may be echoed in "rejected"
            nonce = _nonce_of(obj)
            if exc.nonce is None and nonce is not None:
                exc.nonce = nonce
            exc.nonces = () if exc.nonce is None else (exc.nonce,)
            raise

    def verify_batch(self, envelope: Mapping[str, Any], now: float | None = None) -> list[Instruction]:
        """Return the verified instructions of a batch envelope, in order, or raise.

        Steps 1-3 as for one instruction; 4 the payload type is the batch type
        (``wrong_payload_type``), ``v`` and ``items`` are well formed (``malformed_payload``,
        ``unsupported_version``; an empty list is malformed, more than :data:`MAX_BATCH_ITEMS`
        is ``payload_too_large``); then every item in order through the single instruction's
        fields, audience and time checks; last the nonces: none twice in the batch and none
        seen before (``replayed``).  Any failure refuses the whole batch and records none of its
        nonces; ``VerificationError.nonces`` lists the item nonces that could be read.
        """
        now = time.time() if now is None else now
        payload_type, payload, keyid = verify_envelope(envelope, self.trust, now)
        obj = _payload.decode(payload)
        try:
            if payload_type != INSTRUCTION_BATCH_TYPE:
                raise _wrong_type(INSTRUCTION_BATCH_TYPE, payload_type)
            _payload.require_version(obj, PROTOCOL_VERSION)
            items = obj.get("items")
            if not isinstance(items, list) or not items:
                raise VerificationError("malformed_payload", "items must be a non-empty list")
            if len(items) > MAX_BATCH_ITEMS:
                raise VerificationError(
                    "payload_too_large", f"{len(items)} items; a batch holds at most {MAX_BATCH_ITEMS}"
                )
            instructions = []
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    raise VerificationError("malformed_payload", f"item {index} is not an object")
                try:
                    instructions.append(self._check(item, keyid, now))
                except VerificationError as exc:
                    exc.message = f"item {index}: {exc.message}"
                    exc.nonce = exc.nonce or _nonce_of(item)
                    raise
            self.replay.check_and_add_many([(i.nonce, i.exp + self.skew) for i in instructions], now)
            return instructions
        except VerificationError as exc:
            raw = obj.get("items")
            found = (_nonce_of(item) for item in raw) if isinstance(raw, list) else iter(())
            exc.nonces = tuple(dict.fromkeys(n for n in found if n is not None))[:MAX_BATCH_ITEMS]
            raise

    def _check(self, obj: dict[str, Any], keyid: str, now: float) -> Instruction:
        """The fields, audience and time of one instruction payload whose signature verified."""
        instruction = _parse_instruction(obj, keyid)
        if instruction.aud != self.audience:
            raise VerificationError(
                "wrong_audience", f"addressed to {instruction.aud[:80]!r}, not {self.audience!r}"
            )
        if instruction.iat > now + self.skew:
            raise VerificationError("not_yet_valid", f"issued at {instruction.iat}, now is {int(now)}")
        if instruction.exp - instruction.iat > self.max_lifetime:
            raise VerificationError(
                "lifetime_too_long",
                f"lifetime {instruction.exp - instruction.iat}s exceeds {self.max_lifetime}s",
            )
        if now > instruction.exp + self.skew:
            raise VerificationError("expired", f"expired at {instruction.exp}, now is {int(now)}")
        return instruction


def _wrong_type(expected: str, payload_type: str) -> VerificationError:
    return VerificationError("wrong_payload_type", f"expected {expected}, got {payload_type[:80]!r}")


def _nonce_of(obj: Any) -> str | None:
    nonce = obj.get("nonce") if isinstance(obj, dict) else None
    return nonce if isinstance(nonce, str) and _payload.HEX32.fullmatch(nonce) else None


def apply_rotation(trust: TrustStore, instruction: Instruction) -> TrustStore:
    """Apply a verified ``rotate_key`` instruction; return the new store (``trust`` is unchanged).

    The new key is added as ``active`` and ``retire_keyid`` gets ``not_after = retire_at``
    (an earlier ``not_after`` is kept). Raises ``VerificationError("invalid_rotation")`` when
    the body is malformed, the key id does not match the public key, the key to retire is
    unknown or is the new key itself, or the new key is already retired (never revived).
    The caller persists the result (``TrustStore.save``).
    """
    if instruction.kind != "rotate_key":
        raise VerificationError("invalid_rotation", f"not a rotate_key instruction ({instruction.kind})")
    body = instruction.body
    new = body.get("key")
    retire_keyid = body.get("retire_keyid")
    retire_at = body.get("retire_at")
    if (
        not isinstance(new, Mapping)
        or not isinstance(new.get("keyid"), str)
        or not isinstance(new.get("public_key"), str)
    ):
        raise VerificationError("invalid_rotation", "body.key must be {keyid, public_key}")
    if not isinstance(retire_keyid, str):
        raise VerificationError("invalid_rotation", "body.retire_keyid must be a key id")
    if type(retire_at) is not int or not 0 <= retire_at <= _payload.MAX_TIMESTAMP:
        raise VerificationError("invalid_rotation", "body.retire_at must be unix seconds (integer)")
    try:
        entry = TrustedKey(new["keyid"], new["public_key"], "active")
    except ValueError as exc:
        raise VerificationError("invalid_rotation", f"new key: {exc}") from None
    if entry.keyid == retire_keyid:
        raise VerificationError("invalid_rotation", "the new key cannot retire itself")
    if retire_keyid not in trust:
        raise VerificationError(
            "invalid_rotation", f"key to retire {retire_keyid[:32]!r} is not in the trust store"
        )
    existing = trust.get(entry.keyid)
    if existing is not None and existing.status == "retired":
        raise VerificationError(
            "invalid_rotation", f"key {entry.keyid} is retired and cannot be trusted again"
        )
    rotated = trust.copy()
    rotated.add(entry)
    rotated.retire(retire_keyid, retire_at)
    return rotated


def rotation_body(
    new_key: Ed25519PrivateKey | Ed25519PublicKey | str, *, retire_keyid: str, retire_at: int
) -> dict[str, Any]:
    """The ``rotate_key`` body announcing ``new_key`` (an Ed25519 key or its base64 public key)."""
    b64 = new_key if isinstance(new_key, str) else public_key_b64(new_key)
    return {
        "key": {"keyid": key_id(b64), "public_key": b64},
        "retire_keyid": retire_keyid,
        "retire_at": int(retire_at),
    }
