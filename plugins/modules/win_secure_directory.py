#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# An action plugin (plugins/action/win_secure_directory.py) drives the PowerShell module
# win_secure_directory.ps1; this file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_secure_directory
short_description: A Windows directory with exactly the access list of a named policy
version_added: 0.1.0
description:
  - Creates the directory and any missing parents, each with the policy's access list from the moment it exists,
    and makes the directory's access list exactly the policy's (protected, nothing inherited from its parent).
  - Reads the access list back and fails when it grants anything the policy does not.
  - Policies (docs/windows.md, "Key files"), V(admin_only_directory) - SYSTEM and Administrators, inherited by
    everything inside; V(key_directory) - the same, and C(ContainerUser) may list the directory (not inherited).
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
  path:
    description: Absolute Windows path of the directory.
    type: str
    required: true
  policy:
    description: The access list to apply.
    type: str
    choices: [admin_only_directory, key_directory]
    default: admin_only_directory
"""

EXAMPLES = r"""
- name: Keep the checkpoints' configuration to SYSTEM and Administrators
  vantage.checkpoint.win_secure_directory:
    path: C:\ProgramData\Vantage\checkpoints
"""

RETURN = r"""
created:
  description: Directories created.
  returned: always
  type: list
  elements: str
sddl:
  description: The directory's access list as read back.
  returned: always
  type: str
  sample: D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)
"""
