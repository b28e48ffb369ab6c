#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The PowerShell module win_acl_report.ps1 is run by win_checkpoint_health; this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_acl_report
short_description: Read the access lists of files on a Windows host, and its clock
version_added: 0.1.0
description:
  - Returns the access list (DACL) of each path as SDDL text (V(null) for a path that does not exist) and the host's
    clock. Changes nothing.
  - Internal to the collection - M(vantage.checkpoint.win_checkpoint_health) judges the identity keys' access lists and
    the host's clock with it on the controller.
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
  paths:
    description: Absolute Windows paths.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Read an identity key's access list
  vantage.checkpoint.win_acl_report:
    paths: [C:\ProgramData\Vantage\checkpoints\plant\a\identity.pem]
"""

RETURN = r"""
sddl:
  description: Path to its DACL as SDDL text, V(null) when the path does not exist.
  returned: always
  type: dict
now_ms:
  description: The host's clock, milliseconds since the Unix epoch (UTC).
  returned: always
  type: int
"""
