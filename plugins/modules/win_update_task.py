#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller (plugins/action/win_update_task.py); this file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_update_task
short_description: Schedule a Windows checkpoint's updates and the host's Windows Update
version_added: 0.1.0
description:
  - Writes C(update.conf) (for C(vantage update), with the engine's named pipe and the lock's directory), the API token and the
    command C(vantage-checkpoint-update.ps1) that runs the update engine from the installed checkpoint image, each only
    SYSTEM and Administrators may change, and registers the scheduled task C(\Vantage\Update <checkpoint>) - SYSTEM,
    highest privileges, O(schedule) with a random delay of O(randomized_delay), never two runs at once, a run missed while
    the host was off made up when it is back.
  - Refuses, before changing anything, a schedule whose runs are more than O(max_interval_days) (at most 14) apart, and
    settings that break the collection's rules (names, channel, URL).
  - With O(os_updates), configures Windows Update to download and install updates automatically every day at
    O(os_update_hour), restarting at that time when an update needs it only with O(os_reboot).
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
  checkpoint:
    description: Name of the checkpoint.
    type: str
    required: true
  instances:
    description: The checkpoint's instances on this host.
    type: list
    elements: str
    required: true
  channel:
    description: The release channel (a Windows host follows a channel whose releases are built for its Windows release).
    type: str
    default: stable
  control_plane_url:
    description: The control plane's URL.
    type: str
    required: true
  api_token:
    description: An API token with the C(read) scope, stored on the host for the update engine.
    type: str
    required: true
  ca:
    description: Whether the checkpoint role wrote the control plane's CA (C(ca.pem) in the checkpoint's directory).
    type: bool
    default: false
  validate_certs:
    description: Whether the update engine verifies the control plane's certificate.
    type: raw
    default: true
  health_timeout:
    description: Seconds a replaced instance has to be healthy.
    type: raw
    default: 180
  gate_timeout:
    description: Seconds to wait for the other instances to be healthy before an instance is touched.
    type: raw
    default: 300
  schedule:
    description: V(daily HH:MM), V(every N days HH:MM) or V(weekly DAY[,DAY...] HH:MM) (days V(mon) ... V(sun)), host time.
    type: str
    default: daily 04:00
  randomized_delay:
    description: The most a run is delayed at random (V(1h), V(30min), V(0)).
    type: str
    default: 1h
  max_interval_days:
    description: The most days allowed between two runs (1 to 14).
    type: raw
    default: 14
  enabled:
    description: Whether the task is enabled.
    type: raw
    default: true
  config_dir:
    description: C(checkpoint_config_dir); used when it is a Windows path, else the collection's Windows layout.
    type: str
    default: ""
  state_dir:
    description: C(checkpoint_state_dir); used when it is a Windows path, else the collection's Windows layout.
    type: str
    default: ""
  bin_dir:
    description: Where the command is kept.
    type: str
    default: C:\ProgramData\Vantage\bin
  lock_dir:
    description: The directory of the host-wide update lock (mounted into every update run).
    type: str
    default: C:\ProgramData\Vantage\lock
  script:
    description: The command's text (the role passes C(files/vantage-checkpoint-update.ps1)).
    type: str
    required: true
  docker:
    description: Path of C(docker.exe); when not set, the one on the machine C(PATH).
    type: str
    default: ""
  os_updates:
    description: Whether to configure Windows Update.
    type: raw
    default: true
  os_reboot:
    description: Whether Windows may restart at the scheduled time when an update needs it.
    type: raw
    default: false
  os_update_hour:
    description: The hour (0-23) Windows Update installs at.
    type: raw
    default: 3
"""

EXAMPLES = r"""
- name: Schedule the checkpoint's updates
  vantage.checkpoint.win_update_task:
    checkpoint: plant
    instances: [a, b]
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_read_token }}"
    script: "{{ lookup('ansible.builtin.file', 'vantage-checkpoint-update.ps1') }}"
"""

RETURN = r"""
task:
  description: The scheduled task.
  returned: success
  type: str
  sample: \Vantage\Update plant
schedule:
  description: The parsed schedule.
  returned: success
  type: dict
longest_gap_days:
  description: The most days between two runs.
  returned: success
  type: int
update_config:
  description: The path of C(update.conf) on the host.
  returned: success
  type: str
windows_update:
  description: The Windows Update policy values set (empty without O(os_updates)).
  returned: success
  type: list
  elements: dict
reasons:
  description: Every reason for a refusal.
  returned: failure
  type: list
  elements: str
"""
