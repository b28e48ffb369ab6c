"""Ed25519 keys: generation, PKCS#8 PEM files (mode 0600), base64 public keys and key ids.

The PKCS#8 form of an unencrypted Ed25519 key is fixed (RFC 8410 §7): a 16-byte DER prefix and
the 32-byte seed.  It is written and read here directly; only a file in any other form goes
through ``cryptography``'s general key parser, which says what is wrong with it.  That parser
(``cryptography.hazmat.primitives.serialization``) pulls in every other algorithm and the SSH
key formats, about 2 MB of the agent's resident memory for a key it reads once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vantage._fs import atomic_write

PUBLIC_KEY_BYTES = 32
PRIVATE_KEY_MODE = 0o600
#: DER of PKCS#8 (OneAsymmetricKey v1) for Ed25519, up to the 32-byte seed (RFC 8410 §7)
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"

AnyKey = Ed25519PrivateKey | Ed25519PublicKey


def generate_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    body = base64.b64encode(_PKCS8_ED25519_PREFIX + key.private_bytes_raw())  # 64 characters: one line
    return _PEM_BEGIN + b"\n" + body + b"\n" + _PEM_END + b"\n"


def _pkcs8_seed(data: bytes) -> bytes | None:
    """The seed of a PEM file holding exactly one unencrypted Ed25519 PKCS#8 key, else None."""
    text = data.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        return None
    body = b"".join(text[len(_PEM_BEGIN) : -len(_PEM_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(_PKCS8_ED25519_PREFIX) + 32 or not der.startswith(_PKCS8_ED25519_PREFIX):
        return None
    return der[len(_PKCS8_ED25519_PREFIX) :]


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PKCS#8 PEM file.

    Raises :class:`ValueError` naming ``path`` when the file is missing, unreadable, not PEM,
    encrypted, or holds another kind of key.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: private key file does not exist") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read private key: {exc.strerror or exc}") from None
    seed = _pkcs8_seed(data)
    if seed is not None:
        return Ed25519PrivateKey.from_private_bytes(seed)
    # Any other form: the general parser, for an exact diagnosis (or another valid encoding).
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"{path}: private key is encrypted; Vantage expects an unencrypted key") from None
    except (ValueError, binascii.Error):
        raise ValueError(f"{path}: not a PEM-encoded private key") from None
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"{path}: cannot load private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key ({type(key).__name__})")  # noqa: TRY004
    return key


def write_private_key(path: str | Path, key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` as PKCS#8 PEM, mode 0600 from the moment the file exists.

    The write is atomic (temporary file in the same directory, fsync, rename). An existing
    file raises :class:`FileExistsError` unless ``overwrite`` is true.
    """
    atomic_write(Path(path), private_key_pem(key), mode=PRIVATE_KEY_MODE, overwrite=overwrite)


def load_or_create_private_key(path: str | Path) -> tuple[Ed25519PrivateKey, bool]:
    """Load the key at ``path``, or create it (and missing parent directories, mode 0700).

    Returns ``(key, created)``. An existing but invalid file is an error, never replaced.
    """
    path = Path(path)
    if path.exists():
        return load_private_key(path), False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = generate_key()
    try:
        write_private_key(path, key, overwrite=False)
    except FileExistsError:  # somebody else created it meanwhile: theirs wins
        return load_private_key(path), False
    return key, True


def _public(key: AnyKey) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, Ed25519PublicKey):
        return key
    raise TypeError(f"expected an Ed25519 key, got {type(key).__name__}")


def public_key_bytes(key: AnyKey) -> bytes:
    """The raw 32-byte public key of a private or public key."""
    return _public(key).public_bytes_raw()


def public_key_b64(key: AnyKey) -> str:
    """The public key as standard, padded base64 of its raw 32 bytes."""
    return base64.b64encode(public_key_bytes(key)).decode("ascii")


def public_key_raw_from_b64(value: str) -> bytes:
    """Decode a base64 public key to its 32 raw bytes; :class:`ValueError` unless canonical."""
    if not isinstance(value, str):
        raise ValueError(f"public key must be a base64 string, not {type(value).__name__}")  # noqa: TRY004
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise ValueError("public key is not valid base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("public key is not canonical base64")
    return raw


# Edwards25519 (RFC 8032, section 5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = (0, 1)


def _decode_point(raw: bytes) -> tuple[int, int]:
    """The affine point of a 32-byte encoding; :class:`ValueError` unless canonical and on the curve."""
    encoded = int.from_bytes(raw, "little")
    sign, y = encoded >> 255, encoded & ((1 << 255) - 1)
    if y >= _P:
        raise ValueError("public key is not a canonical encoding (y >= p)")
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P != 0:
            raise ValueError("public key is not a point on the curve")
    if x == 0 and sign:
        raise ValueError("public key is not a canonical encoding (x = 0 with the sign bit set)")
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P
    return x3, y3


@functools.lru_cache(maxsize=4096)
def check_public_point(raw: bytes) -> None:
    """Refuse a raw Ed25519 public key that no honest key generation produces.

    :class:`ValueError` for a non-canonical encoding (``y >= p``, or ``x = 0`` with the sign bit
    set), a value that is not a curve point, and a point of small order (one of the 8 torsion
    points, the identity included): with such a key a signature can be forged without any secret
    (for example ``R`` = identity, ``S`` = 0 verifies for a quarter of all messages). The same
    rule as libsodium's ``crypto_sign_verify_detached``. Every layer that accepts a public key —
    enrollment at the control plane, trusted-keys files, hello verification — goes through
    :func:`public_key_from_b64` and therefore through here.
    """
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    point = _decode_point(raw)
    for _ in range(3):  # [8]P
        point = _add(point, point)
    if point == _IDENTITY:
        raise ValueError("public key is a point of small order")


def public_key_from_b64(value: str) -> Ed25519PublicKey:
    """An :class:`Ed25519PublicKey` from base64 of its raw 32 bytes (:class:`ValueError` if bad).

    Small-order and non-canonical keys are refused (:func:`check_public_point`).
    """
    raw = public_key_raw_from_b64(value)
    check_public_point(raw)
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"invalid Ed25519 public key: {exc}") from None


def key_id(key: AnyKey | bytes | str) -> str:
    """The key id: first 16 lowercase hex digits of SHA-256 over the raw 32-byte public key.

    Accepts a private key, a public key, the raw 32 bytes, or the base64 public key string.
    """
    if isinstance(key, str):
        raw = public_key_raw_from_b64(key)
    elif isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
        if len(raw) != PUBLIC_KEY_BYTES:
            raise ValueError(f"raw public key must be {PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    else:
        raw = public_key_bytes(key)
    return hashlib.sha256(raw).hexdigest()[:16]
