# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The files a checkpoint keeps on a Windows host: what is written, with which access list, and the read-back check."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.vantage.checkpoint.plugins.action import win_checkpoint_files
from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract, _windows_checkpoint, _windows_sddl
from ansible_collections.vantage.checkpoint.plugins.module_utils._container import credentials_revision
from ansible_collections.vantage.checkpoint.tests.unit.plugins.action.test_win_actions import make
from ansible_collections.vantage.checkpoint.tests.unit.plugins.windows_docker_host import FakeDockerExe, ModuleHost

KEY_A = {"keyid": "0a1b2c3d4e5f6071", "public_key": "A" * 43 + "=", "status": "active"}
KEY_OLD = {"keyid": "1111222233334444", "public_key": "B" * 43 + "=", "status": "retired"}
ANSWER = {"keys": [KEY_A, KEY_OLD]}
LAYOUT = _contract.host_layout("plant", ["a", "b"], platform="windows")
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
SECRETS = {"db": {"username": "monitor", "password": "s3cret", "private_key": None, "passphrase": ""}}


def content(item):
    return base64.b64decode(item["content"]).decode()


def test_the_plan_writes_every_agent_file_into_each_instance_directory():
    plan = _windows_checkpoint.files_plan(LAYOUT, ["a", "b"], [KEY_A], CA, {"db": {"username": "monitor", "password": "s3cret"}})
    files = dict((f["path"], f) for f in plan["files"])
    for name in ("a", "b"):
        base = "C:\\ProgramData\\Vantage\\checkpoints\\plant\\%s\\" % name
        assert files[base + "trusted-keys.json"]["policy"] == "key_file"
        assert json.loads(content(files[base + "trusted-keys.json"])) == {"keys": [KEY_A]}
        assert content(files[base + "ca.pem"]) == CA + "\n"
        secrets = {"credentials": {"db": {"username": "monitor", "password": "s3cret"}}}
        assert json.loads(content(files[base + "credentials.json"])) == secrets
    # the checkpoint's copies for the update engine: SYSTEM and Administrators only
    assert files[LAYOUT["trusted_keys"]]["policy"] == files[LAYOUT["ca"]]["policy"] == "admin_only_file"
    # byte for byte what the Linux tasks write (to_nice_json(indent=2), sorted keys, final newline)
    assert content(files[LAYOUT["trusted_keys"]]) == (
        '{\n  "keys": [\n    {\n      "keyid": "0a1b2c3d4e5f6071",\n      "public_key": "%s",\n'
        '      "status": "active"\n    }\n  ]\n}\n' % KEY_A["public_key"])
    directories = dict((d["path"], d["policy"]) for d in plan["directories"])
    assert directories["C:\\ProgramData\\Vantage\\state\\plant\\a"] == "state_directory"
    assert directories["C:\\ProgramData\\Vantage\\checkpoints\\plant\\b"] == "key_directory"
    assert directories[LAYOUT["config_dir"]] == directories[LAYOUT["state_dir"]] == "admin_only_directory"
    assert plan["remove"] == []
    assert plan["revisions"][0] == {"name": "a", "key": LAYOUT["instances"]["a"]["identity_key"],
                                    "file": "C:\\ProgramData\\Vantage\\checkpoints\\plant\\a\\credentials.json"}


def test_without_ca_and_credentials_their_files_are_removed():
    plan = _windows_checkpoint.files_plan(LAYOUT, ["a"], [KEY_A], "", {})
    assert sorted(plan["remove"]) == sorted([LAYOUT["ca"], "C:\\ProgramData\\Vantage\\checkpoints\\plant\\a\\ca.pem",
                                             "C:\\ProgramData\\Vantage\\checkpoints\\plant\\a\\credentials.json"])
    assert plan["revisions"] == []


def test_only_pinned_keys_that_are_not_retired_are_kept_and_a_missing_pin_is_refused():
    assert _windows_checkpoint.pinned_keys(ANSWER, ["0a1b2c3d4e5f6071"]) == [KEY_A]
    with pytest.raises(_windows_checkpoint.FilesError) as refused:
        _windows_checkpoint.pinned_keys(ANSWER, ["1111222233334444", "NOTHEX"])
    assert "does not offer the pinned signing key(s) 1111222233334444, NOTHEX" in str(refused.value)
    assert "checkpoint_trusted_key_ids entry must be 16 lower-case hex digits" in str(refused.value)


def test_credentials_are_checked_as_on_linux_without_naming_a_value():
    assert _windows_checkpoint.clean_credentials(SECRETS) == {"db": {"username": "monitor", "password": "s3cret"}}
    with pytest.raises(_windows_checkpoint.FilesError) as refused:
        _windows_checkpoint.clean_credentials({"bad name": {"password": 5}, "empty": {"password": ""}, "x": {"pin": "1"}})
    text = str(refused.value)
    assert "name must be 1 to 64 characters" in text and "'bad name' field 'password' must be a string" in text
    assert "'empty' has no field set" in text and "'x' has unknown field 'pin'" in text
    assert "s3cret" not in text and "'1'" not in text


def host_answer(plan, tamper=None):
    """What win_checkpoint_files reports after writing ``plan`` (every list as Windows stores it: protected)."""
    sddl = dict((item["path"], item["sddl"].replace("D:P", "D:PAI")) for item in plan["directories"] + plan["files"])
    sddl.update((path, None) for path in plan["remove"])
    if tamper:
        tamper(sddl)
    return {"changed": True, "pending": [], "sddl": sddl, "revisions": {}}


def test_the_read_back_must_be_exactly_each_policy():
    plan = _windows_checkpoint.files_plan(LAYOUT, ["a"], [KEY_A], CA, {})
    assert _windows_checkpoint.check_report(plan, host_answer(plan)) == []
    path = "C:\\ProgramData\\Vantage\\checkpoints\\plant\\a\\trusted-keys.json"

    def users_may_read(sddl):
        sddl[path] += "(A;;FR;;;BU)"
        sddl[LAYOUT["ca"]] = None
        sddl["C:\\ProgramData\\Vantage\\checkpoints\\plant\\a\\credentials.json"] = _windows_sddl.KEY_FILE

    reasons = _windows_checkpoint.check_report(plan, host_answer(plan, users_may_read))
    assert any("the file %s grants Users (S-1-5-32-545) access" % path in r for r in reasons)
    assert any("did not report the access list of the file %s" % LAYOUT["ca"] in r for r in reasons)
    assert any("credentials.json should have been removed" in r for r in reasons)


def test_the_action_writes_checks_and_returns_the_revisions():
    plan_seen = {}

    def files(args):
        plan_seen.update(args)
        plan = {"directories": [dict(d, policy=None) for d in args["directories"]], "files": args["files"],
                "remove": args["remove"]}
        answer = host_answer(plan)
        key = b"-----BEGIN PRIVATE KEY-----\n"
        answer["revisions"] = dict((r["name"], credentials_revision(key, b"{}")) for r in args["revisions"])
        return answer

    action = make(win_checkpoint_files, dict(layout=LAYOUT, instances=["a", "b"], keys=[KEY_A], ca_cert=CA,
                                             credentials=SECRETS),
                  host=ModuleHost(FakeDockerExe(), win_checkpoint_files=files))
    result = action.run(task_vars={})
    assert not result.get("failed"), result
    assert result["trusted_keys"] == ["0a1b2c3d4e5f6071"] and result["ca_bundle"] and result["credentials"]
    assert sorted(result["credentials_revisions"]) == ["a", "b"] and len(result["credentials_revisions"]["a"]) == 32
    assert result["credential_names"] == ["db"]
    assert "s3cret" not in json.dumps(result)
    assert len(plan_seen["files"]) == 1 + 1 + 2 * 3


def test_the_action_refuses_bad_credentials_or_no_key_before_writing():
    host = ModuleHost(FakeDockerExe())
    result = make(win_checkpoint_files, dict(layout=LAYOUT, instances=["a"], keys=[KEY_A], credentials={"db": "x"}),
                  host=host).run(task_vars={})
    assert result["failed"] is True and "'db' must be a dict" in result["msg"]
    result = make(win_checkpoint_files, dict(layout=LAYOUT, instances=["a"], keys=[]), host=host).run(task_vars={})
    assert result["failed"] is True and "no signing key would be trusted" in result["msg"]
    assert host.calls == []


def test_the_plan_refuses_an_unreachable_control_plane_a_missing_pin_and_bad_credentials_at_once():
    from ansible_collections.vantage.checkpoint.plugins.action import win_checkpoint_plan
    from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers

    base = dict(facts=answers.facts("server2022"), checkpoint="plant", instances=["a", "b"], image=answers.IMAGE,
                control_plane_url="https://cp.example.com:8443", trusted_key_ids=["0a1b2c3d4e5f6071"])
    result = make(win_checkpoint_plan, dict(base, signing_keys={"status": 200, "json": ANSWER})).run(task_vars={})
    assert result["plan"]["keys"] == [KEY_A]
    assert result["plan"]["instances"][1] == {"name": "b", "config_dir": LAYOUT["instances"]["b"]["config_dir"],
                                              "state_dir": LAYOUT["instances"]["b"]["state_dir"]}
    result = make(win_checkpoint_plan, dict(base, signing_keys={"status": -1, "msg": "Connection refused"})).run(task_vars={})
    assert "cannot reach the control plane at https://cp.example.com:8443 from the controller: Connection refused" in result["msg"]
    result = make(win_checkpoint_plan, dict(base, signing_keys={"status": 200, "json": {"keys": [KEY_OLD]}},
                                            credentials={"db": {"password": 1}})).run(task_vars={})
    assert len(result["reasons"]) == 2 and "does not offer the pinned signing key" in result["reasons"][0]
