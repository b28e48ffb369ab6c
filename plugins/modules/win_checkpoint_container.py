#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs on the controller (plugins/action/win_checkpoint_container.py) and reaches the host's docker.exe through
# win_docker_exec; this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_checkpoint_container
short_description: Run a checkpoint's instances on a Windows host, one instance at a time, with the hardening Windows has
version_added: 0.1.0
description:
  - The Windows counterpart of M(vantage.checkpoint.checkpoint_container), with the same manager - the same desired
    settings and fingerprint label (C(io.vantage.config-hash)), one instance replaced at a time behind the health gate,
    rollback of a new container that does not become healthy, recovery of a C(-previous) container - reaching the
    engine through C(docker.exe) (M(vantage.checkpoint.win_docker_exec)) and reading its JSON.
  - Each instance C(vantage-<checkpoint>-<instance>) runs process-isolated as C(ContainerUser) on the checkpoint's own
    C(nat) network (its HNS network is named like the Linux bridge, C(vtg-...)), with the memory and CPU limits,
    bounded C(json-file) logs and the restart policy, and mounts exactly two directories - its configuration
    directory read-only at C(C:\vantage\config) (identity key, trusted keys, CA, credentials) and its state directory at
    C(C:\vantage\state). Never the engine's named pipe.
  - What Windows containers do not have (read-only root, tmpfs, capabilities, security options, init, PID and swap
    limits) is not applied; docs/windows.md has the table.
  - Before anything changes, the image (pulled by digest when missing) must be the pinned one and built for the host's
    Windows build. After the run, every instance is read back and must be process-isolated, run as C(ContainerUser),
    be on the checkpoint's network and mount nothing else; otherwise the task fails.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - Only commands that read are sent to the host in check mode.
  diff_mode:
    support: full
  platform:
    support: full
    platforms: windows
options:
  facts:
    description: The host's facts; the gathered C(ansible_facts) when not set.
    type: dict
  docker:
    description: Path of C(docker.exe); when not set, the one on the machine C(PATH).
    type: str
    default: ""
  checkpoint:
    description: Name of the checkpoint.
    type: str
    required: true
  state:
    description: As in M(vantage.checkpoint.checkpoint_container).
    type: str
    choices: [present, absent]
    default: present
  instances:
    description: The instances that run on this host.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the instance.
        type: str
        required: true
      config_dir:
        description:
          - The instance's configuration directory on the host (absolute Windows path), holding C(identity.pem),
            C(trusted-keys.json) and, when used, C(ca.pem) and C(credentials.json) (M(vantage.checkpoint.win_checkpoint_files)).
        type: str
        required: true
      state_dir:
        description: The instance's state directory on the host (absolute Windows path).
        type: str
        required: true
      env:
        description: Extra environment variables of this instance.
        type: dict
  image:
    description: The image, pinned (C(repository@sha256:...) or C(sha256:...)).
    type: str
  control_plane_url:
    description: The control plane's URL, as the agents sign it into their sessions.
    type: str
  ca_bundle:
    description: Whether each configuration directory holds C(ca.pem) for the agent.
    type: bool
    default: false
  credentials:
    description: Whether each configuration directory holds C(credentials.json) for the agent.
    type: bool
    default: false
  credentials_revisions:
    description:
      - Instance name to the fingerprint of its credentials file (RV(vantage.checkpoint.win_checkpoint_files#module:credentials_revisions)),
        so that new secrets replace the instances.
    type: dict
    default: {}
  env:
    description: Extra environment variables of every instance.
    type: dict
  network:
    description: The checkpoint's network; default C(vantage-<checkpoint>).
    type: str
  user:
    description: The agent's user; only C(ContainerUser) is accepted (the key files grant its SID).
    type: str
    default: ContainerUser
  isolation:
    description: Only C(process) is accepted (docs/windows.md, "Isolation").
    type: str
    default: process
  memory:
    description: Memory limit.
    type: str
    default: 256m
  cpus:
    description: CPU limit.
    type: float
    default: 1.0
  extra_hosts:
    description: Host names the instances resolve to fixed addresses.
    type: dict
    default: {}
  restart_policy:
    description: The restart policy.
    type: str
    choices: ["no", on-failure, always, unless-stopped]
    default: unless-stopped
  log_max_size:
    description: Size of a log file before it is rotated.
    type: str
    default: 10m
  log_max_file:
    description: Log files kept.
    type: int
    default: 3
  stop_timeout:
    description: Seconds an instance has to stop.
    type: int
    default: 15
  health_timeout:
    description: Seconds a new container has to become healthy.
    type: int
    default: 120
  healthcheck:
    description:
      - Timings of the image's health check; a command (O(healthcheck.test)) only in shell form, C(docker.exe) cannot give
        an exec-form one.
    type: dict
    suboptions:
      test:
        description: C([CMD-SHELL, command]), or the image's own command.
        type: list
        elements: str
      interval:
        description: Seconds between probes.
        type: int
        default: 15
      timeout:
        description: Seconds a probe may take.
        type: int
        default: 10
      retries:
        description: Failed probes before unhealthy.
        type: int
        default: 3
      start_period:
        description: Seconds before failures count.
        type: int
        default: 30
seealso:
  - module: vantage.checkpoint.checkpoint_container
  - module: vantage.checkpoint.win_checkpoint_files
"""

EXAMPLES = r"""
- name: Run the pair
  vantage.checkpoint.win_checkpoint_container:
    checkpoint: plant
    image: registry.example.com/vantage/checkpoint@sha256:4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f
    control_plane_url: https://cp.example.com:8443
    ca_bundle: true
    instances:
      - name: a
        config_dir: C:\ProgramData\Vantage\checkpoints\plant\a
        state_dir: C:\ProgramData\Vantage\state\plant\a
      - name: b
        config_dir: C:\ProgramData\Vantage\checkpoints\plant\b
        state_dir: C:\ProgramData\Vantage\state\plant\b
"""

RETURN = r"""
checkpoint:
  description: The checkpoint.
  returned: always
  type: str
network:
  description: The checkpoint's network.
  returned: always
  type: str
bridge:
  description: The name of the network's HNS network (what the egress ACLs attach to).
  returned: always
  type: str
  sample: vtg-6f1c2a9b3d4
instances:
  description: As M(vantage.checkpoint.checkpoint_container) returns them.
  returned: always
  type: list
  elements: dict
reasons:
  description: Why the instances read back from the host are not what they must be.
  returned: when the read-back fails
  type: list
  elements: str
"""
