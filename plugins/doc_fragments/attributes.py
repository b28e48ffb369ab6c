# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Attribute descriptions shared by the collection's modules.

    Each module states its own support levels under C(attributes); these fragments only
    describe what the attributes mean (and, for the action group, which group it is).
    """

    # Standard fragment: what check_mode, diff_mode and platform mean.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
"""

    # Modules that talk to the control plane and share the control_plane fragment's options.
    ACTIONGROUP_CHECKPOINT = r"""
options: {}
attributes:
  action_group:
    description: >-
      Use C(group/vantage.checkpoint.checkpoint) in C(module_defaults) to set the control plane
      connection options (O(control_plane_url), O(api_token), O(ca_path), O(validate_certs),
      O(timeout)) once for every module of the group.
    support: full
    membership:
      - vantage.checkpoint.checkpoint
"""
