#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller only (plugins/action/win_docker_engine_verify.py); this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_docker_engine_verify
short_description: Judge a Windows host's engine on the controller and fail closed
version_added: 0.1.0
description:
  - Fails, listing every reason, unless the engine M(vantage.checkpoint.win_docker_engine_info) reported is the one
    O(plan) describes and is safe - the service runs and starts automatically, its command line sets no TCP address
    or TLS, dockerd listens on no TCP socket, the named pipe exists and its access list grants only SYSTEM,
    Administrators and the optional pipe group (read/write), C(daemon.json) is what the role wrote, C(docker version)
    answers over the pipe with a Windows engine of the pinned version, C(docker info) reports process isolation, the
    host's build and the configured log driver, and the installed binaries are the ones installed from the pinned
    archive.
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
  plan:
    description: The RV(vantage.checkpoint.win_docker_host_plan#module:plan) of the host.
    type: dict
    required: true
  info:
    description: The registered result of M(vantage.checkpoint.win_docker_engine_info) after the engine started.
    type: dict
    required: true
  service_enabled:
    description: Whether the service must start automatically (strings accepted).
    type: raw
    default: true
seealso:
  - module: vantage.checkpoint.win_docker_host_plan
"""

EXAMPLES = r"""
- name: Verify the engine
  vantage.checkpoint.win_docker_engine_verify:
    plan: "{{ plan.plan }}"
    info: "{{ engine_info }}"
"""

RETURN = r"""
engine:
  description: What was verified - C(version), C(api_version), C(os_version), C(isolation), C(pipe), C(pipe_sddl), C(tcp_listeners).
  returned: success
  type: dict
reasons:
  description: Every reason the engine failed its self-check.
  returned: failure
  type: list
  elements: str
"""
