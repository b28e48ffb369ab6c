# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_windows_engine: the engine self-check that stops a play instead of leaving an unsafe engine."""

from __future__ import annotations

import json

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_engine, _windows_host
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers


def setup(release="server2022", **engine_changes):
    host = _windows_host.host_platform(answers.facts(release))
    engine = _windows_host.engine_settings(answers.engine_settings(**engine_changes))
    config = _windows_host.daemon_config(answers.daemon_settings(), engine)
    info = answers.engine_info_healthy(config, build=host["build"])
    return host, engine, config, info


@pytest.mark.parametrize("release", ["server2019", "server2022", "server2025"])
def test_a_healthy_engine_passes_on_every_release(release):
    host, engine, config, info = setup(release)
    assert _windows_engine.verify_engine(info, engine, host, config) == []


def test_the_pipe_group_is_allowed_read_write_only():
    host, engine, config, info = setup(pipe_group="CORP\\vantage-operators")
    info.update(pipe_group_sid=answers.GROUP_SID,
                pipe=dict(info["pipe"], sddl="D:P(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x12019f;;;%s)" % answers.GROUP_SID),
                daemon_json=json.dumps(config))
    assert _windows_engine.verify_engine(info, engine, host, config) == []
    info["pipe_group_sid"] = None
    info["pipe_group_error"] = "Some or all identity references could not be translated."
    assert _windows_engine.verify_engine(info, engine, host, config) == [
        "docker_host_windows_pipe_group 'CORP\\\\vantage-operators' does not resolve to a SID on the host "
        "(Some or all identity references could not be translated.)",
        "the named pipe \\\\.\\pipe\\docker_engine grants %s access (0x12019f); only SYSTEM (S-1-5-18), "
        "Administrators (S-1-5-32-544) may have any" % answers.GROUP_SID]


@pytest.mark.parametrize("change, words", [
    (lambda i: i.update(tcp_listeners=[{"address": "0.0.0.0", "port": 2375}]), "dockerd listens on TCP 0.0.0.0:2375"),
    (lambda i: i.update(tcp_listeners=None), "a TCP listener cannot be ruled out"),
    (lambda i: i["service"].update(path='"C:\\Program Files\\docker\\dockerd.exe" --run-service -H tcp://0.0.0.0:2376'),
     "sets listening addresses or TLS"),
    (lambda i: i["service"].update(state="stopped"), "the docker service is stopped, not running"),
    (lambda i: i["service"].update(start_mode="manual"), "starts manual, not automatically"),
    (lambda i: i.update(pipe={"exists": False, "sddl": None, "error": None}), "does not exist: the engine does not answer"),
    (lambda i: i["pipe"].update(sddl="D:(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;CO)(A;;FR;;;WD)(A;;FR;;;AN)"),
     "grants Everyone (S-1-1-0)"),
    (lambda i: i["pipe"].update(sddl="D:P(A;;FA;;;SY)"), "does not grant Administrators (S-1-5-32-544) the access it needs"),
    (lambda i: i["pipe"].update(sddl=None, error="Access is denied"), "cannot read the access list of the named pipe"),
    (lambda i: i.update(daemon_json='{"hosts": ["npipe://"]}'), "daemon.json on the host is not the configuration"),
    (lambda i: i.update(docker_version="", docker_version_stderr="error during connect: open //./pipe/docker_engine"),
     "the engine does not answer on \\\\.\\pipe\\docker_engine: docker version printed nothing error during connect"),
    (lambda i: i.update(docker_version=json.dumps(answers.docker_version(version="26.1.4"))),
     "the engine reports version 26.1.4, not the pinned 27.5.1"),
    (lambda i: i.update(docker_info=json.dumps(answers.docker_info(Isolation="hyperv"))), "default isolation is hyperv"),
    (lambda i: i.update(docker_info=json.dumps(answers.docker_info(OSType="linux"))), "reports OSType linux"),
    (lambda i: i.update(docker_info=json.dumps(answers.docker_info(LoggingDriver="etwlogs"))), "logs with etwlogs, not json-file"),
    (lambda i: i.update(docker_info=json.dumps(answers.docker_info(build=17763))), "kernel build 17763 but the host facts say 20348"),
    (lambda i: i.update(docker_info=json.dumps(answers.docker_info(ServerErrors=["pipe busy"]))), "docker info: pipe busy"),
    (lambda i: i.update(docker_info="WARNING: something\n"), "docker info did not print JSON"),
    (lambda i: i["engine_files"][1].update(sha256="ff" * 32), "dockerd.exe differs from the installed one"),
    (lambda i: i.update(marker_json=answers.marker_json(version="26.1.4")), "installed engine 26.1.4"),
])
def test_each_unsafe_or_foreign_engine_state_fails_closed_with_its_reason(change, words):
    host, engine, config, info = setup()
    change(info)
    reasons = _windows_engine.verify_engine(info, engine, host, config)
    assert any(words in reason for reason in reasons), reasons


def test_another_service_named_docker_is_not_taken_for_the_pinned_engine():
    host, engine, config, info = setup()
    info["service"]["path"] = '"C:\\Program Files\\Mirantis\\dockerd.exe" --run-service'
    (reason,) = _windows_engine.verify_engine(info, engine, host, config)
    assert "set docker_host_windows_engine_source=preinstalled" in reason


def test_a_preinstalled_engine_is_checked_for_everything_but_the_pinned_binaries():
    host = _windows_host.host_platform(answers.facts("server2022"))
    engine = _windows_host.engine_settings(answers.engine_settings(engine_source="preinstalled"))
    config = _windows_host.daemon_config(answers.daemon_settings(), engine)
    info = answers.engine_info_healthy(config)
    info.update(marker_json=None, engine_files=[],
                service=dict(info["service"], path='"C:\\Program Files\\Mirantis\\dockerd.exe" --run-service'),
                docker_version=json.dumps(answers.docker_version(version="23.0.15")))
    assert _windows_engine.verify_engine(info, engine, host, config) == []
    info["tcp_listeners"] = [{"address": "::", "port": 2376}]
    assert _windows_engine.verify_engine(info, engine, host, config) == ["dockerd listens on TCP :::2376: the engine must answer on its named pipe only"]


def test_a_missing_service_is_reported_alone():
    host, engine, config = setup()[:3]
    assert _windows_engine.verify_engine(answers.engine_info_fresh(), engine, host, config) == [
        "no service named docker exists on the host"]


def test_installed_engine_compares_the_record_and_the_binaries():
    engine, info = setup()[1::2]
    assert _windows_engine.installed_engine(info, engine) == (True, "engine 27.5.1 installed from an archive with the pinned SHA-256")
    assert _windows_engine.installed_engine(answers.engine_info_fresh(), engine)[0] is False
    other = dict(info, marker_json=answers.marker_json(sha256="ab" * 32))
    assert "is not the pinned 27.5.1 (archive %s)" % answers.ARCHIVE_SHA256 in _windows_engine.installed_engine(other, engine)[1]
    assert _windows_engine.installed_engine(dict(info, marker_json="{not json"), engine)[0] is False
    record = json.loads(answers.marker_json())
    del record["files"]["docker.exe"]
    assert _windows_engine.installed_engine(dict(info, marker_json=json.dumps(record)), engine) == (
        False, "the install record does not list docker.exe")


def test_kernel_build_reads_docker_infos_format():
    assert _windows_engine.kernel_build(answers.KERNELS[26100]) == 26100
    assert _windows_engine.kernel_build("6.1.0-28-amd64") is None
