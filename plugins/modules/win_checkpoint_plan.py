#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller only (plugins/action/win_checkpoint_plan.py); this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_checkpoint_plan
short_description: Decide on the controller where a checkpoint lives on a Windows host and which image it runs
version_added: 0.1.0
description:
  - From the host's facts and the checkpoint role's settings, without touching the host, checks the host (as
    M(vantage.checkpoint.win_docker_host_plan) does) and the names, picks the image for the host's Windows Server
    release (O(windows_images) entry, else O(image)) and returns the files the checkpoint keeps on the host.
  - Paths follow the collection's host layout for Windows, under C(C:\ProgramData\Vantage) unless O(config_dir) and
    O(state_dir) are Windows paths.
  - Refuses, listing every reason, a host M(vantage.checkpoint.win_docker_host_plan) would refuse, names that break
    the collection's naming rule, an unpinned image, an image map with unknown keys and a control-plane URL that is not
    C(https://) (C(http://) only to loopback).
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
  checkpoint:
    description: The checkpoint's name.
    type: str
    required: true
  instances:
    description: The checkpoint's instances on this host.
    type: list
    elements: str
    required: true
  image:
    description: The checkpoint image (C(checkpoint_image)), pinned.
    type: str
    default: ""
  windows_images:
    description: Pinned images by Windows Server release, keys V(ltsc2019), V(ltsc2022), V(ltsc2025) (C(checkpoint_windows_images)).
    type: dict
    default: {}
  config_dir:
    description: C(checkpoint_config_dir); used when it is a Windows path.
    type: str
    default: ""
  state_dir:
    description: C(checkpoint_state_dir); used when it is a Windows path.
    type: str
    default: ""
  control_plane_url:
    description: C(checkpoint_control_plane_url), checked by the collection's URL rule and returned without trailing slashes.
    type: str
  signing_keys:
    description:
      - The controller's C(ansible.builtin.uri) result of C(GET /api/v1/signing-keys). When given, the keys whose ids
        O(trusted_key_ids) pins (and that are not retired) are returned in RV(plan) as C(keys); a control plane that did not
        answer 200, or a pinned id it does not offer, is refused.
    type: dict
  trusted_key_ids:
    description: C(checkpoint_trusted_key_ids).
    type: list
    elements: str
  credentials:
    description: C(checkpoint_credentials), checked as on Linux (names and fields, never values); only the names are returned.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Plan the checkpoint on this host
  vantage.checkpoint.win_checkpoint_plan:
    checkpoint: office-berlin
    instances: [a]
    image: "{{ checkpoint_image }}"
    windows_images: "{{ checkpoint_windows_images }}"
  register: plan
"""

RETURN = r"""
plan:
  description:
    - C(host) (C(build), C(ltsc), C(release)), C(image) and C(image_source) (the variable it came from), C(layout)
      (C(config_dir), C(state_dir) and C(instances) with each C(identity_key)), C(control_plane_url).
    - C(instances), one C({name, config_dir, state_dir}) per instance for M(vantage.checkpoint.win_checkpoint_container);
      C(credential_names); with O(signing_keys), C(keys) (the pinned signing keys).
  returned: success
  type: dict
reasons:
  description: Every reason for a refusal.
  returned: failure
  type: list
  elements: str
"""
