#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The PowerShell module win_scheduled_task_xml.ps1 is run by win_egress_policy and win_update_task;
# this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_scheduled_task_xml
short_description: Read, register, start or remove a Windows scheduled task from a Task Scheduler document
version_added: 0.1.0
description:
  - Returns the task as C(Export-ScheduledTask) prints it (RV(exported)) and its state, and, when asked, registers O(xml)
    as the task (for SYSTEM), removes the task, starts it when it is not running, or restarts it.
  - Internal to the collection - the controller renders the document and compares it with RV(exported) field by field
    (plugins/module_utils/_windows_tasks.py); it registers only when they differ.
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
    description: The task's folder, for example C(\Vantage\).
    type: str
    required: true
  name:
    description: The task's name.
    type: str
    required: true
  xml:
    description: The task document to register.
    type: str
  register:
    description: Whether to register O(xml).
    type: bool
    default: false
  remove:
    description: Whether to remove the task.
    type: bool
    default: false
  start:
    description: Whether to start the task when it is not running.
    type: bool
    default: false
  restart:
    description: Whether to stop the task when it runs and start it again.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Read a task
  vantage.checkpoint.win_scheduled_task_xml:
    path: \Vantage\
    name: Update plant
"""

RETURN = r"""
exported:
  description: The task's document as Task Scheduler exports it, V(null) when there is no such task.
  returned: always
  type: str
state:
  description: The task's state (C(Ready), C(Running), C(Disabled)), V(null) when there is no such task.
  returned: always
  type: str
"""
