#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The PowerShell module win_docker_exec.ps1 is run by the collection's Windows action plugins
# (through plugins/module_utils/_windows_docker.py); this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_docker_exec
short_description: Run docker.exe once on a Windows host and report its exit code and output
version_added: 0.1.0
description:
  - Runs C(docker.exe) with O(argv) and returns its exit code, standard output and standard error. A non-zero exit
    code does not fail the task; the caller reads the answer.
  - Internal to the collection - M(vantage.checkpoint.win_checkpoint_container), M(vantage.checkpoint.win_checkpoint_health),
    M(vantage.checkpoint.win_egress_policy) and M(vantage.checkpoint.win_update_task) run it for each engine call their
    controller-side code decides on. It decides nothing itself.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - The command runs in check mode too. The collection's callers only send commands that read in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  argv:
    description: The arguments after C(docker.exe), each one passed as one argument.
    type: list
    elements: str
    required: true
  docker:
    description: Path of C(docker.exe); when not set, the one on the machine C(PATH).
    type: str
"""

EXAMPLES = r"""
- name: Inspect a checkpoint container
  vantage.checkpoint.win_docker_exec:
    argv: [container, inspect, vantage-plant-a]
  register: inspected
"""

RETURN = r"""
rc:
  description: The exit code of C(docker.exe).
  returned: always
  type: int
stdout:
  description: What it printed on standard output.
  returned: always
  type: str
stderr:
  description: What it printed on standard error.
  returned: always
  type: str
"""
