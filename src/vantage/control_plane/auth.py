"""Bearer API tokens: creation, hashed storage, lookup and scope rules.

Tokens are 256-bit random strings, so a plain SHA-256 is an adequate one-way hash (no salt or
slow KDF needed: there is nothing to brute-force). Only the hash is stored; the lookup is by hash
and the final comparison is constant-time. Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vantage.control_plane.db import ApiToken, now
from vantage.control_plane.store import Store

TOKEN_PREFIX = "vt_"  # noqa: S105 - the prefix of every token, not a secret
BOOTSTRAP_NAME = "bootstrap-admin"
MIN_TOKEN_LENGTH = 16

#: permission a route needs → token scopes that grant it. ``admin`` grants everything.
GRANTS: dict[str, frozenset[str]] = {
    "read": frozenset({"read", "enroll", "admin"}),
    "enroll": frozenset({"enroll", "admin"}),
    "admin": frozenset({"admin"}),
}


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token's UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh high-entropy token (``vt_`` + 43 url-safe characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def allows(scopes: frozenset[str], permission: str) -> bool:
    """Whether a token with ``scopes`` may use a route that needs ``permission``."""
    return bool(scopes & GRANTS[permission])


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    token_id: int
    name: str
    scopes: frozenset[str]


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace stripped); :class:`ValueError` if unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read admin token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"admin token file {path} is not UTF-8 text") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ValueError(
            f"admin token file {path} must hold one token of at least {MIN_TOKEN_LENGTH} "
            "characters without whitespace"
        )
    return token


def _install_bootstrap(db: Session, digest: str, t: float) -> None:
    rows = db.scalars(select(ApiToken).where(ApiToken.bootstrap.is_(True))).all()
    for row in rows:
        if row.token_hash != digest:
            db.delete(row)
    db.flush()
    if not any(row.token_hash == digest for row in rows):
        other = db.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if other is not None:  # the same secret was issued as a normal token: promote it
            other.bootstrap, other.scopes = True, "admin"
        else:
            db.add(ApiToken(name=BOOTSTRAP_NAME, token_hash=digest, scopes="admin", created_at=t, bootstrap=True))


def _authenticate(db: Session, digest: str) -> Principal | None:
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.id, row.name, row.scope_set)


def _add(db: Session, row: ApiToken) -> ApiToken:
    db.add(row)
    db.flush()
    return row


def _list(db: Session) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).order_by(ApiToken.id)).all())


def _delete(db: Session, token_id: int) -> bool:
    row = db.get(ApiToken, token_id)
    if row is None:
        return False
    db.delete(row)
    return True


def token_row(db: Session, token_id: int) -> ApiToken | None:
    """The token's row (for the health page's session check)."""
    return db.get(ApiToken, token_id)


class TokenStore:
    """Token operations (each one store transaction)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def install_bootstrap(self, token: str) -> None:
        """Make ``token`` the bootstrap admin token, replacing a previous bootstrap token."""
        await self.store.run(_install_bootstrap, hash_token(token), now())

    async def create(self, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the secret (shown to the caller once)."""
        token = new_token()
        row = ApiToken(name=name, token_hash=hash_token(token), scopes=",".join(scopes), created_at=now())
        return await self.store.run(_add, row), token

    async def authenticate(self, token: str) -> Principal | None:
        """The principal for ``token``, or None."""
        return await self.store.run(_authenticate, hash_token(token))

    async def list(self) -> list[ApiToken]:
        return await self.store.run(_list)

    async def delete(self, token_id: int) -> bool:
        return await self.store.run(_delete, token_id)
