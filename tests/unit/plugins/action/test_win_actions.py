# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Windows action plugins: the controller-side decisions and the order in which they touch the host.

Only the Windows host is replaced: each test answers the modules the plugin runs on the host with
recorded answers (fixtures/windows/README.md) and records what the plugin asked for.
"""

from __future__ import annotations

import hashlib
import json
import ntpath
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader

from ansible_collections.vantage.checkpoint.plugins.action import (
    win_checkpoint_identity,
    win_checkpoint_image,
    win_checkpoint_plan,
    win_docker_engine,
    win_docker_engine_verify,
    win_docker_host_plan,
    win_secure_directory,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host, _windows_sddl
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers

TMP = "C:\\Users\\ansible\\AppData\\Local\\Temp\\ansible-tmp-1-2"


class Host:
    """Stands in for the Windows host: answers module runs in order and records them."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.calls = []

    def __call__(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        self.calls.append((module_name, module_args))
        if module_name.startswith("vantage.checkpoint."):  # what the PowerShell module accepts and needs
            options = answers.ps1_options(module_name.rsplit(".", 1)[1])
            assert set(module_args) <= set(options), (module_name, sorted(set(module_args) - set(options)))
            assert {name for name, required in options.items() if required} <= set(module_args), module_name
        reply = self.replies.pop(0)
        return reply(module_args) if callable(reply) else reply

    @property
    def modules(self):
        return [call[0] for call in self.calls]


def make(module, args, host=None, check_mode=False):
    task = mock.MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.async_val = 0
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    connection._shell.join_path = ntpath.join
    action = module.ActionModule(task, connection, play_context=mock.MagicMock(), loader=DataLoader(), templar=None)
    action._execute_module = host or Host()
    action._make_tmp_path = mock.MagicMock(return_value=TMP)
    action._remove_tmp_path = mock.MagicMock()
    action._transfer_file = mock.MagicMock()
    return action


def plan_args(release="server2022", info=None, **changes):
    args = dict(answers.engine_settings(), **answers.daemon_settings())
    args.update(facts=answers.facts(release), engine_info=info or answers.engine_info_fresh())
    args.update(changes)
    return args


# ----------------------------------------------------------------------------- win_docker_host_plan


def test_plan_for_a_fresh_server_installs_the_feature_and_the_pinned_engine():
    action = make(win_docker_host_plan, plan_args())
    result = action.run(task_vars={})
    assert not result.get("failed"), result
    plan = result["plan"]
    assert plan["host"]["ltsc"] == "ltsc2022"
    assert plan["containers"] == {"install": True, "reboot": True}
    assert plan["install_needed"] is True
    assert plan["daemon_json"] == "C:\\ProgramData\\docker\\config\\daemon.json"
    assert plan["config_dir"] == "C:\\ProgramData\\docker\\config"
    assert plan["daemon_config"]["hosts"] == ["npipe:////./pipe/docker_engine"]
    assert result["changed"] is False
    assert action._execute_module.calls == []  # decided on the controller alone


def test_plan_takes_the_gathered_facts_when_none_are_given():
    args = plan_args()
    del args["facts"]
    result = make(win_docker_host_plan, args).run(task_vars={"ansible_facts": answers.facts("server2019")})
    assert result["plan"]["host"]["build"] == 17763


def test_plan_on_an_up_to_date_host_changes_nothing():
    engine = _windows_host.engine_settings(answers.engine_settings())
    config = _windows_host.daemon_config(answers.daemon_settings(), engine)
    result = make(win_docker_host_plan, plan_args(info=answers.engine_info_healthy(config))).run(task_vars={})
    assert result["plan"]["containers"] == {"install": False, "reboot": False}
    assert result["plan"]["install_needed"] is False


def test_plan_refuses_windows_11_and_a_forbidden_reboot_at_once():
    result = make(win_docker_host_plan, plan_args("windows11", allow_reboot="no")).run(task_vars={})
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("Refused, nothing was changed by this task: ")
    assert len(result["reasons"]) == 2
    assert "Windows 11 Pro is a Windows client edition" in result["reasons"][0]
    assert "docker_host_windows_allow_reboot=false forbids" in result["reasons"][1]


def test_plan_refuses_hyperv_isolation():
    result = make(win_docker_host_plan, plan_args(isolation="hyperv")).run(task_vars={})
    assert result["failed"] is True
    assert len(result["reasons"]) == 1
    assert "docker_host_windows_isolation=hyperv is not supported" in result["reasons"][0]


def test_plan_refuses_a_wrong_checksum_format_and_a_preinstalled_engine_that_is_not_there():
    result = make(win_docker_host_plan, plan_args(engine_sha256="sha256:abc")).run(task_vars={})
    assert "docker_host_windows_engine_sha256 must be the SHA-256" in result["msg"]
    result = make(win_docker_host_plan, plan_args(engine_source="preinstalled")).run(task_vars={})
    assert "preinstalled but the host has no service named docker" in result["msg"]


def test_plan_rejects_unknown_arguments():
    with pytest.raises(AnsibleActionFail):
        make(win_docker_host_plan, plan_args(bogus=1)).run(task_vars={})


# ----------------------------------------------------------------------------- win_docker_engine_verify


def verified_setup(**info_changes):
    plan = make(win_docker_host_plan, plan_args()).run(task_vars={})["plan"]
    info = answers.engine_info_healthy(plan["daemon_config"])
    info.update(info_changes)
    return plan, info


def test_verify_reports_the_engine_it_checked():
    plan, info = verified_setup()
    result = make(win_docker_engine_verify, dict(plan=plan, info=info)).run(task_vars={})
    assert not result.get("failed"), result
    assert result["engine"]["version"] == "27.5.1"
    assert result["engine"]["isolation"] == "process"
    assert result["engine"]["tcp_listeners"] == []


def test_verify_fails_closed_on_a_tcp_listener():
    plan, info = verified_setup(tcp_listeners=[{"address": "0.0.0.0", "port": 2375}])
    result = make(win_docker_engine_verify, dict(plan=plan, info=info, service_enabled="true")).run(task_vars={})
    assert result["failed"] is True
    assert result["msg"] == ("The container engine failed its self-check, so nothing will run on it: dockerd listens on "
                             "TCP 0.0.0.0:2375: the engine must answer on its named pipe only")


# ----------------------------------------------------------------------------- win_docker_engine


def engine_args(**changes):
    args = dict(version="27.5.1", sha256=answers.ARCHIVE_SHA256,
                url="https://download.docker.com/win/static/stable/x86_64/docker-27.5.1.zip")
    args.update(changes)
    return args


def installed(module_args):
    return {"changed": True, "files": {"docker.exe": answers.DOCKER_EXE_SHA256, "dockerd.exe": answers.DOCKERD_EXE_SHA256},
            "changed_files": ["docker.exe", "dockerd.exe"], "service_registered": True}


def test_engine_already_installed_downloads_nothing():
    healthy = answers.engine_info_healthy({})
    host = Host(healthy)
    result = make(win_docker_engine, engine_args(), host).run(task_vars={})
    assert result["changed"] is False and not result.get("failed")
    assert host.modules == ["vantage.checkpoint.win_docker_engine_info"]
    assert host.calls[0][1] == {"install_dir": "C:\\Program Files\\docker", "query_engine": False}


def test_engine_check_mode_predicts_without_downloading():
    host = Host(answers.engine_info_fresh())
    result = make(win_docker_engine, engine_args(), host, check_mode=True).run(task_vars={})
    assert result["changed"] is True and result["msg"].startswith("would install: no engine installed by this role")
    assert host.modules == ["vantage.checkpoint.win_docker_engine_info"]


def test_engine_download_is_checked_by_win_get_url_then_installed_from_the_temporary_directory():
    host = Host(answers.engine_info_fresh(), {"changed": True, "checksum_src": answers.ARCHIVE_SHA256}, installed)
    action = make(win_docker_engine, engine_args(), host)
    result = action.run(task_vars={})
    assert result["changed"] is True and result["service_registered"] is True
    archive = TMP + "\\docker-27.5.1.zip"
    assert host.calls[1] == ("ansible.windows.win_get_url", {
        "url": "https://download.docker.com/win/static/stable/x86_64/docker-27.5.1.zip", "dest": archive,
        "checksum": answers.ARCHIVE_SHA256, "checksum_algorithm": "sha256", "force": True})
    assert host.calls[2] == ("vantage.checkpoint.win_docker_engine", {
        "archive": archive, "sha256": answers.ARCHIVE_SHA256, "version": "27.5.1", "install_dir": "C:\\Program Files\\docker"})
    action._remove_tmp_path.assert_called_once_with(TMP)


def test_engine_download_with_another_checksum_installs_nothing():
    mismatch = {"failed": True, "msg": "The checksum for https://... did not match '3b1f...', it was 'deadbeef'"}
    host = Host(answers.engine_info_fresh(), mismatch)
    action = make(win_docker_engine, engine_args(), host)
    with pytest.raises(AnsibleActionFail) as info:
        action.run(task_vars={})
    assert "ansible.windows.win_get_url failed: The checksum for" in str(info.value)
    assert host.modules == ["vantage.checkpoint.win_docker_engine_info", "ansible.windows.win_get_url"]
    action._remove_tmp_path.assert_called_once_with(TMP)


def test_engine_from_a_local_file_is_hashed_before_it_is_copied(tmp_path):
    archive = tmp_path / "docker-27.5.1.zip"
    archive.write_bytes(b"PK\x03\x04 not really an engine")
    good = hashlib.sha256(archive.read_bytes()).hexdigest()

    host = Host(answers.engine_info_fresh())
    action = make(win_docker_engine, engine_args(src=str(archive)), host)
    action._find_needle = mock.MagicMock(return_value=str(archive))
    result = action.run(task_vars={})
    assert result["failed"] is True
    assert "has SHA-256 %s, not the pinned docker_host_windows_engine_sha256 %s; nothing was copied" % (
        good, answers.ARCHIVE_SHA256) in result["msg"]
    action._transfer_file.assert_not_called()
    action._make_tmp_path.assert_not_called()

    host = Host(answers.engine_info_fresh(), installed)
    action = make(win_docker_engine, engine_args(src=str(archive), sha256=good), host)
    action._find_needle = mock.MagicMock(return_value=str(archive))
    result = action.run(task_vars={})
    assert result["changed"] is True
    action._transfer_file.assert_called_once_with(str(archive), TMP + "\\docker-27.5.1.zip")
    assert host.modules == ["vantage.checkpoint.win_docker_engine_info", "vantage.checkpoint.win_docker_engine"]


def test_engine_missing_service_is_registered_again_even_when_the_binaries_are_current():
    healthy = answers.engine_info_healthy({})
    healthy["service"] = {"exists": False}
    host = Host(healthy, {"changed": True}, installed)
    result = make(win_docker_engine, engine_args(), host).run(task_vars={})
    assert result["changed"] is True
    assert host.modules[-1] == "vantage.checkpoint.win_docker_engine"


# ----------------------------------------------------------------------------- win_secure_directory


def test_secure_directory_sends_the_policy_and_checks_the_read_back():
    host = Host(lambda args: {"changed": True, "created": ["C:\\ProgramData\\Vantage"], "sddl": "D:PAI" + args["sddl"][3:]})
    result = make(win_secure_directory, dict(path="C:\\ProgramData\\Vantage"), host).run(task_vars={})
    assert not result.get("failed"), result
    assert host.calls[0][1] == {"path": "C:\\ProgramData\\Vantage", "sddl": _windows_sddl.ADMIN_ONLY_DIRECTORY}


def test_secure_directory_fails_closed_when_the_read_back_is_wider():
    host = Host({"changed": False, "created": [], "sddl": "D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"})
    result = make(win_secure_directory, dict(path="C:\\ProgramData\\Vantage"), host).run(task_vars={})
    assert result["failed"] is True and "grants Users (S-1-5-32-545)" in result["msg"]
    result = make(win_secure_directory, dict(path="/etc/vantage")).run(task_vars={})
    assert "path must be an absolute Windows path" in result["msg"]


def test_secure_directory_check_mode_does_not_judge_a_list_it_would_replace():
    host = Host({"changed": True, "created": [], "sddl": "D:AI(A;ID;FA;;;BU)"})
    result = make(win_secure_directory, dict(path="C:\\x"), host, check_mode=True).run(task_vars={})
    assert result["changed"] is True and not result.get("failed")


# ----------------------------------------------------------------------------- checkpoint


def checkpoint_args(**changes):
    args = dict(facts=answers.facts("server2022"), checkpoint="site", instances=["a", "b"], image=answers.IMAGE,
                config_dir="/etc/vantage/checkpoints", state_dir="/var/lib/vantage/checkpoints")
    args.update(changes)
    return args


def test_checkpoint_plan_puts_keys_under_programdata_with_the_contracts_layout():
    result = make(win_checkpoint_plan, checkpoint_args()).run(task_vars={})
    plan = result["plan"]
    assert plan["image"] == answers.IMAGE and plan["image_source"] == "checkpoint_image"
    assert plan["layout"]["config_dir"] == "C:\\ProgramData\\Vantage\\checkpoints\\site"
    assert plan["layout"]["instances"]["b"]["identity_key"] == "C:\\ProgramData\\Vantage\\checkpoints\\site\\b\\identity.pem"
    assert plan["layout"]["state_dir"] == "C:\\ProgramData\\Vantage\\state\\site"


def test_checkpoint_plan_honours_windows_paths_and_the_ltsc_image():
    image = "registry.example.com/vantage/checkpoint@sha256:" + "7" * 64
    result = make(win_checkpoint_plan, checkpoint_args(
        config_dir="D:\\Vantage\\keys", windows_images={"ltsc2022": image})).run(task_vars={})
    assert result["plan"]["layout"]["instances"]["a"]["identity_key"] == "D:\\Vantage\\keys\\site\\a\\identity.pem"
    assert (result["plan"]["image"], result["plan"]["image_source"]) == (image, "checkpoint_windows_images.ltsc2022")


def test_checkpoint_plan_refuses_bad_names_and_client_hosts_together():
    result = make(win_checkpoint_plan, checkpoint_args(facts=answers.facts("windows11"), instances=["A"])).run(task_vars={})
    assert result["failed"] is True
    assert len(result["reasons"]) == 2
    assert "checkpoint_instances entry must be 1 to 63 characters" in result["reasons"][1]


def inspect_reply(os_version="10.0.20348.3091", changed=False):
    return {"changed": changed, "pulled": changed, "inspect": json.dumps([answers.image_inspect(os_version)])}


def test_checkpoint_image_accepts_the_image_built_for_the_host():
    host = Host(inspect_reply(changed=True))
    result = make(win_checkpoint_image, dict(image=answers.IMAGE, facts=answers.facts("server2022")), host).run(task_vars={})
    assert result["verified"] is True and result["pulled"] is True and result["os_version"] == "10.0.20348.3091"
    assert host.calls == [("vantage.checkpoint.win_checkpoint_image", {"image": answers.IMAGE, "docker": None})]


def test_checkpoint_image_refuses_a_mismatch_and_an_unpinned_reference_before_pulling():
    host = Host(inspect_reply())
    result = make(win_checkpoint_image, dict(image=answers.IMAGE, image_source="checkpoint_windows_images.ltsc2025"),
                  host).run(task_vars={"ansible_facts": answers.facts("server2025")})
    assert result["failed"] is True and "was built for ltsc2022" in result["msg"]
    host = Host()
    result = make(win_checkpoint_image, dict(image="vantage/checkpoint:0.1.0", facts=answers.facts("server2022")),
                  host).run(task_vars={})
    assert result["failed"] is True and host.calls == []


def test_checkpoint_image_in_check_mode_before_the_pull_is_not_verified_yet():
    host = Host({"changed": True, "pulled": True, "inspect": None})
    result = make(win_checkpoint_image, dict(image=answers.IMAGE, facts=answers.facts("server2022")), host,
                  check_mode=True).run(task_vars={})
    assert (result["changed"], result["verified"]) == (True, False)


def test_checkpoint_identity_sends_the_policies_and_returns_the_proven_key():
    line = json.dumps({"public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "key_id": "21fe31dfa154a261",
                       "created": False})
    path = "C:\\ProgramData\\Vantage\\checkpoints\\site\\a\\identity.pem"
    reply = {"changed": False, "path": path, "directory": ntpath.dirname(path), "created": False, "keygen": None,
             "readback": {"rc": 0, "stdout": line + "\r\n", "stderr": ""},
             "directory_sddl": _windows_sddl.KEY_DIRECTORY, "file_sddl": "D:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;S-1-5-93-2-2)"}
    host = Host(reply)
    result = make(win_checkpoint_identity, dict(path=path, image=answers.IMAGE), host).run(task_vars={})
    assert not result.get("failed"), result
    assert (result["public_key"], result["key_id"], result["created"]) == (
        "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "21fe31dfa154a261", False)
    sent = host.calls[0][1]
    assert (sent["directory_sddl"], sent["file_sddl"], sent["keygen_sddl"]) == (
        _windows_sddl.KEY_DIRECTORY, _windows_sddl.KEY_FILE, _windows_sddl.KEYGEN_DIRECTORY)

    host = Host(dict(reply, file_sddl="D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;FR;;;AU)"))
    result = make(win_checkpoint_identity, dict(path=path, image=answers.IMAGE), host).run(task_vars={})
    assert result["failed"] is True
    assert result["msg"].startswith("The instance's identity key failed its self-check and must not be used: ")
    assert "public_key" not in result


def test_checkpoint_plan_checks_the_control_plane_url_by_the_contract():
    result = make(win_checkpoint_plan, checkpoint_args(control_plane_url="https://cp.example.com:8443//")).run(task_vars={})
    assert result["plan"]["control_plane_url"] == "https://cp.example.com:8443"
    result = make(win_checkpoint_plan, checkpoint_args(control_plane_url="http://cp.example.com", instances=[])).run(task_vars={})
    assert result["failed"] is True
    assert result["reasons"] == [
        "checkpoint_instances must list at least one instance",
        "checkpoint_control_plane_url must be an https:// URL without credentials, query or fragment (http:// only to "
        "a loopback address: 127.0.0.0/8, ::1 or localhost), got 'http://cp.example.com'"]
