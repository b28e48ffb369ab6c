"""Credentials for checks that log in: a secrets file at the checkpoint, referenced by name.

The control plane only ever knows credential *names*: a monitor says ``"credential": "mail-probe"``
and the agent looks the name up in the checkpoint's own secrets file, which the ``checkpoint``
role writes from Ansible Vault / AWX credentials and mounts read-only into the containers
(``VANTAGE_CREDENTIALS_FILE``). The file is JSON::

    {"credentials": {"mail-probe": {"username": "probe", "password": "..."},
                     "sftp-probe": {"username": "probe", "private_key": "-----BEGIN ...",
                                    "passphrase": "..."}}}

Every field is optional; a check says which ones it needs (:meth:`Credential.require`).

Secrets never leave the site: :meth:`CredentialStore.redact` replaces every secret value (and the
encodings a protocol library may echo: base64 of SASL PLAIN / HTTP Basic, URL and repr escapes)
with ``***``, and :func:`vantage.checks.run_check` applies it to a result's ``error``, warnings
and details before the result is returned — even when a server or library quotes a secret in an
error message. Error messages about the file itself name the credential and the field, never a
value.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from vantage import contract
from vantage.checks.result import CheckFailure

REDACTED = "***"
SECRET_FIELDS = ("password", "private_key", "passphrase")
CREDENTIAL_FIELDS = ("username", *SECRET_FIELDS)
MAX_FILE_BYTES = 1024 * 1024
MAX_VALUE_CHARS = 64 * 1024
#: Lines of a PEM body at least this long are redacted on their own too (a library may quote one).
_PEM_LINE_MIN = 16


class CredentialError(ValueError):
    """The credentials file is unreadable or invalid; the message never quotes a secret."""


@dataclass(frozen=True)
class Credential:
    """One named credential. ``repr`` and ``str`` show the name and which fields are set, never values."""

    name: str
    username: str | None = None
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None

    def __repr__(self) -> str:
        present = [f.name for f in fields(self) if f.name != "name" and getattr(self, f.name) is not None]
        return f"Credential(name={self.name!r}, fields={present!r})"

    __str__ = __repr__

    def require(self, *names: str, purpose: str = "this check") -> None:
        """Raise :class:`CheckFailure` unless every field in ``names`` is set."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise CheckFailure(
                f"credential {self.name!r} has no {' or '.join(missing)}, which {purpose} needs"
            )

    def secrets(self) -> list[str]:
        """The secret values (password, private key, passphrase) that are set."""
        return [value for value in (self.password, self.private_key, self.passphrase) if value]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _variants(credential: Credential) -> set[str]:
    """Every form in which a secret of ``credential`` may turn up in a message."""
    out: set[str] = set()
    for secret in credential.secrets():
        forms = {secret, secret.strip()}
        forms.add(repr(secret)[1:-1])
        forms.add(json.dumps(secret)[1:-1])
        forms.add(quote(secret, safe=""))
        forms.add(quote_plus(secret, safe=""))
        forms.add(_b64(secret))
        forms.add(_b64(secret).rstrip("="))
        if credential.username is not None:
            user = credential.username
            for joined in (f"\0{user}\0{secret}", f"{user}\0{user}\0{secret}", f"{user}:{secret}"):
                forms.add(_b64(joined))
                forms.add(_b64(joined).rstrip("="))
        if "-----BEGIN" in secret:  # a PEM key: each long body line, in case one is quoted alone
            for line in secret.splitlines():
                line = line.strip()
                if len(line) >= _PEM_LINE_MIN and not line.startswith("-----"):
                    forms.add(line)
        out.update(form for form in forms if form)
    return out


class CredentialStore:
    """The checkpoint's named credentials (immutable once loaded)."""

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_name: dict[str, Credential] = {}
        for credential in credentials:
            self._by_name[credential.name] = credential
        variants: set[str] = set()
        for credential in self._by_name.values():
            variants |= _variants(credential)
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = tuple(sorted(variants, key=lambda s: (-len(s), s)))
        self._pattern = (
            re.compile("|".join(re.escape(secret) for secret in self._secrets)) if self._secrets else None
        )

    def __repr__(self) -> str:
        return f"CredentialStore(names={sorted(self._by_name)!r})"

    @classmethod
    def empty(cls) -> CredentialStore:
        """A store without credentials (a checkpoint without a secrets file)."""
        return cls()

    @classmethod
    def from_mapping(cls, data: Any, source: str = "credentials") -> CredentialStore:
        """Validate the parsed file (``{"credentials": {name: {field: str}}}``) and build a store.

        Raises :class:`CredentialError` naming the offending credential and field.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("credentials"), Mapping):
            raise CredentialError(f'{source}: must be a JSON object {{"credentials": {{<name>: {{...}}}}}}')
        extra = sorted(str(key) for key in data if key != "credentials")
        if extra:
            raise CredentialError(f"{source}: unknown top-level key {extra[0]!r} (only 'credentials')")
        items: list[Credential] = []
        for name, entry in data["credentials"].items():
            if not contract.is_valid("credential_name", name):
                raise CredentialError(
                    f"{source}: credential name {name!r} is invalid "
                    f"({contract.RULES['credential_name'][1]})"
                )
            if not isinstance(entry, Mapping):
                raise CredentialError(f"{source}: credential {name!r} must be an object of fields")
            values: dict[str, str | None] = {}
            for key, value in entry.items():
                if key not in CREDENTIAL_FIELDS:
                    raise CredentialError(
                        f"{source}: credential {name!r} has unknown field {key!r} "
                        f"(allowed: {', '.join(CREDENTIAL_FIELDS)})"
                    )
                if value is None:
                    continue
                if not isinstance(value, str) or not value or len(value) > MAX_VALUE_CHARS:
                    raise CredentialError(
                        f"{source}: credential {name!r} field {key!r} must be a non-empty string "
                        f"of at most {MAX_VALUE_CHARS} characters"
                    )
                values[key] = value
            if not values:
                raise CredentialError(f"{source}: credential {name!r} has no fields")
            items.append(Credential(name=name, **values))
        return cls(items)

    @classmethod
    def load(cls, path: str | Path) -> CredentialStore:
        """Read and validate the credentials file at ``path``.

        Raises :class:`CredentialError` for an unreadable, oversized or invalid file. JSON syntax
        errors are reported by line and column only: the parser's message could quote a secret.
        """
        file = Path(path)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise CredentialError(f"cannot read {file}: {exc.strerror or exc}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise CredentialError(f"{file} is larger than {MAX_FILE_BYTES} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise CredentialError(f"{file} is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise CredentialError(
                f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno})"
            ) from None
        return cls.from_mapping(data, str(file))

    def names(self) -> frozenset[str]:
        """The credential names (not secret; reported to the control plane)."""
        return frozenset(self._by_name)

    def get(self, name: str) -> Credential:
        """The credential called ``name``; :class:`CheckFailure` when the checkpoint has none."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise CheckFailure(
                f"unknown credential {name!r}: not in this checkpoint's credentials file (known: {known})"
            ) from None

    def redact(self, text: str) -> str:
        """``text`` with every secret value (and its common encodings) replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def redact_value(self, value: Any) -> Any:
        """A deep copy of ``value`` (dicts, lists, strings, bytes) with :meth:`redact` applied to every string."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {
                (self.redact(key) if isinstance(key, str) else key): self.redact_value(item)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.redact_value(item) for item in value]
        if isinstance(value, (bytes, bytearray)):
            return self.redact(bytes(value).decode("utf-8", "replace"))
        return value
