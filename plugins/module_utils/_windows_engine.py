# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Is a Windows host's Docker engine the one the role installed, and safe? Judged on the controller.

``win_docker_engine_facts`` (PowerShell, read-only) reports what the host has: the engine service
and its command line, the named pipe's access list, the TCP sockets dockerd listens on, the
installed binaries' hashes, daemon.json and the raw ``docker version`` / ``docker info`` JSON.
This module decides from that report, so that every rule is unit-tested here with answers shaped
after Docker's and Windows' documentation (docs/windows.md says which ran on a real host).
"""

from __future__ import annotations

import json
import ntpath
import re

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_sddl

#: Written next to the binaries by win_docker_engine: what was installed from which archive.
MARKER_FILE = "vantage-engine.json"
ENGINE_FILES = ("docker.exe", "dockerd.exe")
_HOST_FLAG = re.compile(r"(^|\s)(-H|--host)(\s|=|$)|tcp://|--tlsverify|(^|\s)--tls(\s|=|$)", re.IGNORECASE)


def _normalize_command(command):
    return " ".join(str(command or "").split()).lower()


def parse_docker_json(stdout, what):
    """The JSON object a ``docker ... --format '{{json .}}'`` printed, or ``(None, reason)``."""
    text = str(stdout or "").strip()
    if not text:
        return None, "%s printed nothing" % what
    try:
        value = json.loads(text.splitlines()[-1])
    except ValueError:
        return None, "%s did not print JSON: %s" % (what, text[:200])
    if not isinstance(value, dict):
        return None, "%s printed %s, not a JSON object" % (what, type(value).__name__)
    return value, None


def kernel_build(kernel_version):
    """The build of ``docker info``'s KernelVersion (``10.0 20348 (20348.1.amd64fre...)``), or None."""
    match = re.match(r"\s*10\.0\s+([0-9]+)", str(kernel_version or ""))
    return int(match.group(1)) if match else None


def parse_marker(text):
    """The install record win_docker_engine wrote (a JSON object), or None when absent or unreadable."""
    try:
        marker = json.loads(text) if text else None
    except ValueError:
        return None
    return marker if isinstance(marker, dict) else None


def installed_engine(facts, engine):
    """``(up_to_date, reason)``: whether the static engine on the host is the pinned one, untouched.

    Up to date means: the marker says the pinned version came from the archive with the pinned
    SHA-256, and the binaries on disk still have the hashes recorded when they were installed.
    """
    marker = parse_marker(facts.get("marker_json"))
    if marker is None:
        return False, "no engine installed by this role in %s" % engine["install_dir"]
    if marker.get("version") != engine["version"] or marker.get("sha256") != engine["sha256"]:
        return False, "installed engine %s (archive %s) is not the pinned %s (archive %s)" % (
            marker.get("version"), marker.get("sha256"), engine["version"], engine["sha256"])
    on_disk = dict((item.get("name"), item.get("sha256")) for item in facts.get("engine_files") or [])
    recorded = marker.get("files") or {}
    for name in ENGINE_FILES:
        if not recorded.get(name):
            return False, "the install record does not list %s" % name
        if on_disk.get(name) != recorded[name]:
            return False, "%s differs from the installed one (SHA-256 %s, recorded %s)" % (
                ntpath.join(engine["install_dir"], name), on_disk.get(name), recorded[name])
    return True, "engine %s installed from an archive with the pinned SHA-256" % engine["version"]


def verify_engine(facts, engine, host, daemon_config, service_enabled=True):
    """Every reason why the engine on the host is not the safe, pinned one the role configured.

    ``engine`` is ``_windows_host.engine_settings``' answer, ``host`` is ``host_platform``'s and
    ``daemon_config`` the daemon.json the role wrote. An empty list means the engine answers on
    its named pipe only, with the pipe's access list, process isolation, version and logging the
    role set, and listens on no TCP socket.
    """
    reasons = []
    service = facts.get("service") or {}
    if not service.get("exists"):
        return ["no service named %s exists on the host" % engine["service"]]
    if service.get("state") != "running":
        reasons.append("the %s service is %s, not running" % (engine["service"], service.get("state")))
    if service_enabled and service.get("start_mode") not in ("auto", "delayed"):
        reasons.append("the %s service starts %s, not automatically" % (engine["service"], service.get("start_mode")))
    command = service.get("path") or ""
    if engine["source"] == "static" and _normalize_command(command) != _normalize_command(engine["service_command"]):
        reasons.append("the %s service runs %s, not the engine this role installed (%s); set "
                       "docker_host_windows_engine_source=preinstalled to keep a self-managed engine"
                       % (engine["service"], command, engine["service_command"]))
    if _HOST_FLAG.search(command):
        reasons.append("the %s service's command line sets listening addresses or TLS (%s): the engine must "
                       "listen on its named pipe only, as daemon.json says" % (engine["service"], command))

    listeners = facts.get("tcp_listeners")
    if listeners is None:
        reasons.append("the host did not report dockerd's TCP sockets, so a TCP listener cannot be ruled out")
    elif listeners:
        reasons.append("dockerd listens on TCP %s: the engine must answer on its named pipe only" % ", ".join(
            "%s:%s" % (item.get("address"), item.get("port")) for item in listeners))

    pipe = facts.get("pipe") or {}
    group_sid = None
    if engine.get("pipe_group"):
        group_sid = facts.get("pipe_group_sid")
        if not group_sid:
            reasons.append("docker_host_windows_pipe_group %r does not resolve to a SID on the host (%s)"
                           % (engine["pipe_group"], facts.get("pipe_group_error") or "unknown group"))
    if not pipe.get("exists"):
        reasons.append("the named pipe %s does not exist: the engine does not answer on it" % engine["pipe"])
    else:
        reasons.extend(_windows_sddl.check_dacl(
            pipe.get("sddl"), _windows_sddl.pipe_policy(group_sid), "the named pipe %s" % engine["pipe"],
            required=((_windows_sddl.ADMINISTRATORS, _windows_sddl.FILE_GENERIC_READ | _windows_sddl.FILE_GENERIC_WRITE),)))

    written = facts.get("daemon_json")
    try:
        on_host = json.loads(written) if written else None
    except ValueError:
        on_host = None
    if on_host != daemon_config:
        reasons.append("daemon.json on the host is not the configuration the role wrote")

    version, problem = parse_docker_json(facts.get("docker_version"), "docker version")
    if problem:
        reasons.append("the engine does not answer on %s: %s %s" % (
            engine["pipe"], problem, str(facts.get("docker_version_stderr") or "").strip()[:300]))
    else:
        server = version.get("Server") or {}
        if not server:
            reasons.append("docker version has no Server part: the engine does not answer on %s" % engine["pipe"])
        elif server.get("Os") != "windows":
            reasons.append("the engine runs %s containers, not windows" % server.get("Os"))
        elif engine["source"] == "static" and server.get("Version") != engine["version"]:
            reasons.append("the engine reports version %s, not the pinned %s" % (server.get("Version"), engine["version"]))

    info, problem = parse_docker_json(facts.get("docker_info"), "docker info")
    if problem:
        reasons.append("docker info failed: %s" % problem)
    else:
        for error in info.get("ServerErrors") or []:
            reasons.append("docker info: %s" % error)
        if info.get("OSType") != "windows":
            reasons.append("docker info reports OSType %s, not windows" % info.get("OSType"))
        if info.get("Isolation") != engine["isolation"]:
            reasons.append("the engine's default isolation is %s, not %s" % (info.get("Isolation"), engine["isolation"]))
        build = kernel_build(info.get("KernelVersion"))
        if build != host["build"]:
            reasons.append("the engine reports kernel build %s but the host facts say %d" % (build, host["build"]))
        expected_driver = daemon_config.get("log-driver")
        if info.get("LoggingDriver") != expected_driver:
            reasons.append("the engine logs with %s, not %s" % (info.get("LoggingDriver"), expected_driver))

    if engine["source"] == "static":
        current, why = installed_engine(facts, engine)
        if not current:
            reasons.append(why)
    return reasons
