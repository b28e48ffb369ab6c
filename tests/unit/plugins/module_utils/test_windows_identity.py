# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_windows_identity: a Windows instance key is used only when its public key and access lists prove right."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_identity, _windows_sddl

PATH = "C:\\ProgramData\\Vantage\\checkpoints\\site\\a\\identity.pem"


def printed(created, key=None):
    """What ``vantage identity`` prints for ``key`` (one JSON line)."""
    key = key or Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return json.dumps({"public_key": base64.b64encode(raw).decode(), "key_id": hashlib.sha256(raw).hexdigest()[:16],
                       "created": created}) + "\r\n"


def run(stdout, rc=0, stderr=""):
    return {"rc": rc, "stdout": stdout, "stderr": stderr}


def report(keygen=None, readback=None, created=False, changed=False, **changes):
    answer = {"changed": changed, "path": PATH, "directory": PATH.rsplit("\\", 1)[0], "created": created,
              "keygen": keygen, "readback": readback, "directory_sddl": _windows_sddl.KEY_DIRECTORY,
              "file_sddl": _windows_sddl.KEY_FILE}
    answer.update(changes)
    return answer


def test_parse_identity_accepts_what_the_key_command_prints():
    line = printed(True)
    assert _windows_identity.parse_identity("pulling...\n" + line) == json.loads(line)


@pytest.mark.parametrize("stdout, words", [
    ("", "printed nothing"),
    ("Traceback (most recent call last)", "did not print JSON"),
    (json.dumps({"public_key": "x", "key_id": "y"}), "not {public_key, key_id, created}"),
    (json.dumps({"public_key": "x", "key_id": "y", "created": True, "private_key": "z"}), "not {public_key, key_id, created}"),
    (json.dumps({"public_key": "AAAA", "key_id": "0" * 16, "created": True}), "public key is not usable"),
    (json.dumps({"public_key": base64.b64encode(b"\x01" * 32).decode(), "key_id": "0" * 16, "created": True}),
     "whose key id is"),
    (json.dumps({"public_key": base64.b64encode(b"\x01" * 32).decode(), "key_id": "0" * 16, "created": "yes"}),
     "'created' is not true or false"),
])
def test_parse_identity_refuses_anything_else(stdout, words):
    with pytest.raises(ValueError) as info:
        _windows_identity.parse_identity(stdout)
    assert words in str(info.value)


def test_a_new_key_is_accepted_when_the_read_back_proves_the_same_key():
    key = Ed25519PrivateKey.generate()
    identity, reasons = _windows_identity.check_identity(report(
        keygen=run(printed(True, key)), readback=run(printed(False, key)), created=True, changed=True))
    assert reasons == []
    assert identity == dict(json.loads(printed(True, key)))


def test_an_existing_key_is_read_back():
    line = printed(False)
    identity, reasons = _windows_identity.check_identity(report(readback=run(line)))
    assert (identity, reasons) == (json.loads(line), [])


def test_a_different_key_read_back_fails_closed():
    identity, reasons = _windows_identity.check_identity(report(
        keygen=run(printed(True)), readback=run(printed(False)), created=True))
    assert identity is None
    assert len(reasons) == 1 and reasons[0].startswith("the key read back (key id ")


def test_a_read_back_that_creates_a_key_means_the_file_was_not_there():
    identity, reasons = _windows_identity.check_identity(report(readback=run(printed(True))))
    assert identity is None
    assert "reading the key back created a new key" in reasons[0]


def test_failed_key_commands_fail_closed_with_their_output():
    identity, reasons = _windows_identity.check_identity(report(
        keygen=run("", rc=1, stderr="vantage identity: error: [Errno 13] Permission denied"), created=True,
        file_sddl=None))
    assert identity is None
    assert reasons == [
        "creating the key failed (exit 1): vantage identity: error: [Errno 13] Permission denied",
        "the host did not report the access list of the key file %s" % PATH,
    ]
    identity, reasons = _windows_identity.check_identity(report(readback=run("", rc=125, stderr="image not found")))
    assert reasons == ["reading the key back as ContainerUser failed (exit 125): image not found"]


def test_a_key_file_readable_by_more_than_the_policy_fails_closed():
    wide = "D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;0x1200a9;;;BU)"
    identity, reasons = _windows_identity.check_identity(report(readback=run(printed(False)), file_sddl=wide))
    assert identity is None
    assert any("the key file %s inherits entries from its parent" % PATH == reason.split(" (")[0] for reason in reasons)
    assert any("grants Users (S-1-5-32-545)" in reason for reason in reasons)


def test_a_missing_read_back_is_refused():
    identity, reasons = _windows_identity.check_identity(report())
    assert reasons == ["the key %s was not read back through its final access list" % PATH]


def test_check_mode_proves_nothing_before_the_key_exists():
    assert _windows_identity.check_identity(report(created=True, changed=True, file_sddl=None), check_mode=True) == (None, [])
    line = printed(False)
    assert _windows_identity.check_identity(report(readback=run(line)), check_mode=True) == (json.loads(line), [])
