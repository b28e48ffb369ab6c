"""Keys: PKCS#8 files with mode 0600 from creation, base64 public keys and key ids."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage import _fs
from vantage.protocol.keys import (
    generate_key,
    key_id,
    load_or_create_private_key,
    load_private_key,
    public_key_b64,
    public_key_from_b64,
    write_private_key,
)

# RFC 8032, section 7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_key_is_pkcs8_pem_with_mode_0600(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "identity.pem"
    write_private_key(path, key)
    assert mode_of(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert key_id(load_private_key(path)) == key_id(key)
    assert [p.name for p in tmp_path.iterdir()] == ["identity.pem"]  # no temporary file left


def test_key_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.pem", generate_key())
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "k.pem") == 0o600


def test_key_bytes_are_never_written_to_a_readable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_write = os.write

    def spying_write(fd: int, data: bytes | memoryview) -> int:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(_fs.os, "write", spying_write)
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.pem", generate_key())
    finally:
        os.umask(old)
        monkeypatch.undo()
    assert modes and set(modes) == {0o600}


def test_existing_key_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    first, second = generate_key(), generate_key()
    write_private_key(path, first)
    with pytest.raises(FileExistsError):
        write_private_key(path, second)
    assert key_id(load_private_key(path)) == key_id(first)
    write_private_key(path, second, overwrite=True)
    assert key_id(load_private_key(path)) == key_id(second)
    assert mode_of(path) == 0o600


def test_load_or_create_creates_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "identity.pem"
    key, created = load_or_create_private_key(path)
    assert created is True
    assert mode_of(path) == 0o600
    again, created_again = load_or_create_private_key(path)
    assert created_again is False
    assert key_id(again) == key_id(key)


def test_load_or_create_never_replaces_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    path.write_text("not a key")
    with pytest.raises(ValueError, match=r"identity\.pem"):
        load_or_create_private_key(path)
    assert path.read_text() == "not a key"


def test_load_private_key_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing\.pem.*does not exist"):
        load_private_key(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00\x01 hello")
    with pytest.raises(ValueError, match=r"garbage\.pem.*not a PEM"):
        load_private_key(garbage)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = tmp_path / "ec.pem"
    other.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match=r"ec\.pem.*not an Ed25519"):
        load_private_key(other)
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        generate_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match=r"enc\.pem.*encrypted"):
        load_private_key(encrypted)


def test_key_id_is_first_16_hex_of_sha256_of_raw_public_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    expected = hashlib.sha256(RFC8032_PUBLIC).hexdigest()[:16]
    assert len(expected) == 16
    assert key_id(key) == expected
    assert key_id(key.public_key()) == expected
    assert key_id(RFC8032_PUBLIC) == expected
    assert key_id(base64.b64encode(RFC8032_PUBLIC).decode()) == expected


def test_public_key_b64_round_trip() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    b64 = public_key_b64(key)
    assert b64 == base64.b64encode(RFC8032_PUBLIC).decode()
    assert public_key_b64(public_key_from_b64(b64)) == b64


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        base64.b64encode(b"\x00" * 31).decode(),
        base64.b64encode(b"\x00" * 33).decode(),
        base64.b64encode(RFC8032_PUBLIC).decode().rstrip("="),  # unpadded
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # URL-safe alphabet
    ],
)
def test_public_key_from_b64_rejects_bad_input(value: str) -> None:
    with pytest.raises(ValueError):
        public_key_from_b64(value)


def test_key_id_rejects_wrong_length_raw_bytes() -> None:
    with pytest.raises(ValueError):
        key_id(b"\x00" * 31)


def test_the_pem_written_is_what_the_general_serializer_writes_and_both_load(tmp_path: Path) -> None:
    key = generate_key()
    general = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_key(tmp_path / "k.pem", key)
    assert (tmp_path / "k.pem").read_bytes() == general
    # a file from another tool, with other line breaks, loads the same way
    (tmp_path / "other.pem").write_bytes(general.replace(b"\n", b"\r\n") + b"\n")
    assert load_private_key(tmp_path / "other.pem").private_bytes_raw() == key.private_bytes_raw()


def test_loading_the_usual_key_file_leaves_the_general_key_parser_unimported(tmp_path: Path) -> None:
    """The agent reads one key at start: the parser of every other format is not worth ~2 MB."""
    import subprocess
    import sys

    write_private_key(tmp_path / "k.pem", generate_key())
    code = (
        "import sys; from vantage.protocol import load_private_key, key_id; "
        f"key_id(load_private_key({str(tmp_path / 'k.pem')!r})); "
        "print('cryptography.hazmat.primitives.serialization' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
