#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# An action plugin (plugins/action/win_checkpoint_identity.py) drives the PowerShell module
# win_checkpoint_identity.ps1; this file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_checkpoint_identity
short_description: Create or read a checkpoint instance's Ed25519 identity key on a Windows host
version_added: 0.1.0
description:
  - The Windows counterpart of M(vantage.checkpoint.checkpoint_identity). .NET has no Ed25519, so the key is created
    or read by the checkpoint image itself, C(vantage identity), in a C(--network none), process-isolated container
    running as C(ContainerUser) that mounts only the key's directory. The private key never leaves the host and is
    never returned.
  - A new key is written into a short-lived directory that only that container may write, moved into place and given
    its final access list; a second, read-only container run then reads it through that access list, which proves
    that the agent (C(ContainerUser)) can read it.
  - Access lists (docs/windows.md, "Key files") - the key file SYSTEM and Administrators full control, C(ContainerUser)
    read; its directory the same, C(ContainerUser) list only. Both are read back and checked on the controller.
  - Fails, and the key must not be used, when the printed key id does not match the public key, the key read back is
    not the key created, or an access list grants more.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads an existing key; reports a key that would be created without creating it (no public key then).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  path:
    description: Absolute Windows path of the key file.
    type: str
    required: true
  image:
    description: The checkpoint image (pinned), present on the host (M(vantage.checkpoint.win_checkpoint_image)).
    type: str
    required: true
  docker:
    description: Path of C(docker.exe); when not set, the one on C(PATH).
    type: str
    default: ""
seealso:
  - module: vantage.checkpoint.checkpoint_identity
  - module: vantage.checkpoint.checkpoint_enrollment
"""

EXAMPLES = r"""
- name: Identity key of instance a
  vantage.checkpoint.win_checkpoint_identity:
    path: C:\ProgramData\Vantage\checkpoints\office-berlin\a\identity.pem
    image: registry.example.com/vantage/checkpoint@sha256:4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f
  register: identity
"""

RETURN = r"""
path:
  description: The key file.
  returned: always
  type: str
created:
  description: Whether the key was (or, in check mode, would be) created.
  returned: always
  type: bool
public_key:
  description: The public key, standard padded base64 of the raw 32 bytes.
  returned: unless in check mode before the key exists
  type: str
key_id:
  description: The key id, the first 16 hex digits of SHA-256 over the raw public key.
  returned: unless in check mode before the key exists
  type: str
"""
