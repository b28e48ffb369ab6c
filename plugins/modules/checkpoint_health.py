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

import time

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import (
    CONTROL_PLANE_ARGUMENT_SPEC,
    ControlPlaneClient,
    ControlPlaneError,
    check_name,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._health import (
    NotKnownError,
    build_report,
    inspect_local,
    read_control_plane,
    server_clock,
    unknown_report,
)

DIGEST_PREFIX = "sha256:"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
ENGINE_TIMEOUT = 30


class HealthCheck:
    def __init__(self, module, client, clock=time.monotonic, sleep=time.sleep):
        self.module = module
        self.client = client
        self.clock = clock
        self.sleep = sleep
        params = module.params
        try:
            self.checkpoint = check_name(params["checkpoint"], "checkpoint")
            self.expected = None
            if params["instances"] is not None:
                self.expected = self.unique([check_name(n, "instances entry") for n in params["instances"]], "instances")
            self.local_instances = None
            if params["local_instances"] is not None:
                self.local_instances = self.unique(
                    [check_name(n, "local_instances entry") for n in params["local_instances"]], "local_instances"
                )
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        if self.expected is not None and self.local_instances is not None:
            extra = [n for n in self.local_instances if n not in self.expected]
            if extra:
                module.fail_json(msg="local_instances lists %s, which instances does not list" % ", ".join(extra))
        self.min_healthy = params["min_healthy"]
        if self.min_healthy is not None and self.min_healthy < 0:
            module.fail_json(msg="min_healthy must be 0 or more, got %s" % self.min_healthy)
        if self.expected is not None and self.min_healthy is not None and self.min_healthy > len(self.expected):
            module.fail_json(
                msg="min_healthy is %s but instances lists only %d instance(s)" % (self.min_healthy, len(self.expected))
            )
        self.image_digest = params["image_digest"]
        if self.image_digest is not None:
            self.image_digest = self.image_digest.strip()
            if "@" in self.image_digest:  # repository@sha256:... as the checkpoint role pins it
                self.image_digest = self.image_digest.rsplit("@", 1)[1]
            hexpart = self.image_digest[len(DIGEST_PREFIX):]
            if not self.image_digest.startswith(DIGEST_PREFIX) or len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
                module.fail_json(msg="image_digest must be sha256:<64 lower-case hex digits>, got %r" % params["image_digest"])
        self.timeout = params["wait_timeout"]
        self.request_timeout = params["timeout"]
        self.poll_interval = params["poll_interval"]
        if self.poll_interval <= 0:
            module.fail_json(msg="poll_interval must be a positive number of seconds")
        if params["max_clock_offset"] < 0:
            module.fail_json(msg="max_clock_offset must be 0 or more seconds")
        self.engine = None
        self.health_state = None
        if params["local_engine"]:
            self.engine, self.health_state = self.connect_engine(params["docker_host"] or DEFAULT_DOCKER_HOST)

    def unique(self, names, option):
        seen = []
        for name in names:
            if name in seen:
                self.module.fail_json(msg="%s lists %s twice" % (option, name))
            seen.append(name)
        return seen

    def connect_engine(self, docker_host):
        # imported here: without local_engine the module needs no Docker SDK
        from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import (
            Engine,
            EngineError,
            ensure_docker,
            health_state,
        )

        ensure_docker(self.module)
        try:
            return Engine(docker_host, ENGINE_TIMEOUT), health_state
        except EngineError as exc:
            self.module.fail_json(msg=str(exc))

    def check_once(self, deadline):
        """One report; raises ControlPlaneError when the control plane cannot be asked."""
        self.client.timeout = max(1, min(self.request_timeout, int(round(deadline - self.clock()))))
        offset, dummy = server_clock(self.client)
        health, alerts = read_control_plane(self.client, self.checkpoint)
        expected = self.expected
        if expected is None:
            expected = sorted(i["name"] for i in health["instances"] if isinstance(i, dict) and isinstance(i.get("name"), str))
        local = {}
        if self.engine is not None:
            from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import EngineError

            names = self.local_instances if self.local_instances is not None else expected
            for name in names:
                try:
                    local[name] = inspect_local(self.engine, self.checkpoint, name, self.health_state)
                except EngineError as exc:
                    self.module.fail_json(msg="cannot inspect instance %s on this host: %s" % (name, exc))
        return build_report(
            self.checkpoint,
            self.client.base_url,
            health,
            alerts,
            expected=expected,
            min_healthy=self.min_healthy,
            image_digest=self.image_digest,
            local=local,
            clock_offset=offset,
            max_clock_offset=self.module.params["max_clock_offset"] if self.engine is not None else None,
        )

    def run(self):
        params = self.module.params
        deadline = self.clock() + self.timeout
        attempts = 0
        while True:
            attempts += 1
            error = None
            report = None
            try:
                report = self.check_once(deadline)
            except NotKnownError as exc:
                self.fail_error(exc, attempts)
            except ControlPlaneError as exc:
                # 401/403 and other answers will not change by waiting; no answer at all might
                if exc.status is not None or not params["wait"]:
                    self.fail_error(exc, attempts)
                error = exc
            if report is not None and (report["healthy"] or not params["wait"]):
                break
            if self.clock() + self.poll_interval >= deadline:
                if report is None:
                    self.fail_error(error, attempts)
                break
            self.sleep(self.poll_interval)

        result = dict(
            changed=False,
            healthy=report["healthy"],
            state=report["state"],
            reasons=report["reasons"],
            report=report,
            attempts=attempts,
        )
        if not report["healthy"] and params["fail_on_unhealthy"]:
            waited = " after waiting %s s" % self.timeout if params["wait"] else ""
            self.module.fail_json(
                msg="checkpoint %s is not healthy (state %s)%s: %s"
                % (self.checkpoint, report["state"], waited, "; ".join(report["reasons"])),
                **result
            )
        self.module.exit_json(**result)

    def fail_error(self, exc, attempts):
        message = self.client.scrub(exc.msg)
        report = unknown_report(self.checkpoint, self.client.base_url, message)
        self.module.fail_json(
            msg=message,
            status=exc.status,
            changed=False,
            healthy=False,
            state=report["state"],
            reasons=report["reasons"],
            report=report,
            attempts=attempts,
        )


def main():
    argument_spec = dict(CONTROL_PLANE_ARGUMENT_SPEC)
    argument_spec.update(
        wait_timeout=dict(type="int", default=120),
        checkpoint=dict(type="str", required=True),
        instances=dict(type="list", elements="str"),
        min_healthy=dict(type="int"),
        image_digest=dict(type="str"),
        local_engine=dict(type="bool", default=False),
        local_instances=dict(type="list", elements="str"),
        max_clock_offset=dict(type="float", default=30),
        wait=dict(type="bool", default=False),
        poll_interval=dict(type="float", default=3),
        fail_on_unhealthy=dict(type="bool", default=True),
        docker_host=dict(type="str", fallback=(env_fallback, ["DOCKER_HOST"])),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = ControlPlaneClient.from_module(module)
    HealthCheck(module, client).run()


if __name__ == "__main__":
    main()
