"""Small-order and non-canonical Ed25519 public keys are refused by every layer that takes a key."""

from __future__ import annotations

import base64
import json
import time

import pytest

from vantage.protocol import (
    HELLO_TYPE,
    TrustStore,
    VerificationError,
    generate_key,
    public_key_b64,
    public_key_from_b64,
    verify_hello,
)
from vantage.protocol.keys import check_public_point

P = 2**255 - 19
ORDER_8_Y = ("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
             "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def _with_sign(raw: bytes) -> bytes:
    return raw[:31] + bytes([raw[31] | 0x80])


#: all eight points of small order, each in its canonical encoding
SMALL_ORDER = {
    "identity": (1).to_bytes(32, "little"),
    "order 2": (P - 1).to_bytes(32, "little"),
    "order 4": bytes(32),
    "order 4, other sign": _with_sign(bytes(32)),
    **{f"order 8 #{i}": bytes.fromhex(y) for i, y in enumerate(ORDER_8_Y)},
    **{f"order 8 #{i}, other sign": _with_sign(bytes.fromhex(y)) for i, y in enumerate(ORDER_8_Y)},
}
NON_CANONICAL = {
    "y = p": P.to_bytes(32, "little"),
    "y = p + 1": (P + 1).to_bytes(32, "little"),
    "y = 2^255 - 1": (2**255 - 1).to_bytes(32, "little"),
    "identity with the sign bit": _with_sign((1).to_bytes(32, "little")),
    "order 2 with the sign bit": _with_sign((P - 1).to_bytes(32, "little")),
}
NOT_ON_CURVE = {"y = 2": (2).to_bytes(32, "little")}
BAD = {**SMALL_ORDER, **NON_CANONICAL, **NOT_ON_CURVE}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("raw", list(BAD.values()), ids=list(BAD))
def test_bad_points_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"small order|canonical|on the curve"):
        check_public_point(raw)
    with pytest.raises(ValueError):
        public_key_from_b64(_b64(raw))


def test_generated_keys_pass() -> None:
    for _ in range(50):
        key = public_key_b64(generate_key())
        assert public_key_from_b64(key) is not None


@pytest.mark.parametrize("raw", list(SMALL_ORDER.values())[:3], ids=list(SMALL_ORDER)[:3])
def test_trust_store_refuses_small_order_keys(raw: bytes) -> None:
    from vantage.protocol import key_id

    entry = {"keyid": key_id(raw), "public_key": _b64(raw), "status": "active", "not_after": None}
    with pytest.raises(ValueError, match="small order"):
        TrustStore.from_json({"keys": [entry]})


def test_forged_hello_for_a_small_order_key_never_verifies() -> None:
    """R = identity, S = 0 "verifies" for 32 zero bytes a quarter of the time; the key is refused first."""
    from vantage.protocol import key_id

    zero = bytes(32)
    signature = _b64((1).to_bytes(32, "little") + bytes(32))
    challenge = "ab" * 32
    refused = 0
    for offset in range(-20, 20):
        payload = json.dumps({"v": 1, "challenge": challenge, "checkpoint": "cp1", "instance": "a",
                              "control_plane": "http://127.0.0.1:1", "iat": int(time.time()) + offset}).encode()
        envelope = {"payloadType": HELLO_TYPE, "payload": _b64(payload),
                    "signatures": [{"keyid": key_id(zero), "sig": signature}]}
        with pytest.raises((ValueError, VerificationError)):
            verify_hello(envelope, enrolled_public_key=_b64(zero), challenge=challenge, checkpoint="cp1",
                         instance="a", control_plane="http://127.0.0.1:1")
        refused += 1
    assert refused == 40
