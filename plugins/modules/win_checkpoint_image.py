#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# An action plugin (plugins/action/win_checkpoint_image.py) drives the PowerShell module
# win_checkpoint_image.ps1; this file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_checkpoint_image
short_description: Make the pinned checkpoint image present on a Windows host, built for its Windows release
version_added: 0.1.0
description:
  - Pulls O(image) when the engine does not have it (an image id, C(sha256:...), must have been loaded beforehand),
    then checks on the controller that it is the pinned image and that it was built for the host's Windows Server
    build; a process-isolated container must match its host (17763 ltsc2019, 20348 ltsc2022, 26100 ltsc2025).
  - Refuses a reference that is not pinned by digest before pulling anything.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - An image that would be pulled cannot be checked in check mode; RV(verified) is then V(false).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  image:
    description: Image pinned by digest (C(repository@sha256:...)) or a local image id (C(sha256:...)).
    type: str
    required: true
  image_source:
    description: The variable the image came from, for messages.
    type: str
    default: checkpoint_image
  docker:
    description: Path of C(docker.exe); when not set, the one on C(PATH).
    type: str
    default: ""
  facts:
    description: The host's facts; the gathered C(ansible_facts) when not set.
    type: dict
"""

EXAMPLES = r"""
- name: Pull the checkpoint image for this host
  vantage.checkpoint.win_checkpoint_image:
    image: registry.example.com/vantage/checkpoint@sha256:4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f
"""

RETURN = r"""
image:
  description: The image reference.
  returned: always
  type: str
id:
  description: The image id.
  returned: when verified
  type: str
os_version:
  description: The Windows version the image was built for.
  returned: when verified
  type: str
  sample: 10.0.20348.3091
pulled:
  description: Whether the image was pulled.
  returned: when verified
  type: bool
verified:
  description: Whether the image was checked against the host.
  returned: always
  type: bool
"""
