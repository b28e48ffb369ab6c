#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller (plugins/action/win_checkpoint_health.py) and reads the Windows host through
# win_docker_exec and win_acl_report; this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_checkpoint_health
short_description: Verify that a checkpoint and its instances on a Windows host are healthy
version_added: 0.1.0
description:
  - The Windows counterpart of M(vantage.checkpoint.checkpoint_health), with the same verdict, report and options. The
    control plane is asked from the controller (which must reach it; O(ca_path) is a file on the controller).
  - With O(local_engine=true), each instance in O(local_instances) is read on the Windows host through C(docker.exe) -
    the container exists with the checkpoint's labels, runs, is C(healthy), runs the image the control plane sees -
    and it must be process-isolated, run as C(ContainerUser) and mount no named pipe. Its identity key (in the
    configuration directory the container mounts) must have exactly its access list (SYSTEM, Administrators,
    C(ContainerUser) read) instead of mode C(0600). The host's clock is compared with the control plane's.
  - The module changes nothing.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
  - vantage.checkpoint.control_plane
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  wait_timeout:
    description: As in M(vantage.checkpoint.checkpoint_health).
    type: int
    default: 120
  checkpoint:
    description: Name of the checkpoint.
    type: str
    required: true
  instances:
    description: The instances the checkpoint is expected to have; when not set, every instance the control plane knows.
    type: list
    elements: str
  min_healthy:
    description: How many of them must be healthy; when not set, all.
    type: int
  image_digest:
    description: When set, every expected instance must run this image.
    type: str
  local_engine:
    description: Whether to read the Windows host's containers, identity keys and clock.
    type: bool
    default: false
  local_instances:
    description: Which of the expected instances run on this host; when not set, all.
    type: list
    elements: str
  max_clock_offset:
    description: Seconds the host's clock may differ from the control plane's (with O(local_engine=true)).
    type: float
    default: 30
  wait:
    description: Whether to ask again until the checkpoint is healthy or O(wait_timeout) seconds have passed.
    type: bool
    default: false
  poll_interval:
    description: Seconds between two checks with O(wait=true).
    type: float
    default: 3
  fail_on_unhealthy:
    description: Whether the task fails when the checkpoint is not healthy.
    type: bool
    default: true
  docker:
    description: Path of C(docker.exe) on the host; when not set, the one on the machine C(PATH).
    type: str
    default: ""
seealso:
  - module: vantage.checkpoint.checkpoint_health
"""

EXAMPLES = r"""
- name: Both instances on this Windows host connected and healthy
  vantage.checkpoint.win_checkpoint_health:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_read_token }}"
    checkpoint: plant
    instances: [a, b]
    local_engine: true
    wait: true
"""

RETURN = r"""
healthy:
  description: Whether the checkpoint is healthy.
  returned: always
  type: bool
state:
  description: The checkpoint's state at the control plane.
  returned: always
  type: str
reasons:
  description: Every reason it is not healthy.
  returned: always
  type: list
  elements: str
report:
  description:
    - The report of M(vantage.checkpoint.checkpoint_health); each instance's C(local) also has C(identity_key_sddl),
      the key's access list as the host reports it.
  returned: always
  type: dict
"""
