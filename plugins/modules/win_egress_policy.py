#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller (plugins/action/win_egress_policy.py); the host runs the reconciler
# roles/egress_firewall/files/vantage-egress.ps1. This file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_egress_policy
short_description: Enforce a Windows checkpoint's egress policy with HNS endpoint ACLs, and prove it from inside each instance
version_added: 0.1.0
description:
  - The Windows Firewall does not filter the traffic of containers on a C(nat) network, so the policy the
    P(vantage.checkpoint.egress_firewall#role) role derives (control plane, registry, revocation endpoints, resolvers,
    targets; validated as on Linux) becomes HNS endpoint ACLs - an allow rule per entry and protocol, then a block of all
    outbound traffic - on every endpoint of the checkpoint's network.
  - Installs a reconciler (C(vantage-egress.ps1), in a directory only SYSTEM and Administrators may change) and two
    scheduled tasks running it as SYSTEM - C(\Vantage\Egress <checkpoint>), started at boot and restarted when it stops,
    re-applies the ACLs whenever a container of the checkpoint starts (its endpoint is then new - container start, engine
    restart, host reboot); C(\Vantage\Egress refresh <checkpoint>) resolves the policy's host names again every
    O(refresh_interval) and re-applies.
  - Then runs the reconciler once and proves the policy from inside every instance with the image's Python - the control
    plane answers; the link-local metadata address, a documentation-range address and the control plane's address on a
    port the policy does not open do not. An instance that reaches a destination outside the policy is stopped and the
    task fails, naming the instance and the probe; so does an instance whose endpoint was not found or whose probe did
    not run. The reconciler does the same after each re-apply.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: partial
    details:
      - Reports whether the files or tasks would change; the reconciler does not run and nothing is proven.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  checkpoint:
    description: Name of the checkpoint.
    type: str
    required: true
  network:
    description: The checkpoint's network; default C(vantage-<checkpoint>).
    type: str
  instances:
    description: The checkpoint's instances on this host; each must be proven.
    type: list
    elements: str
    required: true
  rules:
    description: The policy's entries, as M(vantage.checkpoint.egress_rules) takes them.
    type: list
    elements: dict
    required: true
  resolvers:
    description: Resolvers the instances may query directly (IPv4 on a C(nat) network).
    type: list
    elements: str
    default: []
  host_timeout:
    description: Seconds a resolved address stays valid (at least 60).
    type: raw
    default: 3600
  refresh_interval:
    description: How often the names are resolved again (C(5min), C(1h); at least a minute).
    type: str
    default: 5min
  directory:
    description: Where the rendered policy is kept on the host.
    type: str
    default: C:\ProgramData\Vantage\egress
  bin_dir:
    description: Where the reconciler is kept on the host.
    type: str
    default: C:\ProgramData\Vantage\bin
  script:
    description: The reconciler's text (the role passes C(files/vantage-egress.ps1)).
    type: str
    required: true
  python:
    description: The image's Python, which runs the probe.
    type: str
    default: C:\vantage\venv\Scripts\python.exe
  docker:
    description: Path of C(docker.exe); when not set, the one on the machine C(PATH).
    type: str
    default: ""
seealso:
  - module: vantage.checkpoint.egress_rules
"""

EXAMPLES = r"""
- name: Enforce and prove the egress policy
  vantage.checkpoint.win_egress_policy:
    checkpoint: plant
    instances: [a, b]
    rules:
      - {name: control-plane, hosts: [cp.example.com], ports: [443]}
    script: "{{ lookup('ansible.builtin.file', 'vantage-egress.ps1') }}"
"""

RETURN = r"""
policy:
  description: The rendered policy's path on the host.
  returned: always
  type: str
acls:
  description: How many static ACL rules the policy has (besides the ones for host names and the final block).
  returned: always
  type: int
hosts:
  description: The host names the reconciler resolves.
  returned: always
  type: list
  elements: str
skipped:
  description: IPv6 destinations left out (a C(nat) network carries IPv4 only).
  returned: always
  type: list
  elements: str
probe:
  description: What the probe tries (C(allowed) and C(denied) destinations).
  returned: always
  type: dict
report:
  description: The reconciler's report (each endpoint, its container, whether ACLs were applied, the probe's answer).
  returned: when not in check mode
  type: dict
reasons:
  description: Why the policy is not proven.
  returned: failure
  type: list
  elements: str
"""
