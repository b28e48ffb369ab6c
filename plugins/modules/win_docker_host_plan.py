#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller only (plugins/action/win_docker_host_plan.py); this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_docker_host_plan
short_description: Decide on the controller what docker_host does to a Windows host, or refuse
version_added: 0.1.0
description:
  - Decides from the host's facts and M(vantage.checkpoint.win_docker_engine_info)'s report, without touching the host,
    which Windows Server release it is, which engine it gets, the engine's C(daemon.json), whether the C(Containers)
    feature must be installed and whether that means a reboot.
  - Refuses, listing every reason and changing nothing - Windows client editions (10/11), domain controllers, Nano
    Server, builds other than Windows Server 2019 (17763), 2022 (20348) and 2025 (26100), other architectures than
    x86_64, Hyper-V isolation, a malformed version or SHA-256, a non-HTTPS URL, C(daemon.json) options that would open
    TCP or stop dockerd from starting, a feature install without permission to reboot, and a preinstalled engine that
    is not there.
  - The options are the C(docker_host) role's variables without their prefix (C(docker_host_windows_) for the engine,
    C(docker_host_) for the shared ones); see the role's argument specification.
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
  facts:
    description: The host's facts; the gathered C(ansible_facts) when not set.
    type: dict
  engine_info:
    description: The registered result of M(vantage.checkpoint.win_docker_engine_info).
    type: dict
    required: true
  engine_source:
    description: V(static) (Docker's archive, pinned) or V(preinstalled) (an engine managed outside the role).
    type: str
    default: static
  engine_version:
    description: Engine version for V(static).
    type: str
    default: ""
  engine_sha256:
    description: SHA-256 of the engine archive for V(static).
    type: str
    default: ""
  engine_url:
    description: HTTPS URL of the archive.
    type: str
    default: ""
  engine_src:
    description: The archive as a file on the controller.
    type: str
    default: ""
  install_dir:
    description: Directory of the engine's binaries.
    type: str
    default: C:\Program Files\docker
  isolation:
    description: Container isolation; only V(process) is accepted.
    type: str
    default: process
  pipe_group:
    description: A group allowed to use the engine's named pipe besides Administrators.
    type: str
    default: ""
  allow_reboot:
    description: Whether the host may be restarted to finish installing the C(Containers) feature (strings accepted).
    type: raw
    default: true
  reboot_timeout:
    description: Seconds a restart may take.
    type: raw
    default: 1800
  log_driver:
    description: Default log driver.
    type: str
    default: json-file
  log_max_size:
    description: Size at which a container's log is rotated.
    type: str
    default: 10m
  log_max_file:
    description: Rotated logs kept per container.
    type: raw
    default: 3
  insecure_registries:
    description: Registries reached without TLS verification.
    type: list
    elements: str
    default: []
  registry_mirrors:
    description: Registry mirrors.
    type: list
    elements: str
    default: []
  data_root:
    description: Engine data directory (a Windows path); empty keeps the default.
    type: str
    default: ""
  daemon_options:
    description: Extra C(daemon.json) keys.
    type: dict
    default: {}
seealso:
  - module: vantage.checkpoint.win_docker_engine_info
  - module: vantage.checkpoint.win_docker_engine_verify
"""

EXAMPLES = r"""
- name: Report the engine
  vantage.checkpoint.win_docker_engine_info:
  register: engine_info

- name: Decide what to do
  vantage.checkpoint.win_docker_host_plan:
    engine_info: "{{ engine_info }}"
    engine_version: 27.5.1
    engine_sha256: "{{ docker_host_windows_engine_sha256 }}"
  register: plan
"""

RETURN = r"""
plan:
  description:
    - C(host) (C(build), C(ltsc), C(release), C(edition)), C(engine) (the validated engine settings and paths),
      C(daemon_config) (the C(daemon.json) content), C(daemon_json) and C(config_dir) (where it goes),
      C(containers) (C(install), C(reboot)), C(install_needed) and C(install_reason).
  returned: success
  type: dict
reasons:
  description: Every reason for a refusal.
  returned: failure
  type: list
  elements: str
"""
