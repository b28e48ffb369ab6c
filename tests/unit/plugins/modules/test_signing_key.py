# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""signing_key: create/read, rotation files left to the control plane, absent, no key material."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ansible_collections.vantage.checkpoint.plugins.module_utils import _keys
from ansible_collections.vantage.checkpoint.plugins.modules import signing_key


def write_key(path):
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return _keys.key_id(key), data


@pytest.fixture
def sign(run_module):
    def run(check_mode=False, diff=True, **args):
        return run_module(signing_key.main, args, check_mode=check_mode, diff=diff)

    return run


def test_creates_and_reads_the_signing_key(sign, tmp_path):
    path = str(tmp_path / "signing.pem")
    check = sign(path=path, check_mode=True)
    assert check.result["changed"] is True and os.listdir(str(tmp_path)) == []
    run = sign(path=path)
    assert not run.failed and run.result["changed"] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "rb") as handle:
        data = handle.read()
    key = serialization.load_pem_private_key(data, password=None)
    assert run.result["key_id"] == _keys.key_id(key) and run.result["public_key"] == _keys.public_key_b64(key)
    assert run.result["previous_key_id"] is None and run.result["rotation_pending"] is False
    for line in data.decode().splitlines():
        if not line.startswith("-----"):
            assert line not in run.output
    again = sign(path=path)
    assert again.result["changed"] is False and again.result["key_id"] == run.result["key_id"]


def test_rotation_files_are_reported_and_left_alone(sign, tmp_path):
    path = str(tmp_path / "signing.pem")
    current_id, current = write_key(path)
    previous_id, previous = write_key(path + ".prev")
    next_id, upcoming = write_key(path + ".next")
    run = sign(path=path)
    assert not run.failed and run.result["changed"] is False
    assert run.result["key_id"] == current_id and run.result["previous_key_id"] == previous_id
    assert run.result["rotation_pending"] is True
    assert "rotation was interrupted" in run.warnings
    for name, data in ((path, current), (path + ".prev", previous), (path + ".next", upcoming)):
        with open(name, "rb") as handle:
            assert handle.read() == data
    assert next_id not in run.output


def test_an_unreadable_previous_key_is_ignored_with_a_warning(sign, tmp_path):
    path = str(tmp_path / "signing.pem")
    write_key(path)
    with open(path + ".prev", "wb") as handle:
        handle.write(b"junk")
    run = sign(path=path)
    assert not run.failed and run.result["previous_key_id"] is None
    assert "previous signing key" in run.warnings


def test_there_is_no_force_or_rotate_option(sign, tmp_path):
    path = str(tmp_path / "signing.pem")
    for option in ("force", "rotate"):
        run = sign(path=path, **{option: True})
        assert run.failed and "Unsupported parameters" in run.result["msg"]
    assert os.listdir(str(tmp_path)) == []


def test_an_invalid_key_file_is_refused(sign, tmp_path):
    path = tmp_path / "signing.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    run = sign(path=str(path))
    assert run.failed and run.result["msg"].startswith(str(path) + ": ") and "backup" in run.result["msg"]


def test_mode_drift_is_corrected(sign, tmp_path):
    path = str(tmp_path / "signing.pem")
    key_id, dummy = write_key(path)
    os.chmod(path, 0o640)
    run = sign(path=path)
    assert run.result["changed"] is True and run.result["key_id"] == key_id
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_absent_removes_the_key_and_its_rotation_files(sign, tmp_path):
    path = str(tmp_path / "signing.pem")
    write_key(path)
    write_key(path + ".prev")
    check = sign(path=path, state="absent", check_mode=True)
    assert check.result["changed"] is True and len(os.listdir(str(tmp_path))) == 2
    assert check.result["diff"]["before"]["files"] == sorted([path, path + ".prev"])
    run = sign(path=path, state="absent")
    assert run.result["changed"] is True and os.listdir(str(tmp_path)) == []
    assert sign(path=path, state="absent").result["changed"] is False
