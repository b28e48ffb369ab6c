"""Signed release manifests: which image digest a channel should run, with rollback protection."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage.protocol import _payload
from vantage.protocol.constants import RELEASE_TYPE
from vantage.protocol.envelope import sign
from vantage.protocol.envelope import verify as verify_envelope
from vantage.protocol.errors import VerificationError
from vantage.protocol.trust import TrustStore

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_VERSION = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){0,7}")
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_IMAGE = re.compile(r"[^\s@]{1,512}")
DEFAULT_LIFETIME = 7 * 86400
DEFAULT_SKEW = 300


@dataclass(frozen=True)
class Release:
    """A verified release manifest: run ``image@digest`` (``version``) on ``channel``."""

    channel: str
    version: str
    image: str
    digest: str
    iat: int
    exp: int

    @property
    def reference(self) -> str:
        """``image@digest``, the reference to pull."""
        return f"{self.image}@{self.digest}"


def parse_version(version: str) -> tuple[int, ...]:
    """``"1.4.2"`` → ``(1, 4, 2)``. Dotted decimal numbers only (1 to 8 components of at most
    9 digits; no ``v`` prefix, no suffixes such as ``-rc1``); :class:`ValueError` otherwise."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValueError(f"version must be dotted numeric like 1.4.2, not {version!r}")
    return tuple(int(part) for part in version.split("."))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is lower than, equal to or higher than ``b`` (``1.4`` == ``1.4.0``)."""
    for x, y in itertools.zip_longest(parse_version(a), parse_version(b), fillvalue=0):
        if x != y:
            return -1 if x < y else 1
    return 0


def _validate(channel: str, version: str, image: str, digest: str) -> None:
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ValueError(f"invalid channel name {channel!r}")
    parse_version(version)
    if not isinstance(image, str) or not _IMAGE.fullmatch(image):
        raise ValueError(f"image must be a repository reference without a digest, not {image!r}")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ValueError(f"digest must be sha256:<64 lowercase hex>, not {digest!r}")


def make_release(
    key: Ed25519PrivateKey,
    *,
    channel: str,
    version: str,
    image: str,
    digest: str,
    lifetime: int = DEFAULT_LIFETIME,
    now: float | None = None,
) -> dict[str, Any]:
    """Build and sign a release manifest envelope."""
    _validate(channel, version, image, digest)
    if type(lifetime) is not int or lifetime <= 0:
        raise ValueError("lifetime must be a positive integer (seconds)")
    iat = int(time.time() if now is None else now)
    payload = {
        "channel": channel,
        "version": version,
        "image": image,
        "digest": digest,
        "iat": iat,
        "exp": iat + lifetime,
    }
    return sign(RELEASE_TYPE, _payload.encode(payload), key)


def verify_release(
    envelope: Mapping[str, Any],
    trust: TrustStore,
    *,
    channel: str,
    installed_version: str | None = None,
    now: float | None = None,
    skew: int = DEFAULT_SKEW,
) -> Release:
    """Verify a release envelope; return the :class:`Release` or raise :class:`VerificationError`.

    Order: envelope and key (``malformed_envelope``, ``unknown_key``, ``bad_signature``) →
    JSON (``malformed_payload``) → payload type (``wrong_payload_type``) → fields
    (``malformed_payload``) → ``channel`` (``wrong_channel``) → time (``not_yet_valid`` when
    ``iat > now + skew``, ``expired`` when ``now > exp + skew``) → ``downgrade`` when the
    version is lower than ``installed_version`` (the same version is accepted).
    ``installed_version`` itself must be valid (:class:`ValueError` otherwise).
    """
    if installed_version is not None:
        parse_version(installed_version)
    now = time.time() if now is None else now
    payload_type, payload, _keyid = verify_envelope(envelope, trust, now)
    obj = _payload.decode(payload)
    if payload_type != RELEASE_TYPE:
        raise VerificationError("wrong_payload_type", f"expected {RELEASE_TYPE}, got {payload_type[:80]!r}")
    fields = {
        name: _payload.require_str(obj, name, max_length=512)
        for name in ("channel", "version", "image", "digest")
    }
    iat = _payload.require_int(obj, "iat")
    exp = _payload.require_int(obj, "exp")
    try:
        _validate(fields["channel"], fields["version"], fields["image"], fields["digest"])
    except ValueError as exc:
        raise VerificationError("malformed_payload", str(exc)) from None
    if exp < iat:
        raise VerificationError("malformed_payload", "exp is before iat")
    release = Release(fields["channel"], fields["version"], fields["image"], fields["digest"], iat, exp)
    if release.channel != channel:
        raise VerificationError(
            "wrong_channel", f"manifest is for channel {release.channel!r}, not {channel!r}"
        )
    if iat > now + skew:
        raise VerificationError("not_yet_valid", f"issued at {iat}, now is {int(now)}")
    if now > exp + skew:
        raise VerificationError("expired", f"expired at {exp}, now is {int(now)}")
    if installed_version is not None and compare_versions(release.version, installed_version) < 0:
        raise VerificationError(
            "downgrade", f"version {release.version} is lower than the installed {installed_version}"
        )
    return release
