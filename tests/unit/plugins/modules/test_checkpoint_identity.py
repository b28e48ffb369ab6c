# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""checkpoint_identity: creation, idempotence, check mode, drift, refusal, and no key material in results."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ansible_collections.vantage.checkpoint.plugins.module_utils import _keys
from ansible_collections.vantage.checkpoint.plugins.modules import checkpoint_identity

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing file ownership needs root")


def pem_body_lines(path):
    """The base64 lines of a PEM file: none of them may ever appear in a module's output."""
    with open(path, "rb") as handle:
        lines = handle.read().decode().splitlines()
    return [line for line in lines if line and not line.startswith("-----")]


def public_of(path):
    with open(path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode(), hashlib.sha256(raw).hexdigest()[:16]


@pytest.fixture
def identity(run_module):
    def run(check_mode=False, diff=True, **args):
        outcome = run_module(checkpoint_identity.main, args, check_mode=check_mode, diff=diff)
        path = args.get("path")
        if path and os.path.isfile(path) and not os.path.islink(path):
            try:
                for line in pem_body_lines(path):
                    assert line not in outcome.output, "private key material in the module's output"
            except UnicodeDecodeError:
                pass
        return outcome

    return run


def test_creates_a_0600_pkcs8_key_and_returns_only_public_data(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    run = identity(path=path)
    assert not run.failed and run.result["changed"] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "rb") as handle:
        assert handle.read().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    public_key, key_id = public_of(path)
    assert run.result["public_key"] == public_key and run.result["key_id"] == key_id
    assert set(run.result) == {"changed", "path", "public_key", "key_id", "diff", "invocation"}
    assert run.result["path"] == path
    assert run.result["diff"]["before"]["state"] == "absent"
    assert run.result["diff"]["after"] == dict(state="present", key_id=key_id, mode="0600", uid=os.geteuid(), gid=os.getegid())
    assert os.listdir(str(tmp_path)) == ["identity.pem"]  # no temporary file left behind


def test_second_run_is_unchanged_and_keeps_the_key(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    first = identity(path=path)
    with open(path, "rb") as handle:
        content = handle.read()
    second = identity(path=path)
    assert not second.failed and second.result["changed"] is False
    assert second.result["key_id"] == first.result["key_id"] and second.result["public_key"] == first.result["public_key"]
    with open(path, "rb") as handle:
        assert handle.read() == content
    assert second.result["diff"]["before"] == second.result["diff"]["after"]


def test_check_mode_writes_nothing(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    run = identity(path=path, check_mode=True)
    assert not run.failed and run.result["changed"] is True
    assert "public_key" not in run.result and "key_id" not in run.result
    assert os.listdir(str(tmp_path)) == []
    assert run.result["diff"]["after"]["state"] == "present" and run.result["diff"]["after"]["mode"] == "0600"


def test_mode_drift_is_corrected_without_regenerating(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    first = identity(path=path)
    os.chmod(path, 0o644)
    check = identity(path=path, check_mode=True)
    assert check.result["changed"] is True and stat.S_IMODE(os.stat(path).st_mode) == 0o644
    run = identity(path=path)
    assert run.result["changed"] is True and run.result["key_id"] == first.result["key_id"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (run.result["diff"]["before"]["mode"], run.result["diff"]["after"]["mode"]) == ("0644", "0600")


@needs_root
def test_ownership_is_set_at_creation_and_drift_is_corrected(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    first = identity(path=path, owner="10001", group="10001")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, 10001, 0o600)
    os.chown(path, 0, 0)
    check = identity(path=path, owner="10001", group="10001", check_mode=True)
    assert check.result["changed"] is True and os.stat(path).st_uid == 0
    run = identity(path=path, owner="10001", group="10001")
    assert run.result["changed"] is True and run.result["key_id"] == first.result["key_id"]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, 10001, 0o600)
    assert run.result["diff"]["before"]["uid"] == 0 and run.result["diff"]["after"]["uid"] == 10001
    assert identity(path=path, owner="10001", group="10001").result["changed"] is False


@needs_root
def test_force_keeps_the_owner_of_the_replaced_file(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    identity(path=path, owner="10001", group="10002")
    run = identity(path=path, force=True)
    st = os.stat(path)
    assert run.result["changed"] is True and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, 10002, 0o600)


@needs_root
def test_owner_by_name(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    run = identity(path=path, owner="root", group="root")
    assert not run.failed and os.stat(path).st_uid == 0


@pytest.mark.parametrize("content", [
    b"not a key at all\n",
    b"",
    b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    "ec",
    "encrypted",
])
def test_invalid_existing_file_is_refused_and_kept(identity, tmp_path, content):
    if content == "ec":
        content = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    elif content == "encrypted":
        content = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret"))
    path = tmp_path / "identity.pem"
    path.write_bytes(content)
    run = identity(path=str(path))
    assert run.failed and run.result["msg"].startswith(str(path) + ": ")
    assert "force=true" in run.result["msg"]
    assert path.read_bytes() == content
    if content:
        for line in content.decode().splitlines():
            if line and not line.startswith("-----"):
                assert line not in run.output


def test_force_replaces_an_invalid_file_and_regenerates_a_valid_one(identity, tmp_path):
    path = tmp_path / "identity.pem"
    path.write_bytes(b"garbage\n")
    check = identity(path=str(path), force=True, check_mode=True)
    assert check.result["changed"] is True and path.read_bytes() == b"garbage\n"
    run = identity(path=str(path), force=True)
    assert not run.failed and run.result["changed"] is True
    assert run.result["diff"]["before"]["key_id"] == "(invalid key file)"
    assert public_of(str(path))[1] == run.result["key_id"]
    again = identity(path=str(path), force=True)
    assert again.result["changed"] is True and again.result["key_id"] != run.result["key_id"]
    assert again.result["diff"]["before"]["key_id"] == run.result["key_id"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", ["0640", "0644", "0604", "0200", "4600", "u=rw", "0999", 0o640])
def test_modes_open_to_others_are_refused(identity, tmp_path, mode):
    run = identity(path=str(tmp_path / "identity.pem"), mode=mode)
    assert run.failed and "mode" in run.result["msg"]
    assert os.listdir(str(tmp_path)) == []


def test_mode_0400_is_accepted(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    run = identity(path=path, mode="0400")
    assert not run.failed and stat.S_IMODE(os.stat(path).st_mode) == 0o400
    assert identity(path=path, mode="0400").result["changed"] is False


def test_symlink_is_refused(identity, tmp_path):
    target = tmp_path / "real.pem"
    first = identity(path=str(target))
    assert not first.failed
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    run = identity(path=str(link))
    assert run.failed and "symbolic link" in run.result["msg"]


def test_missing_directory_fails(identity, tmp_path):
    run = identity(path=str(tmp_path / "missing" / "identity.pem"))
    assert run.failed and "does not exist" in run.result["msg"]


def test_unknown_owner_fails(identity, tmp_path):
    run = identity(path=str(tmp_path / "identity.pem"), owner="no-such-user-vantage")
    assert run.failed and "unknown user" in run.result["msg"]
    assert os.listdir(str(tmp_path)) == []


def test_absent_removes_the_key(identity, tmp_path):
    path = str(tmp_path / "identity.pem")
    created = identity(path=path)
    check = identity(path=path, state="absent", check_mode=True)
    assert check.result["changed"] is True and os.path.exists(path)
    run = identity(path=path, state="absent")
    assert run.result["changed"] is True and not os.path.exists(path)
    assert run.result["diff"]["before"]["key_id"] == created.result["key_id"] and run.result["diff"]["after"]["state"] == "absent"
    assert "public_key" not in run.result and "key_id" not in run.result
    assert identity(path=path, state="absent").result["changed"] is False


def test_missing_cryptography_is_reported(identity, tmp_path, monkeypatch):
    monkeypatch.setattr(_keys, "HAS_CRYPTOGRAPHY", False)
    monkeypatch.setattr(_keys, "CRYPTOGRAPHY_IMPORT_ERROR", "Traceback: No module named 'cryptography'")
    run = identity(path=str(tmp_path / "identity.pem"))
    assert run.failed and "cryptography" in run.result["msg"]
    assert os.listdir(str(tmp_path)) == []
