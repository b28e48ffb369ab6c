#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_health
short_description: Verify that a checkpoint and its instances are healthy, at the control plane and on the host
version_added: 0.1.0
description:
  - Asks the control plane for the health of a checkpoint (C(GET /api/v1/checkpoints/{checkpoint}/health)) and for
    its open alerts (C(GET /api/v1/alerts?open=true)), and judges every expected instance - connected, healthy,
    heartbeat age, version, image digest.
  - With O(local_engine=true), also inspects this host's container engine for the instances that run here (O(local_instances)),
    as M(vantage.checkpoint.checkpoint_container) creates them - the container exists with the checkpoint's labels,
    runs, and its Docker health check says C(healthy); the image it runs is the one the control plane sees;
    its identity key is present with mode C(0600) - and compares this host's clock with the control plane's HTTP C(Date) header
    (signed instructions live five minutes).
  - With O(wait=true), asks again every O(poll_interval) seconds until the checkpoint is healthy or O(wait_timeout) has passed.
  - The module changes nothing. It fails, listing every reason and not only the first, when the checkpoint is not
    healthy (unless O(fail_on_unhealthy=false)); it always fails, with a message of its own, when the control plane cannot be
    reached, refuses the API token or does not know the checkpoint.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
  - vantage.checkpoint.attributes.actiongroup_checkpoint
  - vantage.checkpoint.control_plane
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  wait_timeout:
    description:
      - The most seconds the module spends in all; every HTTP request to the control plane is also limited to the
        time that is left (and to O(timeout)).
      - With O(wait=true), how long to wait for the checkpoint to become healthy.
      - O(timeout) keeps the meaning it has in every module of the C(group/vantage.checkpoint.checkpoint) action group,
        seconds per HTTP request.
    type: int
    default: 120
  checkpoint:
    description:
      - Name of the checkpoint (1-63 characters V(a-z), V(0-9) and V(-), starting with a letter or digit).
    type: str
    required: true
  instances:
    description:
      - The instances the checkpoint is expected to have.
      - An expected instance that the control plane does not know is a reason.
      - When not set, every instance the control plane knows for the checkpoint.
    type: list
    elements: str
  min_healthy:
    description:
      - How many of the expected instances must be healthy for the checkpoint to count as healthy.
      - When not set, all of them. V(1) accepts a checkpoint that runs on one instance of its pair (it is reported as
        RV(report.degraded)).
    type: int
  image_digest:
    description:
      - When set, every expected instance must report this image digest to the control plane (and, with O(local_engine=true),
        the containers on this host must run this image).
      - V(sha256:<64 hex digits>), a registry digest or a local image id as M(vantage.checkpoint.checkpoint_container) pins it.
    type: str
  local_engine:
    description:
      - Whether to inspect this host's container engine and files for the instances in O(local_instances), and to compare this
        host's clock with the control plane's.
    type: bool
    default: false
  local_instances:
    description:
      - Which of the expected instances run on this host (with O(local_engine=true)).
      - When not set, all expected instances.
    type: list
    elements: str
  max_clock_offset:
    description:
      - With O(local_engine=true), seconds this host's clock may differ from the control plane's before it is a reason.
      - The offset is measured from the control plane's HTTP C(Date) header, to about one second.
    type: float
    default: 30
  wait:
    description:
      - Whether to ask again until the checkpoint is healthy or O(wait_timeout) seconds have passed.
      - While waiting, a control plane that cannot be reached is asked again too (it may be restarting).
    type: bool
    default: false
  poll_interval:
    description:
      - Seconds between two checks with O(wait=true).
    type: float
    default: 3
  fail_on_unhealthy:
    description:
      - Whether the module fails when the checkpoint is not healthy.
      - With V(false) it returns the report with RV(healthy=false) instead, so that a play can collect the reports of every
        checkpoint first (the P(vantage.checkpoint.health#role) role does). Errors - an unreachable control plane, a refused
        token, an unknown checkpoint - still fail.
    type: bool
    default: true
  docker_host:
    description:
      - The engine's API socket, with O(local_engine=true). When not set, the E(DOCKER_HOST) environment variable, else
        V(unix:///var/run/docker.sock).
    type: str
notes:
  - The API token needs the C(read) scope (C(enroll) and C(admin) include it).
  - The checkpoint counts as healthy when the control plane reports it V(active), at least O(min_healthy) expected instances
    are healthy, no C(checkpoint_unavailable) alert is open for it and (with O(local_engine=true)) the clock offset is
    within O(max_clock_offset). An instance counts as healthy when the control plane says it is connected and healthy
    and nothing else gives a reason against it.
  - The identity key checked is the host file that the instance's container mounts as its identity key.
requirements:
  - docker (Python SDK) >= 5.0.3, on the managed host, with O(local_engine=true)
seealso:
  - module: vantage.checkpoint.checkpoint_container
  - module: vantage.checkpoint.checkpoint_enrollment
"""

EXAMPLES = r"""
- name: Wait until both instances of the pair are connected and healthy
  vantage.checkpoint.checkpoint_health:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_read_token }}"
    ca_path: /etc/vantage/checkpoints/office-berlin/ca.pem
    checkpoint: office-berlin
    instances: [a, b]
    wait: true
    wait_timeout: 120
  register: health

- name: On a checkpoint host, also check the containers, the identity keys and the clock
  vantage.checkpoint.checkpoint_health:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_read_token }}"
    checkpoint: office-berlin
    instances: [a, b]
    local_engine: true
    local_instances: [a]
    image_digest: sha256:4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b

- name: Accept a checkpoint that runs on one instance, and keep going when it is unhealthy
  vantage.checkpoint.checkpoint_health:
    control_plane_url: https://cp.example.com:8443
    api_token: "{{ vantage_read_token }}"
    checkpoint: office-berlin
    min_healthy: 1
    fail_on_unhealthy: false
  register: health

- name: Show why
  ansible.builtin.debug:
    msg: "{{ health.reasons }}"
  when: not health.healthy
"""

RETURN = r"""
healthy:
  description: Whether the checkpoint is healthy (see the notes).
  returned: always
  type: bool
  sample: false
state:
  description:
    - The checkpoint's state at the control plane - V(active), V(maintenance), V(unavailable) or V(disabled) - or
      V(unknown) when the control plane could not be asked.
  returned: always
  type: str
  sample: active
reasons:
  description: Every reason why the checkpoint or one of its expected instances is not healthy; empty when all is well.
  returned: always
  type: list
  elements: str
  sample:
    - checkpoint office-berlin has 1 healthy instance of 2 expected, at least 2 required
    - instance b is not connected (last heartbeat 41 s ago)
attempts:
  description: How many times the control plane was asked (more than one with O(wait=true)).
  returned: always
  type: int
  sample: 1
report:
  description: The structured report (the role P(vantage.checkpoint.health#role) writes these to its JSON report).
  returned: always
  type: dict
  contains:
    checkpoint:
      description: Name of the checkpoint.
      type: str
      sample: office-berlin
    control_plane_url:
      description: The control plane that was asked.
      type: str
      sample: https://cp.example.com:8443
    state:
      description: Same as RV(state).
      type: str
      sample: active
    healthy:
      description: Same as RV(healthy).
      type: bool
      sample: false
    degraded:
      description: Whether the checkpoint is active but not every expected instance is healthy (a lost redundancy).
      type: bool
      sample: true
    healthy_instances:
      description: How many expected instances are healthy.
      type: int
      sample: 1
    min_healthy:
      description: How many had to be (V(null) when the control plane could not be asked).
      type: int
      sample: 2
    reasons:
      description: Same as RV(reasons).
      type: list
      elements: str
    alerts:
      description: The open alerts of the checkpoint (C(checkpoint_unavailable)), each with C(kind), C(opened_at) and C(message).
      type: list
      elements: dict
    checked_at:
      description: When the last check was made (UTC, ISO 8601).
      type: str
      sample: "2025-11-22T07:41:02Z"
    clock_offset_s:
      description:
        - This host's clock minus the control plane's, in seconds (from the HTTP C(Date) header, to about a second);
          V(null) when unknown.
      type: float
      sample: 0.4
    instances:
      description: One entry per expected instance.
      type: list
      elements: dict
      contains:
        name:
          description: Name of the instance.
          type: str
        connected:
          description: Whether the instance has a session with the control plane.
          type: bool
        healthy:
          description: Whether the instance is healthy (the control plane's verdict and every local check).
          type: bool
        last_heartbeat_age_s:
          description: Seconds since the last heartbeat the control plane received; V(null) when it never got one.
          type: float
        version:
          description: Agent version the instance reported.
          type: str
        image_digest:
          description: Image digest the instance reported.
          type: str
        reasons:
          description: Why the instance is not healthy.
          type: list
          elements: str
        local:
          description:
            - What this host shows for the instance (with O(local_engine=true) and the instance in O(local_instances)); V(null) otherwise.
            - C(container) (name), C(running) (bool), C(health) (the Docker health status, or V(missing)), C(image_id),
              C(image_digests) (the image's id and registry digests), C(identity_key) (host path) and C(identity_key_mode) (for example V(0600)).
          type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import ControlPlaneClient
from ansible_collections.vantage.checkpoint.plugins.module_utils._health import HealthCheck, argument_spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    HealthCheck(module, ControlPlaneClient.from_module(module)).run()


if __name__ == "__main__":
    main()
