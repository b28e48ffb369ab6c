# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """What the modules that keep an Ed25519 private key in a file have in common.

    M(vantage.checkpoint.checkpoint_identity) and M(vantage.checkpoint.signing_key) write and read
    the key file the same way (module_utils ``_key_file``); each module documents its own
    O(path), O(owner) and O(state), whose meaning differs.
    """

    DOCUMENTATION = r"""
options:
  group:
    description:
      - Group of the key file, as a name or a numeric gid.
      - When not set, a new file gets the module user's group and an existing file keeps its group.
    type: str
  mode:
    description:
      - Permissions of the key file, as an octal string such as V('0600') or V('0400').
      - Modes that give the group or others any access, that do not let the owner read the key, or that set special
        bits are refused. An existing file with another mode is corrected.
    type: raw
    default: '0600'
attributes:
  check_mode:
    support: full
    details:
      - In check mode no key is generated, so RV(public_key) and RV(key_id) are not returned when a key would be created.
  diff_mode:
    support: full
    details:
      - The diff shows the key id, mode and ownership before and after, never key material.
  platform:
    support: full
    platforms: posix
requirements:
  - cryptography (Python library, on the managed host)
notes:
  - Changing the ownership of a file to another user needs root privileges (C(become)).
"""
