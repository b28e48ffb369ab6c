#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The module is PowerShell (win_docker_engine_info.ps1); this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_docker_engine_info
short_description: Report a Windows host's container engine, read-only
version_added: 0.1.0
description:
  - Reports, without changing anything, what a Windows Server host has of a Docker engine, for the controller to
    judge with M(vantage.checkpoint.win_docker_host_plan) and M(vantage.checkpoint.win_docker_engine_verify).
  - The state of the C(Containers) Windows feature, the C(docker) service (state, start mode, command line,
    process id), the TCP sockets that process listens on, whether the named pipe C(\\.\pipe\docker_engine) exists and
    its access list (SDDL), the hashes of C(docker.exe) and C(dockerd.exe) in O(install_dir) with the install record
    M(vantage.checkpoint.win_docker_engine) wrote there, the text of C(%ProgramData%\docker\config\daemon.json), and
    the raw JSON of C(docker version) and C(docker info).
  - The module decides nothing; see docs/windows.md.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  install_dir:
    description: Directory of an engine installed by M(vantage.checkpoint.win_docker_engine), for its binaries' hashes.
    type: str
  docker:
    description: Path of C(docker.exe); when not set, the one on C(PATH).
    type: str
  pipe_group:
    description: A group allowed on the engine's pipe; its SID is returned as RV(pipe_group_sid).
    type: str
  query_engine:
    description: Run C(docker version) and C(docker info).
    type: bool
    default: true
  wait:
    description:
      - Seconds to keep asking C(docker version) until the engine answers (a freshly started engine needs a moment);
        the rest of the report is taken once it answered or the time is up.
    type: int
    default: 0
seealso:
  - module: vantage.checkpoint.win_docker_engine_verify
"""

EXAMPLES = r"""
- name: Report the engine
  vantage.checkpoint.win_docker_engine_info:
    install_dir: C:\Program Files\docker
  register: engine_info
"""

RETURN = r"""
containers_feature:
  description: DISM state of the C(Containers) feature (V(Enabled), V(EnablePending), V(Disabled)...), or null.
  returned: always
  type: str
  sample: Enabled
service:
  description: The C(docker) service; only C(exists) when there is none.
  returned: always
  type: dict
  sample: {exists: true, state: running, start_mode: auto, path: '"C:\Program Files\docker\dockerd.exe" --run-service', pid: 4242}
tcp_listeners:
  description: TCP sockets the engine process listens on; null when they cannot be listed.
  returned: always
  type: list
  elements: dict
  sample: []
pipe:
  description: Whether the named pipe exists, its access list as SDDL, and the error when it could not be read.
  returned: always
  type: dict
  sample: {exists: true, sddl: "D:P(A;;FA;;;BA)(A;;FA;;;SY)", error: null}
pipe_group_sid:
  description: SID of O(pipe_group), or null.
  returned: always
  type: str
engine_files:
  description: SHA-256 of C(docker.exe) and C(dockerd.exe) in O(install_dir) (null when missing).
  returned: always
  type: list
  elements: dict
marker_json:
  description: The install record M(vantage.checkpoint.win_docker_engine) wrote in O(install_dir), as text, or null.
  returned: always
  type: str
daemon_json_path:
  description: Path of the engine's configuration file.
  returned: always
  type: str
  sample: C:\ProgramData\docker\config\daemon.json
daemon_json:
  description: Text of the engine's configuration file, or null.
  returned: always
  type: str
docker:
  description: The C(docker.exe) used, or null when none was found.
  returned: always
  type: str
docker_version:
  description: Raw output of C(docker version --format '{{json .}}'), or null when not asked.
  returned: always
  type: str
docker_info:
  description: Raw output of C(docker info --format '{{json .}}'), or null when not asked.
  returned: always
  type: str
"""
