"""DSSE-style signed envelopes: the pre-authentication encoding, signing and verification.

An envelope is ``{"payloadType": T, "payload": base64(bytes), "signatures": [{"keyid", "sig"}]}``
and each signature covers ``PAE(T, payload)``, so the payload type is signed too.
:func:`verify` performs steps 1 and 2 of the verification order of ``docs/protocol.md`` and
never looks inside the payload; interpreting it is the caller's job, once this returned.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol.errors import VerificationError
from vantage.protocol.keys import key_id
from vantage.protocol.trust import TrustStore

#: Largest payload accepted (decoded bytes). Larger envelopes are refused unverified.
MAX_PAYLOAD_BYTES = 1024 * 1024
#: At most this many signatures are looked at; more make the envelope malformed.
MAX_SIGNATURES = 8
MAX_PAYLOAD_TYPE_LENGTH = 256
SIGNATURE_BYTES = 64

_MAX_PAYLOAD_B64 = 4 * -(-MAX_PAYLOAD_BYTES // 3)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`` with ``LEN`` the ASCII
    decimal length in bytes (the type is UTF-8 encoded).
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), bytes(payload))


def sign(payload_type: str, payload: bytes, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Sign ``payload`` as ``payload_type`` with ``key`` and return the envelope (a JSON-ready dict)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    signature = key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key_id(key), "sig": base64.b64encode(signature).decode("ascii")}],
    }


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise VerificationError("malformed_envelope", f"{what} is not valid base64") from None


def _parse(envelope: Mapping[str, Any]) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """Check the envelope's shape; return ``(type, payload, [(keyid, sig), ...])``."""
    if not isinstance(envelope, Mapping):
        raise VerificationError("malformed_envelope", "envelope is not a JSON object")
    payload_type = envelope.get("payloadType")
    payload_b64 = envelope.get("payload")
    signatures = envelope.get("signatures")
    if not isinstance(payload_type, str) or not payload_type:
        raise VerificationError("malformed_envelope", "payloadType must be a non-empty string")
    if len(payload_type) > MAX_PAYLOAD_TYPE_LENGTH:
        raise VerificationError("malformed_envelope", "payloadType is too long")
    if not isinstance(payload_b64, str):
        raise VerificationError("malformed_envelope", "payload must be a base64 string")
    if len(payload_b64) > _MAX_PAYLOAD_B64:
        raise VerificationError("payload_too_large", f"payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    if not isinstance(signatures, list) or not signatures:
        raise VerificationError("malformed_envelope", "signatures must be a non-empty list")
    if len(signatures) > MAX_SIGNATURES:
        raise VerificationError("malformed_envelope", f"more than {MAX_SIGNATURES} signatures")
    parsed: list[tuple[str, bytes]] = []
    for index, entry in enumerate(signatures):
        if not isinstance(entry, Mapping):
            raise VerificationError("malformed_envelope", f"signature {index} is not an object")
        keyid, sig_b64 = entry.get("keyid"), entry.get("sig")
        if not isinstance(keyid, str) or not isinstance(sig_b64, str):
            raise VerificationError("malformed_envelope", f"signature {index} needs string keyid and sig")
        sig = _b64(sig_b64, f"signature {index}")
        if len(sig) != SIGNATURE_BYTES:
            raise VerificationError("malformed_envelope", f"signature {index} is not {SIGNATURE_BYTES} bytes")
        parsed.append((keyid, sig))
    payload = _b64(payload_b64, "payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise VerificationError("payload_too_large", f"payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    return payload_type, payload, parsed


def verify(
    envelope: Mapping[str, Any], trust: TrustStore, now: float | None = None
) -> tuple[str, bytes, str]:
    """Verify ``envelope`` against ``trust``; return ``(payload_type, payload, keyid)``.

    Steps 1-2 of the verification order: the envelope is well formed
    (``malformed_envelope``, ``payload_too_large``), at least one signature names a key id
    trusted at ``now`` (``unknown_key``), and a signature by such a key verifies over the PAE
    (``bad_signature``). Signatures by unknown keys are ignored. The payload is returned as
    bytes, unparsed.
    """
    now = time.time() if now is None else now
    payload_type, payload, signatures = _parse(envelope)
    candidates = [(keyid, sig) for keyid, sig in signatures if trust.is_trusted(keyid, now)]
    if not candidates:
        names = ", ".join(repr(keyid[:32]) for keyid in sorted({keyid for keyid, _ in signatures}))
        raise VerificationError("unknown_key", f"no signature by a trusted key (key ids: {names})")
    message = pae(payload_type, payload)
    for keyid, sig in candidates:
        try:
            trust.public_key(keyid).verify(sig, message)
        except InvalidSignature:
            continue
        return payload_type, payload, keyid
    raise VerificationError("bad_signature", "signature does not verify")
