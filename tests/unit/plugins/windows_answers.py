# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Windows answers for the unit tests (see fixtures/windows/README.md for what they are shaped after)."""

from __future__ import annotations

import copy
import json
import os
import re

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "windows")
MODULES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "plugins", "modules")
ARCHIVE_SHA256 = "3b1f" + "0" * 56 + "a9c2"
DOCKER_EXE_SHA256 = "d0" * 32
DOCKERD_EXE_SHA256 = "e1" * 32
IMAGE_DIGEST = "sha256:" + "4f" * 32
IMAGE = "registry.example.com/vantage/checkpoint@" + IMAGE_DIGEST
GROUP_SID = "S-1-5-21-1004336348-1177238915-682003330-1013"
PIPE_SDDL = "D:P(A;;FA;;;BA)(A;;FA;;;SY)"
KERNELS = {
    17763: "10.0 17763 (17763.1.amd64fre.rs5_release.180914-1434)",
    20348: "10.0 20348 (20348.1.amd64fre.fe_release.210507-1500)",
    26100: "10.0 26100 (26100.1.amd64fre.ge_release.240331-1435)",
}


def load(name):
    with open(os.path.join(FIXTURES, name)) as stream:
        return json.load(stream)


def facts(release):
    """``ansible_facts`` of ``server2019``, ``server2022``, ``server2025`` or ``windows11``."""
    return load("facts-%s.json" % release)


def docker_version(build=20348, version="27.5.1"):
    answer = load("docker-version-27.5.1-ltsc2022.json")
    answer["Server"]["KernelVersion"] = KERNELS[build]
    answer["Server"]["Version"] = version
    return answer


def docker_info(build=20348, **changes):
    answer = load("docker-info-27.5.1-ltsc2022.json")
    answer["KernelVersion"] = answer["OSVersion"] = KERNELS[build]
    answer.update(changes)
    return answer


def image_inspect(os_version="10.0.20348.3091"):
    answer = load("docker-image-inspect-ltsc2022.json")[0]
    answer["OsVersion"] = os_version
    return answer


def engine_settings(**changes):
    """The docker_host_windows_* settings (without the prefix) of a static engine, as the role passes them."""
    settings = dict(
        engine_source="static", engine_version="27.5.1", engine_sha256=ARCHIVE_SHA256,
        engine_url="https://download.docker.com/win/static/stable/x86_64/docker-27.5.1.zip", engine_src="",
        install_dir="C:\\Program Files\\docker", isolation="process", pipe_group="", allow_reboot=True,
        reboot_timeout=1800)
    settings.update(changes)
    return settings


def daemon_settings(**changes):
    settings = dict(log_driver="json-file", log_max_size="10m", log_max_file=3, insecure_registries=[],
                    registry_mirrors=[], data_root="", daemon_options={})
    settings.update(changes)
    return settings


def marker_json(version="27.5.1", sha256=ARCHIVE_SHA256):
    """The install record win_docker_engine writes (PowerShell ConvertTo-Json -Compress of an ordered dict)."""
    return json.dumps({"version": version, "sha256": sha256,
                       "files": {"docker.exe": DOCKER_EXE_SHA256, "dockerd.exe": DOCKERD_EXE_SHA256}},
                      separators=(",", ":"))


def engine_info_fresh():
    """win_docker_engine_info on a Windows Server that has neither the Containers feature nor an engine."""
    return {
        "changed": False,
        "containers_feature": "Disabled",
        "service": {"exists": False},
        "tcp_listeners": None,
        "pipe": {"exists": False, "sddl": None, "error": None},
        "pipe_group_sid": None,
        "engine_files": [{"name": "docker.exe", "sha256": None}, {"name": "dockerd.exe", "sha256": None}],
        "marker_json": None,
        "daemon_json_path": "C:\\ProgramData\\docker\\config\\daemon.json",
        "daemon_json": None,
        "docker": None,
        "docker_version": None,
        "docker_info": None,
    }


def engine_info_healthy(daemon_config, build=20348, install_dir="C:\\Program Files\\docker"):
    """win_docker_engine_info once the role installed, configured and started the pinned engine."""
    info = engine_info_fresh()
    info.update(
        containers_feature="Enabled",
        service={"exists": True, "state": "running", "start_mode": "auto",
                 "path": '"%s\\dockerd.exe" --run-service' % install_dir, "pid": 4242},
        tcp_listeners=[],
        pipe={"exists": True, "sddl": PIPE_SDDL, "error": None},
        engine_files=[{"name": "docker.exe", "sha256": DOCKER_EXE_SHA256},
                      {"name": "dockerd.exe", "sha256": DOCKERD_EXE_SHA256}],
        marker_json=marker_json(),
        daemon_json=json.dumps(daemon_config, indent=2, sort_keys=True) + "\n",
        docker=install_dir + "\\docker.exe",
        docker_version=json.dumps(docker_version(build)) + "\n",
        docker_version_stderr="",
        docker_info=json.dumps(docker_info(build)) + "\n",
        docker_info_stderr="",
    )
    return copy.deepcopy(info)


def ps1_options(module):
    """``{option: required}`` of a PowerShell module, read from its ``$spec`` (``name = @{ type = ...; required = $true }``)."""
    with open(os.path.join(MODULES, module + ".ps1")) as stream:
        text = stream.read()
    block = re.search(r"options = @\{\n(.*?)\n    \}\n", text, re.S)
    if block is None:
        raise AssertionError("no options block in %s.ps1" % module)
    options = {}
    for line in block.group(1).splitlines():
        match = re.fullmatch(r"\s+([a-z0-9_]+) = @\{ type = '[a-z]+'(.*)\}", line)
        if match is None:
            raise AssertionError("unexpected option line in %s.ps1: %r" % (module, line))
        options[match.group(1)] = "required = $true" in match.group(2)
    return options
