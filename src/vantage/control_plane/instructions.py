"""Signed instructions for one instance: the ``seq`` counter and the envelope.

These run inside a store transaction (a worker thread): ``seq`` is taken from the instance's
row, so it increases per instance whichever replica signs.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from sqlalchemy.orm import Session

from vantage.control_plane.db import Instance
from vantage.protocol import make_instruction


def take_seq(db: Session, checkpoint: str, instance: str, count: int = 1) -> int | None:
    """Reserve ``count`` sequence numbers of the instance; the last one, or None when it is gone."""
    last = db.scalar(
        update(Instance)
        .where(Instance.checkpoint == checkpoint, Instance.name == instance)
        .values(seq=Instance.seq + count)
        .returning(Instance.seq)
    )
    return None if last is None else int(last)


def sign(
    key: Ed25519PrivateKey, *, iss: str, checkpoint: str, instance: str, kind: str, body: dict[str, Any],
    seq: int, lifetime: int,
) -> dict[str, Any]:
    """The signed envelope of one instruction for ``<checkpoint>/<instance>``."""
    return make_instruction(
        key, iss=iss, aud=f"{checkpoint}/{instance}", kind=kind, body=body, seq=seq, lifetime=lifetime
    )


def sign_for(
    db: Session, key: Ed25519PrivateKey, *, iss: str, checkpoint: str, instance: str, kind: str,
    body: dict[str, Any], lifetime: int,
) -> dict[str, Any] | None:
    """Take the next ``seq`` of the instance and sign; None when the instance is no longer enrolled."""
    seq = take_seq(db, checkpoint, instance)
    if seq is None:
        return None
    return sign(key, iss=iss, checkpoint=checkpoint, instance=instance, kind=kind, body=body, seq=seq,
                lifetime=lifetime)
