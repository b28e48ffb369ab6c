# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_keys: the key id and public key rules of docs/protocol.md, modes, owners and atomic writes."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ansible_collections.vantage.checkpoint.plugins.module_utils import _keys

# RFC 8032 section 7.1, test 1: secret key and public key
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
# first 16 hex digits of SHA-256 over RFC8032_PUBLIC (also what vantage.protocol.key_id answers)
RFC8032_KEY_ID = "21fe31dfa154a261"


def test_key_id_and_public_key_of_a_known_key():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert _keys.public_key_raw(key) == RFC8032_PUBLIC
    assert _keys.public_key_b64(key) == base64.b64encode(RFC8032_PUBLIC).decode()
    assert _keys.key_id(key) == RFC8032_KEY_ID
    assert _keys.key_id_from_raw(RFC8032_PUBLIC) == RFC8032_KEY_ID
    assert _keys.key_id_from_b64(base64.b64encode(RFC8032_PUBLIC).decode()) == RFC8032_KEY_ID


@pytest.mark.parametrize("value", [
    "not base64!",
    base64.b64encode(b"x" * 31).decode(),
    base64.b64encode(b"x" * 33).decode(),
    base64.b64encode(RFC8032_PUBLIC).decode().rstrip("="),
    base64.urlsafe_b64encode(b"\xfb" * 32).decode(),
    " " + base64.b64encode(RFC8032_PUBLIC).decode(),
    None,
])
def test_public_keys_must_be_canonical_base64_of_32_bytes(value):
    with pytest.raises(ValueError):
        _keys.public_key_raw_from_b64(value)


def test_pem_round_trip_and_rejections(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = _keys.private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _keys.key_id(_keys.load_private_key_pem(pem, "k.pem")) == _keys.key_id(key)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    for data, words in ((encrypted, "encrypted"), (b"hello", "not an unencrypted PKCS#8"), (pem.replace(b"M", b"N", 3), "k.pem")):
        with pytest.raises(_keys.KeyFileError) as info:
            _keys.load_private_key_pem(data, "k.pem")
        assert str(info.value).startswith("k.pem: ") and words in str(info.value)


@pytest.mark.parametrize("value, expected", [
    (None, 0o600), ("0600", 0o600), ("600", 0o600), ("0o400", 0o400), ("0400", 0o400), (0o600, 0o600), ("0700", 0o700),
])
def test_private_modes(value, expected):
    assert _keys.parse_mode(value) == expected


@pytest.mark.parametrize("value", ["0640", "0604", "0660", "0666", "0200", "0000", "1600", "4600", "u=rw", "", "9", "0x180", True, 0o644, 0o10000])
def test_modes_that_are_not_private_are_refused(value):
    with pytest.raises(ValueError):
        _keys.parse_mode(value)


def test_an_unquoted_yaml_mode_gets_a_hint():
    with pytest.raises(ValueError) as info:
        _keys.parse_mode(600)  # what YAML makes of an unquoted 600
    assert "quoted octal string" in str(info.value)


def test_owner_and_group_resolution():
    assert _keys.resolve_owner(None) is None and _keys.resolve_group(None) is None
    assert _keys.resolve_owner("10001") == 10001 and _keys.resolve_group("10001") == 10001
    assert _keys.resolve_owner("root") == 0 and _keys.resolve_group("root") == 0
    with pytest.raises(ValueError):
        _keys.resolve_owner("no-such-user-vantage")
    with pytest.raises(ValueError):
        _keys.resolve_group("no-such-group-vantage")


def test_write_creates_the_temporary_file_private_and_exclusive(tmp_path, monkeypatch):
    """The temporary file is created with O_EXCL and mode 0600, whatever the umask."""
    opened = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        opened.append((path, flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    old_umask = os.umask(0)
    try:
        target = str(tmp_path / "key.pem")
        _keys.write_key_file(target, b"data", 0o600)
    finally:
        os.umask(old_umask)
    creates = [(p, f, m) for p, f, m in opened if f & os.O_CREAT]
    assert len(creates) == 1
    tmp, flags, mode = creates[0]
    assert os.path.dirname(tmp) == str(tmp_path) and tmp != target
    assert flags & os.O_EXCL and mode == 0o600
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["key.pem"]


def test_write_never_replaces_unless_told(tmp_path):
    target = tmp_path / "key.pem"
    target.write_bytes(b"theirs")
    with pytest.raises(_keys.KeyFileError):
        _keys.write_key_file(str(target), b"ours", 0o600)
    assert target.read_bytes() == b"theirs" and os.listdir(str(tmp_path)) == ["key.pem"]
    _keys.write_key_file(str(target), b"ours", 0o400, overwrite=True)
    assert target.read_bytes() == b"ours" and stat.S_IMODE(target.stat().st_mode) == 0o400


def test_open_key_file_refuses_links_and_non_files(tmp_path):
    real = tmp_path / "real.pem"
    real.write_bytes(b"x")
    link = tmp_path / "link.pem"
    link.symlink_to(real)
    with pytest.raises(_keys.KeyFileError) as info:
        _keys.OpenKeyFile(str(link))
    assert "symbolic link" in str(info.value)
    with pytest.raises(_keys.KeyFileError) as info:
        _keys.OpenKeyFile(str(tmp_path))
    assert "not a regular file" in str(info.value)
    with _keys.OpenKeyFile(str(real)) as handle:
        assert handle.data == b"x"


def test_fix_tightens_the_mode_through_the_descriptor(tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(b"x")
    os.chmod(str(path), 0o644)
    with _keys.OpenKeyFile(str(path)) as handle:
        handle.fix(0o600, None, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_remove_file(tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(b"x")
    assert _keys.remove_file(str(path)) is True and not path.exists()
    assert _keys.remove_file(str(path)) is False
    with pytest.raises(_keys.KeyFileError):
        _keys.remove_file(str(tmp_path))
