"""The control plane's signing keys: the active key file, rotation, and the published trust store.

Files, all PKCS#8 PEM, mode 0600, in the directory of ``--signing-key PATH``:

- ``PATH``       the key that signs now;
- ``PATH.next``  exists only during a rotation (written before anything else changes);
- ``PATH.prev``  the key rotated out last, kept so that instances which were offline during the
  rotation can still be sent a ``rotate_key`` they trust until the old key's retirement time.

The public halves, with their retirement times (``not_after``), are in the ``signing_keys``
table; ``GET /api/v1/signing-keys`` is built from it. Several replicas share one key: each must
be given the same key file, a replica whose key differs from the one live replicas sign with
refuses to start, and the rotate endpoint works only while one replica runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from vantage.control_plane.db import SigningKeyRecord, now
from vantage.control_plane.store import Store
from vantage.protocol import (
    generate_key,
    key_id,
    load_or_create_private_key,
    load_private_key,
    public_key_b64,
    rotation_body,
    write_private_key,
)

log = logging.getLogger("vantage.control_plane.keys")


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the instances must be told with a ``rotate_key`` signed by ``old``."""

    old: Ed25519PrivateKey
    new: Ed25519PrivateKey
    retire_at: int

    def body(self) -> dict[str, Any]:
        """The ``rotate_key`` instruction body (docs/protocol.md)."""
        return rotation_body(self.new, retire_keyid=key_id(self.old), retire_at=self.retire_at)


class SigningKeys:
    """Loads, creates and rotates the signing key; publishes the trusted public keys."""

    def __init__(self, path: str | Path, store: Store) -> None:
        self.path = Path(path)
        self.next_path = self.path.with_name(self.path.name + ".next")
        self.prev_path = self.path.with_name(self.path.name + ".prev")
        self.store = store
        self._current: Ed25519PrivateKey | None = None
        self.pending: Rotation | None = None

    @property
    def current(self) -> Ed25519PrivateKey:
        if self._current is None:
            raise RuntimeError("signing key not loaded")
        return self._current

    @property
    def keyid(self) -> str:
        return key_id(self.current)

    async def load(self, *, shared: bool = False) -> bool:
        """Load (or create, 0600) the signing key and reconcile the database; True if created.

        ``shared``: other replicas are running; then this key must be the one they sign with.
        """
        return await self.store.run(self._load, shared)

    def _load(self, session: Session, shared: bool) -> bool:
        self._finish_interrupted_rotation(session)
        key, created = load_or_create_private_key(self.path)
        if created:
            log.info("created signing key %s (keyid %s)", self.path, key_id(key))
        current_id = key_id(key)
        t = now()
        rows = {row.keyid: row for row in session.scalars(select(SigningKeyRecord)).all()}
        signing = [row.keyid for row in rows.values() if row.not_after is None]
        if shared and signing and current_id not in signing:
            raise RuntimeError(
                f"the signing key {self.path} (keyid {current_id}) is not the key the running replicas "
                f"sign with ({', '.join(signing)}): give every replica the same key file"
            )
        self._current = key
        record = rows.get(current_id)
        if record is None:
            session.add(
                SigningKeyRecord(
                    keyid=current_id, public_key=public_key_b64(key), created_at=t, not_after=None
                )
            )
        elif record.not_after is not None:
            log.warning("signing key %s was retired; it signs again now", current_id)
            record.not_after = None
        for row in rows.values():
            if row.keyid != current_id and row.not_after is None:
                log.warning("signing key %s was replaced outside a rotation; retiring it now", row.keyid)
                row.not_after = t
        self.pending = self._load_pending_rotation(session, key)
        return created

    def _finish_interrupted_rotation(self, session: Session) -> None:
        if not self.next_path.exists():
            return
        nxt = load_private_key(self.next_path)
        committed = session.get(SigningKeyRecord, key_id(nxt)) is not None
        if committed:
            log.warning("completing an interrupted key rotation to %s", key_id(nxt))
            if self.path.exists():
                os.replace(self.path, self.prev_path)
            os.replace(self.next_path, self.path)
        else:
            log.warning("discarding an uncommitted key rotation (%s)", self.next_path)
            self.next_path.unlink()

    def _load_pending_rotation(self, session: Session, current: Ed25519PrivateKey) -> Rotation | None:
        if not self.prev_path.exists():
            return None
        try:
            prev = load_private_key(self.prev_path)
        except ValueError as exc:
            log.warning("ignoring previous signing key: %s", exc)
            return None
        record = session.get(SigningKeyRecord, key_id(prev))
        if record is None or record.not_after is None or record.not_after <= now():
            return None
        return Rotation(old=prev, new=current, retire_at=int(record.not_after))

    async def rotate(self, grace_s: float) -> Rotation:
        """Make a new key the signing key; the old one stays trusted for ``grace_s`` seconds.

        Order: new key file (``.next``), both public keys committed, then the files renamed — a
        crash in between is repaired at the next start (:meth:`_finish_interrupted_rotation`).
        """
        old = self.current
        new = generate_key()
        retire_at = int(now() + grace_s)
        write_private_key(self.next_path, new, overwrite=True)
        await self.store.run(_record_rotation, old, new, retire_at)
        os.replace(self.path, self.prev_path)
        os.replace(self.next_path, self.path)
        self._current = new
        self.pending = Rotation(old=old, new=new, retire_at=retire_at)
        log.info("rotated signing key %s -> %s (old key retires at %d)", key_id(old), key_id(new), retire_at)
        return self.pending

    def pending_rotation(self) -> Rotation | None:
        """The last rotation while its old key is still trusted (to re-announce on connect)."""
        if self.pending is not None and self.pending.retire_at > now():
            return self.pending
        return None

    async def trust_json(self) -> dict[str, Any]:
        """The ``GET /api/v1/signing-keys`` answer (the trusted-keys file shape)."""
        return await self.store.run(self._trust_json)

    def _trust_json(self, session: Session) -> dict[str, Any]:
        t = now()
        current_id = self.keyid
        rows = session.scalars(select(SigningKeyRecord).order_by(SigningKeyRecord.created_at)).all()
        keys = []
        for row in rows:
            if row.keyid == current_id:
                status, not_after = "active", None
            elif row.not_after is not None and row.not_after > t:
                status, not_after = "active", int(row.not_after)
            else:
                status = "retired"
                not_after = int(row.not_after) if row.not_after is not None else None
            keys.append({"keyid": row.keyid, "public_key": row.public_key, "status": status, "not_after": not_after})
        return {"keys": keys}


def _record_rotation(session: Session, old: Ed25519PrivateKey, new: Ed25519PrivateKey, retire_at: int) -> None:
    session.add(SigningKeyRecord(keyid=key_id(new), public_key=public_key_b64(new), created_at=now(), not_after=None))
    record = session.get(SigningKeyRecord, key_id(old))
    if record is not None:
        record.not_after = retire_at
