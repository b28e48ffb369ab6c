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

from vantage.control_plane.db import ApiToken, Database, now

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


class TokenStore:
    """Token operations on the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def install_bootstrap(self, token: str) -> None:
        """Make ``token`` the bootstrap admin token, replacing a previous bootstrap token."""
        digest = hash_token(token)
        with self.db.session() as session:
            rows = session.scalars(select(ApiToken).where(ApiToken.bootstrap.is_(True))).all()
            for row in rows:
                if row.token_hash != digest:
                    session.delete(row)
            session.flush()
            if not any(row.token_hash == digest for row in rows):
                other = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
                if other is not None:  # the same secret was issued as a normal token: promote it
                    other.bootstrap, other.scopes = True, "admin"
                else:
                    session.add(
                        ApiToken(
                            name=BOOTSTRAP_NAME,
                            token_hash=digest,
                            scopes="admin",
                            created_at=now(),
                            bootstrap=True,
                        )
                    )

    def create(self, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the secret (shown to the caller once)."""
        token = new_token()
        row = ApiToken(name=name, token_hash=hash_token(token), scopes=",".join(scopes), created_at=now())
        with self.db.session() as session:
            session.add(row)
        return row, token

    def authenticate(self, token: str) -> Principal | None:
        """The principal for ``token``, or None."""
        digest = hash_token(token)
        with self.db.session() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            return Principal(row.id, row.name, row.scope_set)

    def list(self) -> list[ApiToken]:
        with self.db.session() as session:
            return list(session.scalars(select(ApiToken).order_by(ApiToken.id)).all())

    def delete(self, token_id: int) -> bool:
        with self.db.session() as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                return False
            session.delete(row)
            return True
