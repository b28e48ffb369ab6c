"""Signed instructions for one instance: the ``seq`` counter, envelopes and batches.

``take_seq`` and ``sign_for`` run inside a store transaction (a worker thread): ``seq`` is taken
from the instance's row, so it increases per instance whichever replica signs. The checks the
scheduler dispatches are stored as payloads and signed when they are sent: one envelope each
(:func:`sign_payload`), or several for one instance in one batch envelope (:func:`batches`,
:func:`sign_batch`; docs/protocol.md, "Batches of instructions") when the instance announced
the ``instruction_batch`` feature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from sqlalchemy.orm import Session

from vantage.control_plane.db import Instance
from vantage.protocol import MAX_BATCH_ITEMS, make_instruction, make_instruction_batch

#: the feature an agent announces in its heartbeats when it accepts batches
BATCH_FEATURE = "instruction_batch"
#: instructions in one batch at most (the protocol allows :data:`MAX_BATCH_ITEMS`)
BATCH_ITEMS = min(64, MAX_BATCH_ITEMS)
#: encoded payload bytes of one batch at most (the protocol allows 1 MiB per envelope)
BATCH_BYTES = 256 * 1024


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


def sign_payload(key: Ed25519PrivateKey, payload: dict[str, Any]) -> dict[str, Any]:
    """The single-instruction envelope of a stored payload (same nonce, ``iat`` and ``exp``)."""
    return make_instruction(
        key, iss=payload["iss"], aud=payload["aud"], kind=payload["kind"], body=payload["body"],
        seq=payload["seq"], lifetime=payload["exp"] - payload["iat"], now=payload["iat"], nonce=payload["nonce"],
    )


def sign_batch(key: Ed25519PrivateKey, payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One batch envelope for ``payloads`` (all for one instance; see :func:`batches`)."""
    return make_instruction_batch(key, payloads)


def batches(payloads: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``payloads`` in order, cut into batches of at most :data:`BATCH_ITEMS` and about :data:`BATCH_BYTES`."""
    batch: list[dict[str, Any]] = []
    size = 0
    for payload in payloads:
        length = len(json.dumps(payload, separators=(",", ":")))
        if batch and (len(batch) == BATCH_ITEMS or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(payload)
        size += length
    if batch:
        yield batch


def stored_payload(text: str) -> dict[str, Any]:
    """A dispatch row's instruction payload.

    Rows written before payloads were stored hold the whole signed single envelope; its payload
    is the same object (it was signed by this control plane).
    """
    value: dict[str, Any] = json.loads(text)
    if "payloadType" in value:
        decoded: dict[str, Any] = json.loads(base64.b64decode(value["payload"]))
        return decoded
    return value
