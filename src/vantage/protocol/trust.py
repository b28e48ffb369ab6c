"""The set of public keys a verifier trusts: the ``{"keys": [...]}`` file of docs/protocol.md."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vantage._fs import atomic_write
from vantage.protocol.keys import key_id, public_key_b64, public_key_from_b64

STATUSES = ("active", "next", "retired")
#: Trust stores hold public keys only: readable by all, writable by the owner.
TRUST_FILE_MODE = 0o644


@dataclass
class TrustedKey:
    """One trusted public key.

    ``status``: ``active`` (signs now), ``next`` (announced, trusted, not signing yet) or
    ``retired`` (never accepted). ``not_after``: unix seconds from which the key is no longer
    accepted, or ``None``.
    """

    keyid: str
    public_key: str
    status: str = "active"
    not_after: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ValueError` unless the entry is consistent."""
        if not isinstance(self.keyid, str) or not isinstance(self.public_key, str):
            raise ValueError("keyid and public_key must be strings")  # noqa: TRY004 - documented ValueError
        computed = key_id(public_key_from_b64(self.public_key))
        if computed != self.keyid:
            raise ValueError(
                f"keyid {self.keyid!r} does not match its public key (which has keyid {computed})"
            )
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.not_after is not None and (
            isinstance(self.not_after, bool)
            or not isinstance(self.not_after, int | float)
            or not math.isfinite(self.not_after)
        ):
            raise ValueError(f"not_after must be unix seconds or null, not {self.not_after!r}")

    def is_trusted(self, now: float) -> bool:
        """Accepted at ``now``: not retired and before ``not_after``."""
        return self.status != "retired" and (self.not_after is None or now < self.not_after)

    def to_json(self) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "public_key": self.public_key,
            "status": self.status,
            "not_after": self.not_after,
        }


_STATUS_STRICTNESS = {"next": 0, "active": 1, "retired": 2}


def _stricter(a: TrustedKey, b: TrustedKey) -> TrustedKey:
    """Combine two entries for one key id: retired wins, the earliest ``not_after`` wins.

    Between ``active`` and ``next`` (both trusted) ``active`` wins: a rotation promoted it.
    """
    status = max(a.status, b.status, key=_STATUS_STRICTNESS.__getitem__)
    limits = [t for t in (a.not_after, b.not_after) if t is not None]
    return TrustedKey(a.keyid, a.public_key, status, min(limits) if limits else None)


class TrustStore:
    """Trusted public keys by key id.

    :meth:`add` and :meth:`retire` change the store in place; :meth:`merge` and
    :meth:`copy` return new stores. Entries handed in or out are copies, so mutating a
    :class:`TrustedKey` never changes a store behind its back.
    """

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            self.add(key)

    # -- construction and serialisation -------------------------------------------------

    @classmethod
    def from_json(cls, obj: Any) -> TrustStore:
        """Build a store from the ``{"keys": [...]}`` shape; :class:`ValueError` names a bad entry."""
        if not isinstance(obj, Mapping) or not isinstance(obj.get("keys"), list):
            raise ValueError('trusted keys must be a JSON object {"keys": [...]}')  # noqa: TRY004
        store = cls()
        for index, entry in enumerate(obj["keys"]):
            label = f"trusted key #{index}"
            if isinstance(entry, Mapping) and isinstance(entry.get("keyid"), str):
                label += f" ({entry['keyid']!r})"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{label}: not an object")  # noqa: TRY004
            # Other fields (a control plane may add e.g. "created_at") carry no trust meaning
            # and are ignored, so that the GET /api/v1/signing-keys answer can be used as is.
            try:
                store.add(
                    TrustedKey(
                        keyid=entry.get("keyid"),  # type: ignore[arg-type]  # validated by TrustedKey
                        public_key=entry.get("public_key"),  # type: ignore[arg-type]
                        status=entry.get("status", "active"),
                        not_after=entry.get("not_after"),
                    )
                )
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
        return store

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        """Read a trusted-keys file; :class:`ValueError` naming ``path`` when invalid."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{path}: trusted keys file does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read trusted keys: {exc}") from None
        try:
            return cls.from_json(obj)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def single_key(cls, key: Ed25519PublicKey | Ed25519PrivateKey | str) -> TrustStore:
        """A store trusting exactly one key (a key object or its base64 public key), active."""
        b64 = key if isinstance(key, str) else public_key_b64(key)
        return cls([TrustedKey(key_id(b64), b64)])

    def to_json(self) -> dict[str, Any]:
        """The ``{"keys": [...]}`` shape, sorted by key id (stable output)."""
        return {"keys": [self._keys[k].to_json() for k in sorted(self._keys)]}

    def save(self, path: str | Path) -> None:
        """Write the store atomically (temp file, fsync, rename), mode 0644: public keys only."""
        data = (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode("utf-8")
        atomic_write(Path(path), data, mode=TRUST_FILE_MODE, overwrite=True)

    # -- queries --------------------------------------------------------------------------

    @property
    def keys(self) -> list[TrustedKey]:
        """Copies of all entries, sorted by key id."""
        return [dataclasses.replace(self._keys[k]) for k in sorted(self._keys)]

    def get(self, keyid: str) -> TrustedKey | None:
        """A copy of the entry for ``keyid``, or ``None``."""
        entry = self._keys.get(keyid)
        return None if entry is None else dataclasses.replace(entry)

    def __contains__(self, keyid: object) -> bool:
        return keyid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustStore) and self._keys == other._keys

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"TrustStore({self.keys!r})"

    def is_trusted(self, keyid: str, now: float | None = None) -> bool:
        """Whether ``keyid`` is known, not retired, and ``now`` is before its ``not_after``."""
        entry = self._keys.get(keyid)
        return entry is not None and entry.is_trusted(time.time() if now is None else now)

    def public_key(self, keyid: str) -> Ed25519PublicKey:
        """The public key of ``keyid`` (:class:`KeyError` when unknown), whatever its status."""
        return public_key_from_b64(self._keys[keyid].public_key)

    def active_keyids(self, now: float | None = None) -> list[str]:
        """Key ids with status ``active`` that are trusted at ``now``."""
        now = time.time() if now is None else now
        return [
            k
            for k in sorted(self._keys)
            if self._keys[k].status == "active" and self._keys[k].is_trusted(now)
        ]

    # -- changes --------------------------------------------------------------------------

    def add(self, key: TrustedKey) -> None:
        """Add ``key``; when its key id is already present the stricter entry results.

        So ``add`` can never revive a retired key nor lift a ``not_after``.
        """
        key = dataclasses.replace(key)  # copy, and re-validates through __post_init__
        existing = self._keys.get(key.keyid)
        self._keys[key.keyid] = key if existing is None else _stricter(existing, key)

    def retire(self, keyid: str, at: float) -> None:
        """Stop trusting ``keyid`` from ``at`` on (keeps an earlier ``not_after``; :class:`KeyError` if unknown)."""
        entry = self._keys[keyid]
        self._keys[keyid] = _stricter(entry, TrustedKey(entry.keyid, entry.public_key, entry.status, at))

    def merge(self, other: TrustStore) -> TrustStore:
        """A new store with the keys of both; for a key id in both, the stricter entry."""
        merged = self.copy()
        for entry in other._keys.values():
            merged.add(entry)
        return merged

    def copy(self) -> TrustStore:
        return TrustStore(self._keys.values())
