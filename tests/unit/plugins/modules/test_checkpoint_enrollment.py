# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""checkpoint_enrollment against a fake control plane served over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import socket

import pytest

from ansible_collections.vantage.checkpoint.plugins.modules import checkpoint_enrollment

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()


def kid(public_key):
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


@pytest.fixture
def enroll(run_module, control_plane):
    """Run the module against the fake control plane; every run is checked for the token."""

    def run(check_mode=False, diff=True, **args):
        params = dict(control_plane_url=control_plane.url, api_token=control_plane.GOOD_TOKEN, checkpoint="office", instance="a")
        params.update(args)
        outcome = run_module(checkpoint_enrollment.main, params, check_mode=check_mode, diff=diff)
        for token in (control_plane.GOOD_TOKEN, control_plane.READ_TOKEN, "wrong-token-abcdefghijklmnop"):
            assert token not in outcome.output
        return outcome

    return run


def test_enroll_creates_checkpoint_and_instance(enroll, control_plane):
    run = enroll(public_key=KEY_A)
    assert not run.failed and run.result["changed"] is True
    assert run.result["checkpoint_created"] is True
    assert run.result["key_id"] == kid(KEY_A)
    instance = run.result["instance"]
    assert (instance["checkpoint"], instance["name"], instance["public_key"], instance["key_id"]) == ("office", "a", KEY_A, kid(KEY_A))
    assert isinstance(instance["enrolled_at"], float)
    assert [(m, p) for m, p, body, auth in control_plane.requests] == [
        ("GET", "/api/v1/checkpoints/office"),
        ("PUT", "/api/v1/checkpoints/office"),
        ("PUT", "/api/v1/checkpoints/office/instances/a"),
    ]
    assert control_plane.requests[2][2] == {"public_key": KEY_A, "replace": False}
    assert all(auth == "Bearer " + control_plane.GOOD_TOKEN for m, p, b, auth in control_plane.requests)
    assert control_plane.checkpoints["office"]["a"]["public_key"] == KEY_A
    assert run.result["diff"] == {
        "before": {"checkpoint_exists": False, "enrolled": False, "key_id": None},
        "after": {"checkpoint_exists": True, "enrolled": True, "key_id": kid(KEY_A)},
    }


def test_enroll_in_existing_checkpoint_does_not_touch_it(enroll, control_plane):
    control_plane.checkpoints["office"] = {}
    run = enroll(public_key=KEY_A)
    assert run.result["changed"] is True and run.result["checkpoint_created"] is False
    assert [(m, p) for m, p, b, a in control_plane.writes()] == [("PUT", "/api/v1/checkpoints/office/instances/a")]


def test_same_key_again_is_unchanged_and_only_reads(enroll, control_plane):
    enroll(public_key=KEY_A)
    control_plane.requests[:] = []
    run = enroll(public_key=KEY_A)
    assert not run.failed and run.result["changed"] is False
    assert run.result["key_id"] == kid(KEY_A) and run.result["instance"]["public_key"] == KEY_A
    assert control_plane.writes() == []
    assert run.result["diff"]["before"] == run.result["diff"]["after"]


def test_check_mode_predicts_without_changing_anything(enroll, control_plane):
    run = enroll(public_key=KEY_A, check_mode=True)
    assert not run.failed and run.result["changed"] is True and run.result["checkpoint_created"] is True
    assert run.result["instance"] == dict(checkpoint="office", name="a", public_key=KEY_A, key_id=kid(KEY_A), enrolled_at=None)
    assert control_plane.writes() == [] and control_plane.checkpoints == {}
    assert run.result["diff"]["after"]["key_id"] == kid(KEY_A)


def test_other_key_is_a_conflict_naming_the_enrolled_key_id(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    for check_mode in (True, False):
        run = enroll(public_key=KEY_B, check_mode=check_mode)
        assert run.failed
        assert "already enrolled with key id %s" % kid(KEY_A) in run.result["msg"]
        assert "replace=true" in run.result["msg"]
        assert run.result["enrolled_key_id"] == kid(KEY_A)
    assert control_plane.writes() == []
    assert control_plane.checkpoints["office"]["a"]["public_key"] == KEY_A


def test_replace_enrolls_the_new_key(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    check = enroll(public_key=KEY_B, replace=True, check_mode=True)
    assert check.result["changed"] is True and control_plane.writes() == []
    run = enroll(public_key=KEY_B, replace=True)
    assert not run.failed and run.result["changed"] is True
    assert run.result["key_id"] == kid(KEY_B)
    assert control_plane.writes()[0][2] == {"public_key": KEY_B, "replace": True}
    assert control_plane.checkpoints["office"]["a"]["public_key"] == KEY_B
    assert run.result["diff"]["before"]["key_id"] == kid(KEY_A) and run.result["diff"]["after"]["key_id"] == kid(KEY_B)
    again = enroll(public_key=KEY_B, replace=True)
    assert again.result["changed"] is False


def test_conflict_discovered_by_the_put_is_reported_too(enroll, control_plane):
    control_plane.checkpoints["office"] = {}

    def race(fake):  # another host enrolls instance a between the module's GET and PUT
        fake.add_instance("office", "a", KEY_B)
        fake.before_put_instance = None

    control_plane.before_put_instance = race
    run = enroll(public_key=KEY_A)
    assert run.failed and "already enrolled with key id %s" % kid(KEY_B) in run.result["msg"]


def test_absent_removes_then_is_unchanged(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    control_plane.add_instance("office", "b", KEY_B)
    check = enroll(state="absent", check_mode=True)
    assert check.result["changed"] is True and control_plane.writes() == []
    run = enroll(state="absent")
    assert not run.failed and run.result["changed"] is True
    assert run.result["instance"] is None and run.result["key_id"] is None
    assert run.result["diff"] == {"before": {"enrolled": True, "key_id": kid(KEY_A)}, "after": {"enrolled": False, "key_id": None}}
    assert [(m, p) for m, p, b, a in control_plane.writes()] == [("DELETE", "/api/v1/checkpoints/office/instances/a")]
    assert list(control_plane.checkpoints["office"]) == ["b"]
    control_plane.requests[:] = []
    again = enroll(state="absent")
    assert again.result["changed"] is False and control_plane.writes() == []


def test_absent_with_missing_checkpoint_is_unchanged(enroll, control_plane):
    run = enroll(state="absent")
    assert not run.failed and run.result["changed"] is False and control_plane.writes() == []


def test_missing_checkpoint_without_create_checkpoint_fails(enroll, control_plane):
    run = enroll(public_key=KEY_A, create_checkpoint=False)
    assert run.failed and "checkpoint office does not exist" in run.result["msg"]
    assert control_plane.writes() == []


def test_wrong_token_is_an_authentication_error_without_the_token(enroll, control_plane):
    run = enroll(public_key=KEY_A, api_token="wrong-token-abcdefghijklmnop")
    assert run.failed and run.result["msg"].startswith("authentication failed")
    assert "HTTP 401" in run.result["msg"] and run.result["status"] == 401


def test_token_without_enroll_scope_is_an_authorization_error(enroll, control_plane):
    run = enroll(public_key=KEY_A, api_token=control_plane.READ_TOKEN)
    assert run.failed and run.result["msg"].startswith("authorization failed")
    assert "HTTP 403" in run.result["msg"] and "enroll scope" in run.result["msg"]
    assert control_plane.checkpoints == {}


def test_unreachable_control_plane(enroll):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % probe.getsockname()[1]
    run = enroll(public_key=KEY_A, control_plane_url=url, timeout=5)
    assert run.failed and run.result["msg"].startswith("cannot reach the control plane at %s: " % url)


def test_server_error_reports_status_and_message(enroll, control_plane):
    control_plane.fail_with = (500, {"error": "database is locked"})
    run = enroll(public_key=KEY_A)
    assert run.failed and "HTTP 500" in run.result["msg"] and "database is locked" in run.result["msg"]


def test_redirects_are_not_followed(enroll, control_plane):
    run = enroll(public_key=KEY_A, control_plane_url=control_plane.url + "/redirect")
    assert run.failed and "redirect" in run.result["msg"] and "HTTP 302" in run.result["msg"]
    assert not any(p.startswith("/elsewhere") for m, p, b, a in control_plane.requests)


def test_invalid_public_key_fails_before_any_request(enroll, control_plane):
    for bad in ("not base64!", base64.b64encode(b"short").decode(), KEY_A.rstrip("=")):
        run = enroll(public_key=bad)
        assert run.failed and run.result["msg"].startswith("public_key: ")
    assert control_plane.requests == []


def test_invalid_names_fail_before_any_request(enroll, control_plane):
    run = enroll(public_key=KEY_A, checkpoint="Office/../x")
    assert run.failed and "checkpoint" in run.result["msg"]
    run = enroll(public_key=KEY_A, instance="A")
    assert run.failed and "instance" in run.result["msg"]
    assert control_plane.requests == []


def test_public_key_required_when_present(enroll, control_plane):
    run = enroll()
    assert run.failed and "public_key" in run.result["msg"]


def test_missing_ca_file_fails_before_any_request(enroll, control_plane, tmp_path):
    run = enroll(public_key=KEY_A, ca_path=str(tmp_path / "missing.pem"))
    assert run.failed and "ca_path" in run.result["msg"] and control_plane.requests == []
    assert not enroll(public_key=KEY_A, ca_path="").failed  # empty: the system trust store


def test_bad_url_fails(enroll):
    run = enroll(public_key=KEY_A, control_plane_url="ftp://cp.example.com")
    assert run.failed and "https://" in run.result["msg"]
    run = enroll(public_key=KEY_A, control_plane_url="https://user:pw@cp.example.com")
    assert run.failed and "credentials" in run.result["msg"]


def test_plain_http_outside_loopback_is_refused_before_any_request(enroll, control_plane):
    for url in ("http://cp.example.com", "http://10.0.0.1:8443"):
        run = enroll(public_key=KEY_A, control_plane_url=url)
        assert run.failed and run.result["msg"].startswith("control_plane_url must be an https:// URL")
    assert control_plane.requests == []


def test_tls_with_the_control_planes_ca(run_module, tls_control_plane):
    params = dict(control_plane_url=tls_control_plane.url, api_token=tls_control_plane.GOOD_TOKEN, checkpoint="office", instance="a", public_key=KEY_A)
    untrusted = run_module(checkpoint_enrollment.main, dict(params, timeout=5))
    assert untrusted.failed and untrusted.result["msg"].startswith("cannot reach the control plane at %s: " % tls_control_plane.url)
    assert "certificate" in untrusted.result["msg"].lower()
    assert tls_control_plane.requests == []
    trusted = run_module(checkpoint_enrollment.main, dict(params, ca_path=tls_control_plane.ca_path))
    assert not trusted.failed and trusted.result["changed"] is True
    unverified = run_module(checkpoint_enrollment.main, dict(params, validate_certs=False))
    assert not unverified.failed and unverified.result["changed"] is False
    for run in (untrusted, trusted, unverified):
        assert tls_control_plane.GOOD_TOKEN not in run.output


# --- credentials: the names the checkpoint declares (never the secrets) ----------------------------


def test_credentials_are_declared_with_a_new_checkpoint(enroll, control_plane):
    run = enroll(public_key=KEY_A, credentials=["sftp-probe", "mail-probe", "mail-probe"])
    assert not run.failed and run.result["changed"] is True
    assert run.result["credentials"] == ["mail-probe", "sftp-probe"]
    assert control_plane.requests[1][:3] == ("PUT", "/api/v1/checkpoints/office", {"credentials": ["mail-probe", "sftp-probe"]})
    assert control_plane.credentials["office"] == ["mail-probe", "sftp-probe"]
    assert run.result["diff"]["before"]["credentials"] == [] and run.result["diff"]["after"]["credentials"] == ["mail-probe", "sftp-probe"]
    control_plane.requests[:] = []
    again = enroll(public_key=KEY_A, credentials=["mail-probe", "sftp-probe"])
    assert again.result["changed"] is False and again.result["credentials"] == ["mail-probe", "sftp-probe"]
    assert control_plane.writes() == []


def test_credentials_of_an_enrolled_instance_are_made_equal_with_one_put(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    control_plane.credentials["office"] = ["db-probe", "mail-probe"]
    check = enroll(public_key=KEY_A, credentials=["mail-probe", "sftp-probe"], check_mode=True)
    assert check.result["changed"] is True and control_plane.writes() == []
    assert check.result["credentials"] == ["mail-probe", "sftp-probe"]
    assert check.result["diff"]["before"]["credentials"] == ["db-probe", "mail-probe"]
    assert check.result["diff"]["after"]["credentials"] == ["mail-probe", "sftp-probe"]
    run = enroll(public_key=KEY_A, credentials=["mail-probe", "sftp-probe"])
    assert run.result["changed"] is True and run.result["credentials"] == ["mail-probe", "sftp-probe"]
    assert [(m, p, b) for m, p, b, a in control_plane.writes()] == [
        ("PUT", "/api/v1/checkpoints/office", {"credentials": ["mail-probe", "sftp-probe"]})
    ]
    assert control_plane.credentials["office"] == ["mail-probe", "sftp-probe"]
    control_plane.requests[:] = []
    again = enroll(public_key=KEY_A, credentials=["sftp-probe", "mail-probe"])
    assert again.result["changed"] is False and control_plane.writes() == []
    assert again.result["diff"]["before"] == again.result["diff"]["after"]


def test_an_empty_list_removes_the_names_and_omitting_it_leaves_them(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    control_plane.credentials["office"] = ["db-probe"]
    left = enroll(public_key=KEY_A)
    assert left.result["changed"] is False and left.result["credentials"] is None
    assert "credentials" not in left.result["diff"]["after"] and control_plane.writes() == []
    cleared = enroll(public_key=KEY_A, credentials=[])
    assert cleared.result["changed"] is True and cleared.result["credentials"] == []
    assert control_plane.credentials["office"] == []


def test_a_key_conflict_fails_before_the_names_are_changed(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    run = enroll(public_key=KEY_B, credentials=["mail-probe"])
    assert run.failed and "already enrolled" in run.result["msg"]
    assert control_plane.writes() == [] and control_plane.credentials.get("office") is None


@pytest.mark.parametrize("name", ["p@ss w0rd!", "-leading-dash", "x" * 65, ""])
def test_a_bad_credential_name_fails_before_any_request(enroll, control_plane, name):
    run = enroll(public_key=KEY_A, credentials=["mail-probe", name])
    assert run.failed and run.result["msg"].startswith("credentials: %r is not a credential name" % name)
    assert control_plane.requests == []


def test_a_control_plane_without_credential_names_is_reported(enroll, control_plane):
    control_plane.add_instance("office", "a", KEY_A)
    original = control_plane.checkpoint_json
    control_plane.checkpoint_json = lambda cp: dict((k, v) for k, v in original(cp).items() if k != "credentials")
    run = enroll(public_key=KEY_A, credentials=["mail-probe"])
    assert run.failed and "does not report the checkpoint's credentials" in run.result["msg"]
    assert control_plane.writes() == []
