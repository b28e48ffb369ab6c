# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_windows_host: which Windows hosts the roles accept, the engine settings, daemon.json, reboots, images."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers


def reasons_of(check, *args):
    with pytest.raises(_windows_host.WindowsHostError) as info:
        check(*args)
    return info.value.reasons


# ----------------------------------------------------------------------------- the host


@pytest.mark.parametrize("release, build, ltsc, name", [
    ("server2019", 17763, "ltsc2019", "Windows Server 2019"),
    ("server2022", 20348, "ltsc2022", "Windows Server 2022"),
    ("server2025", 26100, "ltsc2025", "Windows Server 2025"),
])
def test_each_supported_server_release_is_recognised_by_its_build(release, build, ltsc, name):
    host = _windows_host.host_platform(answers.facts(release))
    assert (host["build"], host["ltsc"], host["release"]) == (build, ltsc, name)
    assert host["edition"].startswith("Microsoft Windows Server")


def test_windows_11_is_refused_although_it_shares_server_2025s_build():
    facts = answers.facts("windows11")
    assert _windows_host.os_build(facts) == 26100  # same build as Server 2025: only the product type tells
    reasons = reasons_of(_windows_host.host_platform, facts)
    assert len(reasons) == 1
    assert "Microsoft Windows 11 Pro is a Windows client edition" in reasons[0]
    assert "Windows Server 2019, 2022 or 2025" in reasons[0]


def test_windows_10_is_refused():
    facts = dict(answers.facts("windows11"), distribution="Microsoft Windows 10 Enterprise", distribution_version="10.0.19045.0")
    assert "Windows 10 Enterprise is a Windows client edition" in reasons_of(_windows_host.host_platform, facts)[0]


@pytest.mark.parametrize("version, words", [
    ("10.0.14393.0", "runs Windows Server 2016, which is not supported"),
    ("10.0.25398.0", "runs Windows Server, version 23H2 (annual channel), which is not supported"),
    ("10.0.19042.0", "runs build 19042, which is not supported"),
])
def test_unsupported_builds_are_refused_with_the_supported_list(version, words):
    facts = dict(answers.facts("server2022"), distribution_version=version)
    (reason,) = reasons_of(_windows_host.host_platform, facts)
    assert words in reason
    assert "Windows Server 2019 (build 17763), Windows Server 2022 (build 20348), Windows Server 2025 (build 26100)" in reason


def test_every_reason_is_reported_at_once():
    facts = dict(answers.facts("server2022"), os_product_type="domain_controller", os_installation_type="Nano Server",
                 architecture2="arm64")
    reasons = reasons_of(_windows_host.host_platform, facts)
    assert len(reasons) == 3
    assert "is a domain controller" in reasons[0]
    assert "is Nano Server" in reasons[1]
    assert "is arm64" in reasons[2]


@pytest.mark.parametrize("facts, words", [
    ({}, "gather facts"),
    (None, "gather facts"),
    ({"os_family": "Debian", "distribution": "Debian"}, "Debian is not a Windows host (os_family=Debian)"),
    ({"os_family": "Windows", "os_product_type": "server", "architecture2": "x86_64", "distribution_version": "10.0"},
     "cannot read the OS build"),
])
def test_missing_or_foreign_facts_are_refused(facts, words):
    assert words in " ".join(reasons_of(_windows_host.host_platform, facts))


# ----------------------------------------------------------------------------- the engine


def test_static_engine_settings():
    engine = _windows_host.engine_settings(answers.engine_settings())
    assert engine["dockerd"] == "C:\\Program Files\\docker\\dockerd.exe"
    assert engine["docker"] == "C:\\Program Files\\docker\\docker.exe"
    assert engine["service_command"] == '"C:\\Program Files\\docker\\dockerd.exe" --run-service'
    assert engine["pipe"] == "\\\\.\\pipe\\docker_engine"
    assert (engine["allow_reboot"], engine["reboot_timeout"], engine["isolation"]) == (True, 1800, "process")


def test_survey_strings_are_converted():
    engine = _windows_host.engine_settings(answers.engine_settings(allow_reboot="false", reboot_timeout="900"))
    assert (engine["allow_reboot"], engine["reboot_timeout"]) == (False, 900)


def test_preinstalled_engine_needs_no_version_and_uses_docker_on_path():
    settings = answers.engine_settings(engine_source="preinstalled", engine_version="", engine_sha256="")
    engine = _windows_host.engine_settings(settings)
    assert (engine["source"], engine["docker"], engine["service_command"], engine["version"]) == ("preinstalled", "", "", "")


def test_bad_engine_settings_are_all_reported_and_named():
    reasons = reasons_of(_windows_host.engine_settings, answers.engine_settings(
        engine_version="latest", engine_sha256="ABC", engine_url="http://download.docker.com/x.zip",
        install_dir="Program Files\\docker", isolation="hyperv", pipe_group="bad;group", allow_reboot="maybe",
        reboot_timeout="10"))
    text = "\n".join(reasons)
    for words in ("docker_host_windows_allow_reboot must be true or false, got 'maybe'",
                  "docker_host_windows_reboot_timeout must be at least 60",
                  "docker_host_windows_engine_version must be the Docker engine version",
                  "docker_host_windows_engine_sha256 must be the SHA-256 of the engine's zip archive, 64 hex digits (got 'ABC')",
                  "docker_host_windows_engine_url must be an https:// URL",
                  "docker_host_windows_install_dir must be an absolute Windows path",
                  "docker_host_windows_isolation=hyperv is not supported",
                  "docker_host_windows_pipe_group must be a local group"):
        assert words in text
    assert len(reasons) == 8


def test_a_local_archive_needs_no_url():
    engine = _windows_host.engine_settings(answers.engine_settings(engine_url="", engine_src="/srv/mirror/docker-27.5.1.zip"))
    assert (engine["src"], engine["url"]) == ("/srv/mirror/docker-27.5.1.zip", "")


def test_an_unknown_engine_source_is_refused():
    assert "must be one of static, preinstalled" in reasons_of(
        _windows_host.engine_settings, answers.engine_settings(engine_source="choco"))[0]


# ----------------------------------------------------------------------------- daemon.json


def test_daemon_json_has_the_named_pipe_only_bounded_logs_and_process_isolation():
    engine = _windows_host.engine_settings(answers.engine_settings(pipe_group="CORP\\vantage-operators"))
    config = _windows_host.daemon_config(answers.daemon_settings(
        log_max_file="5", registry_mirrors=["https://mirror.example.com"], data_root="D:\\docker",
        daemon_options={"dns": ["10.0.0.53"]}), engine)
    assert config == {
        "hosts": ["npipe:////./pipe/docker_engine"],
        "exec-opts": ["isolation=process"],
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "5"},
        "insecure-registries": [],
        "registry-mirrors": ["https://mirror.example.com"],
        "group": "CORP\\vantage-operators",
        "data-root": "D:\\docker",
        "dns": ["10.0.0.53"],
    }
    assert not any(key in config for key in _windows_host.LINUX_ONLY_DAEMON_KEYS)
    json.dumps(config)


@pytest.mark.parametrize("options, words", [
    ({"hosts": ["tcp://0.0.0.0:2375"]}, "must not set 'hosts' on Windows"),
    ({"exec-opts": ["isolation=hyperv"]}, "must not set 'exec-opts' on Windows"),
    ({"group": "Users"}, "must not set 'group' on Windows"),
    ({"tlsverify": True}, "must not set 'tlsverify': the engine listens on its named pipe only"),
    ({"live-restore": True}, "sets 'live-restore', which exists only on Linux"),
    ({"no-new-privileges": True}, "sets 'no-new-privileges', which exists only on Linux"),
])
def test_daemon_options_that_open_tcp_switch_isolation_or_stop_dockerd_are_refused(options, words):
    engine = _windows_host.engine_settings(answers.engine_settings())
    (reason,) = reasons_of(_windows_host.daemon_config, answers.daemon_settings(daemon_options=options), engine)
    assert words in reason


def test_bad_shared_engine_variables_are_named():
    engine = _windows_host.engine_settings(answers.engine_settings())
    reasons = reasons_of(_windows_host.daemon_config, answers.daemon_settings(
        log_max_size="ten", log_max_file="many", data_root="/var/lib/docker"), engine)
    assert len(reasons) == 3
    assert "docker_host_log_max_file must be a whole number, got 'many'" in reasons[0]
    assert "docker_host_log_max_size must be a size such as 10m, got 'ten'" in reasons[1]
    assert "docker_host_data_root must be an absolute Windows path" in reasons[2]


# ----------------------------------------------------------------------------- reboots


def test_an_enabled_feature_needs_nothing():
    assert _windows_host.reboot_plan("Enabled", False) == {"install": False, "reboot": False}


def test_installing_the_feature_reboots_when_allowed():
    assert _windows_host.reboot_plan("Disabled", True) == {"install": True, "reboot": True}
    assert _windows_host.reboot_plan("EnablePending", True) == {"install": False, "reboot": True}


def test_without_reboot_permission_nothing_is_installed_and_the_message_says_what_to_do():
    (reason,) = reasons_of(_windows_host.reboot_plan, "Disabled", False)
    assert "docker_host_windows_allow_reboot=false forbids" in reason
    assert "Install-WindowsFeature Containers; Restart-Computer" in reason
    (reason,) = reasons_of(_windows_host.reboot_plan, "EnablePending", False)
    assert reason.startswith("a restart is pending to finish installing the Containers feature")


def test_an_unknown_feature_state_is_refused():
    assert "did not report the state of the Containers feature" in reasons_of(_windows_host.reboot_plan, None, True)[0]


# ----------------------------------------------------------------------------- the checkpoint image


def test_the_hosts_ltsc_entry_wins_over_checkpoint_image():
    images = {"ltsc2019": "r.example/v@sha256:" + "1" * 64, "ltsc2022": answers.IMAGE}
    chosen = _windows_host.select_image("ltsc2022", "r.example/linux@sha256:" + "3" * 64, images)
    assert chosen == {"image": answers.IMAGE, "source": "checkpoint_windows_images.ltsc2022"}
    chosen = _windows_host.select_image("ltsc2025", answers.IMAGE, images)
    assert chosen == {"image": answers.IMAGE, "source": "checkpoint_image"}


def test_unpinned_images_and_unknown_keys_are_refused():
    reasons = reasons_of(_windows_host.select_image, "ltsc2022", answers.IMAGE,
                         {"ltsc2016": answers.IMAGE, "ltsc2022": "vantage/checkpoint:0.1.0-ltsc2022"})
    assert len(reasons) == 2
    assert "checkpoint_windows_images has the key 'ltsc2016'; the keys are ltsc2019, ltsc2022, ltsc2025" in reasons[0]
    assert "checkpoint_windows_images.ltsc2022 must be an image pinned by digest" in reasons[1]
    assert "checkpoint_image must be an image pinned by digest" in reasons_of(
        _windows_host.select_image, "ltsc2022", "vantage/checkpoint:latest", {})[0]


def test_the_image_built_for_the_hosts_build_is_accepted():
    host = _windows_host.host_platform(answers.facts("server2022"))
    checked = _windows_host.check_image(answers.image_inspect(), answers.IMAGE, host)
    assert checked == {"id": "sha256:" + "9a" * 32, "os_version": "10.0.20348.3091"}
    by_id = _windows_host.check_image(answers.image_inspect(), "sha256:" + "9a" * 32, host)
    assert by_id["id"] == "sha256:" + "9a" * 32


def test_an_image_for_another_ltsc_is_refused_naming_both_and_the_fix():
    host = _windows_host.host_platform(answers.facts("server2019"))
    (reason,) = reasons_of(_windows_host.check_image, answers.image_inspect(), answers.IMAGE, host,
                           "checkpoint_windows_images.ltsc2019")
    assert "was built for ltsc2022 (OsVersion 10.0.20348.3091)" in reason
    assert "runs Windows Server 2019 (build 17763)" in reason
    assert "set checkpoint_windows_images.ltsc2019 to the image built for ltsc2019" in reason


def test_a_linux_image_or_another_digest_is_refused():
    host = _windows_host.host_platform(answers.facts("server2022"))
    linux = dict(answers.image_inspect(), Os="linux", OsVersion="")
    assert "is a linux image" in reasons_of(_windows_host.check_image, linux, answers.IMAGE, host)[0]
    other = "registry.example.com/vantage/checkpoint@sha256:" + "0" * 64
    assert "does not carry the pinned digest" in reasons_of(_windows_host.check_image, answers.image_inspect(), other, host)[0]
    assert "not the pinned" in reasons_of(_windows_host.check_image, answers.image_inspect(), "sha256:" + "0" * 64, host)[0]
