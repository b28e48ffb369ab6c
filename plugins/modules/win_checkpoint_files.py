#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# An action plugin (plugins/action/win_checkpoint_files.py) drives the PowerShell module
# win_checkpoint_files.ps1; this file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_checkpoint_files
short_description: Write a checkpoint's trusted keys, CA, credentials and state directories on a Windows host
version_added: 0.1.0
description:
  - Writes the pinned signing keys (C(keys) of RV(vantage.checkpoint.win_checkpoint_plan#module:plan)), the CA
    certificate and the credentials for checks that log in into each instance's configuration
    directory (what its container mounts read-only), each file readable by C(ContainerUser) and nobody else but SYSTEM
    and Administrators; the checkpoint's own directory keeps the trusted keys and the CA for the update engine
    (SYSTEM and Administrators only).
  - Creates each instance's state directory (C(ContainerUser) may modify it) and the checkpoint's state directory.
  - Reads every access list back and fails when one is not exactly its policy (docs/windows.md, "Files on the host").
  - Fingerprints each instance's credentials file with its identity key on the host, so that new secrets replace the
    instances (RV(credentials_revisions)). The contents never appear in the result.
  - Credential names and fields are checked as on Linux; an empty O(credentials) removes the credentials files.
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
  layout:
    description: The checkpoint's host layout (C(layout) of RV(vantage.checkpoint.win_checkpoint_plan#module:plan)).
    type: dict
    required: true
  instances:
    description: The instances on this host.
    type: list
    elements: str
    required: true
  keys:
    description: The pinned signing keys, as the control plane lists them (C(keyid), C(public_key), C(status), ...).
    type: list
    elements: dict
    required: true
  ca_cert:
    description: PEM CA certificate(s) of the control plane; empty for none.
    type: str
    default: ""
  credentials:
    description: C(checkpoint_credentials).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Write the checkpoint's files
  vantage.checkpoint.win_checkpoint_files:
    layout: "{{ plan.layout }}"
    instances: [a, b]
    keys: "{{ plan.keys }}"
  no_log: true
"""

RETURN = r"""
trusted_keys:
  description: The ids of the keys written.
  returned: success
  type: list
  elements: str
ca_bundle:
  description: Whether a CA file was written.
  returned: success
  type: bool
credentials:
  description: Whether credentials files were written.
  returned: success
  type: bool
credential_names:
  description: The credential names (for the control plane).
  returned: success
  type: list
  elements: str
credentials_revisions:
  description: Instance name to the fingerprint of its credentials file.
  returned: success
  type: dict
written:
  description: The paths created, changed or removed.
  returned: success
  type: list
  elements: str
reasons:
  description: Every reason for a refusal.
  returned: failure
  type: list
  elements: str
"""
