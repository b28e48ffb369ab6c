#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_container
short_description: Run a checkpoint's agent containers with hardened settings, one instance at a time
version_added: 0.1.0
description:
  - Runs the instances of one checkpoint as containers of the local Docker engine, from an image pinned by
    digest, on a dedicated bridge network, with settings that are always hardened - non-root user, read-only
    root file system (a small C(/tmp) tmpfs), all capabilities dropped, C(no-new-privileges), no published
    ports, memory, CPU and PID limits, bounded C(json-file) logs, an init process and a healthcheck.
  - Each instance's container is called C(vantage-<checkpoint>-<instance>) and labelled
    C(io.vantage.checkpoint), C(io.vantage.instance) and C(io.vantage.config-hash) (a fingerprint of its settings).
    The instance's identity key and the trusted keys (and the CA bundle and credentials file) are mounted read-only under
    C(/etc/vantage/), its state directory read-write at C(/var/lib/vantage), and the C(VANTAGE_*) variables of
    the agent point to them.
  - The module reads each existing container back (C(docker inspect)) and compares it with the desired settings.
    A container that matches is left alone (not restarted). A container that differs is replaced, B(one instance
    at a time) - the old container is renamed C(<name>-previous) and stopped, the new one is started and must be
    C(healthy) within O(health_timeout); only then is the old one removed and the next instance considered.
  - If a new container does not become healthy (or stops), it is removed, the previous container is renamed
    back and started again, and the module fails with the reason (health check output, exit code, last log
    lines) without touching any other instance. A new instance that fails this way is removed.
  - Instances that are down or unhealthy are replaced first, and a healthy instance is only stopped while
    another instance is healthy (the module waits up to O(health_timeout) for one), so a rolling update never
    takes the whole checkpoint down.
  - Containers labelled with this checkpoint whose instance is no longer listed are stopped and removed after
    the listed instances have converged. Containers of other checkpoints are never touched; a container that
    has one of this checkpoint's names without its labels makes the module fail.
  - A C(<name>-previous) container left behind by an interrupted run is recovered first - removed when the new
    container is healthy, otherwise renamed back.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode plans only (which instances would be created, replaced, started or removed, and whether the image
        would be pulled and the network created); it changes nothing.
      - When the image would be pulled, its settings are unknown, so every instance is reported as replaced.
  diff_mode:
    support: full
    details:
      - The diff shows, per instance, the compared settings before and after (image id, environment, mounts,
        limits, hardening, healthcheck). Values of environment variables whose names look sensitive
        (C(PASS), C(SECRET), C(TOKEN), C(CREDENTIAL), C(PRIVATE), C(AUTH)) and the user information of URLs are masked.
  platform:
    support: full
    platforms: posix
options:
  checkpoint:
    description:
      - Name of the checkpoint - lower-case letters, digits and C(-), at most 63 characters, not starting with C(-)
        (the rule every part of Vantage applies to names).
    type: str
    required: true
  state:
    description:
      - V(present) makes the listed instances run with the given settings and removes unlisted ones.
      - V(absent) stops and removes every container labelled with this checkpoint, and its network when the module
        created it for this checkpoint and no other container is attached.
    type: str
    choices: [present, absent]
    default: present
  instances:
    description:
      - The instances to run on this host. Required with O(state=present).
      - Containers are converged in a safe order (see the description); results come back in this order.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Instance name, unique within the checkpoint (the same rule as O(checkpoint)).
          - It must not end with C(-previous).
        type: str
        required: true
      identity_key:
        description:
          - Host path of the instance's Ed25519 identity key (see M(vantage.checkpoint.checkpoint_identity)),
            mounted read-only. The container user must be able to read it.
        type: path
        required: true
      state_dir:
        description:
          - Host directory of the instance's state (outbox, replay cache, status), mounted read-write at
            C(/var/lib/vantage). It survives container replacement. The container user must own it.
        type: path
        required: true
      env:
        description:
          - More environment variables for this instance only; they win over O(env).
        type: dict
  image:
    description:
      - The agent image, pinned - either C(repository@sha256:<64 hex digits>) (a registry digest; pulled when the engine
        does not have it) or C(sha256:<64 hex digits>) (a local image id, for images loaded with C(docker load)).
      - A tag is refused (it can point to another image at any time); a tag given together with a digest is ignored.
      - The digest (or the id) is passed to the agent as C(VANTAGE_IMAGE_DIGEST).
      - The image must have a C(HEALTHCHECK), unless O(healthcheck) is set.
      - Required with O(state=present).
    type: str
  control_plane_url:
    description:
      - Control plane base URL given to the agent (C(VANTAGE_CONTROL_PLANE_URL)). Required with O(state=present).
      - An C(https://) URL without credentials, query or fragment; C(http://) only to a loopback address (C(127.0.0.0/8),
        C(::1), C(localhost)). Any other URL is refused before any container changes.
    type: str
  trusted_keys:
    description:
      - Host path of the trusted control-plane signing keys (JSON, the shape of C(GET /api/v1/signing-keys)),
        mounted read-only. Required with O(state=present).
    type: path
  ca_bundle:
    description:
      - Host path of extra CA certificates (PEM) for the control plane connection and checks, mounted read-only.
    type: path
  credentials_file:
    description:
      - Host path of the checkpoint's credentials file for checks that log in (JSON - an object whose key
        C(credentials) maps each credential name to its C(username), C(password), C(private_key), C(passphrase)),
        mounted read-only at C(/etc/vantage/credentials.json) in every instance; C(VANTAGE_CREDENTIALS_FILE)
        points to it. The container user must be able to read it; keep it mode C(0600), owned by that user.
      - The agent reads the file when it starts, so the instances are replaced (one at a time) when this option is
        added, removed or changed, and also when the file's B(content) changes - the module records a fingerprint
        of the content in the variable C(CHECKPOINT_CREDENTIALS_REVISION), an HMAC-SHA256 keyed with the instance's
        identity key, which tells nothing about the secrets. The content is compared only with a C(unix://)
        O(docker_host) (the file must be on the managed host).
      - The module never returns or shows the file's content.
    type: path
  env:
    description:
      - More environment variables for every instance, for example the data protection switches
        (C(VANTAGE_DP_STRIP_CONTENT), C(VANTAGE_DP_STRIP_HEADERS), C(VANTAGE_DP_STRIP_IPS)) or C(HTTPS_PROXY).
        Booleans become V(true)/V(false).
      - The variables the module sets itself (C(VANTAGE_CONTROL_PLANE_URL), C(VANTAGE_CHECKPOINT), C(VANTAGE_INSTANCE),
        C(VANTAGE_IDENTITY_KEY), C(VANTAGE_TRUSTED_KEYS), C(VANTAGE_CA_BUNDLE), C(VANTAGE_CREDENTIALS_FILE),
        C(CHECKPOINT_CREDENTIALS_REVISION), C(VANTAGE_STATE_DIR), C(VANTAGE_IMAGE_DIGEST), C(VANTAGE_CONFIG)) are refused.
      - Do not put secrets here - they would be visible in C(docker inspect). The agent's secrets, its identity
        key and the check credentials (O(credentials_file)), are mounted files.
      - C(VANTAGE_HOST_NAME), the host name the agent reports in its host facts, is set by the module to the Docker
        engine's name (C(docker info), C(Name) - the name of the host the engine runs on) so that the control plane
        shows where each instance runs, not the container's id; set it here (or in an instance's C(env)) to report
        another name, for example the inventory name. It must be 1 to 253 characters C(A-Z), C(a-z), C(0-9), C(.),
        C(_) and C(-), starting and ending with a letter or digit.
    type: dict
  network:
    description:
      - The checkpoint's dedicated Docker network; default C(vantage-<checkpoint>).
      - When missing it is created as a bridge network with inter-container traffic disabled and the bridge
        interface named C(vtg-<11 hex digits of SHA-256 of the network name>) (see RV(bridge); the egress firewall
        matches on it). An existing network is used as it is.
      - The built-in networks (V(bridge), V(host), V(none)) are refused.
    type: str
  user:
    description:
      - User (and group) the agent runs as, C(uid:gid). Root is refused.
    type: str
    default: '10001:10001'
  memory:
    description:
      - Memory limit (Docker notation - V(256m), V(1g)); swap is not allowed beyond it.
    type: str
    default: 256m
  cpus:
    description:
      - CPU limit, in CPUs.
    type: float
    default: 1.0
  pids_limit:
    description:
      - Most processes (and threads) the container may have; at least 16.
    type: int
    default: 256
  extra_hosts:
    description:
      - Host names the instances resolve to fixed addresses (written to their C(/etc/hosts)); keys are names, values IP addresses.
      - For sites whose resolvers do not know the control plane's name, or to pin it. Each value must be an IPv4 or IPv6 address.
    type: dict
    default: {}
  restart_policy:
    description:
      - Docker restart policy.
    type: str
    choices: ['no', on-failure, always, unless-stopped]
    default: unless-stopped
  log_max_size:
    description:
      - Size of one C(json-file) log file before it is rotated (V(10m), V(512k)).
    type: str
    default: 10m
  log_max_file:
    description:
      - Number of C(json-file) log files kept.
    type: int
    default: 3
  stop_timeout:
    description:
      - Seconds a container gets to stop after C(SIGTERM) before it is killed (the agent finishes running checks
        and sends their results).
    type: int
    default: 15
  health_timeout:
    description:
      - Seconds a new (or started) container has to become C(healthy); also how long the module waits for
        another instance to be healthy before it stops a healthy one.
      - The agent's healthcheck is healthy only once it is connected to the control plane, so allow for its first
        health interval plus a connection.
    type: int
    default: 120
  healthcheck:
    description:
      - Replaces the image's C(HEALTHCHECK). When not set, the image's own is used.
      - Timings not given take the defaults below, not the image's.
    type: dict
    suboptions:
      test:
        description:
          - The command to run, in exec form (for example V([vantage, agent, healthcheck])).
          - When not set, the command of the image's C(HEALTHCHECK) is kept (with this option's timings).
        type: list
        elements: str
      interval:
        description: Seconds between checks.
        type: int
        default: 5
      timeout:
        description: Seconds one check may take.
        type: int
        default: 10
      retries:
        description: Consecutive failures that make the container unhealthy.
        type: int
        default: 3
      start_period:
        description: Seconds after start during which failures do not count.
        type: int
        default: 30
  docker_host:
    description:
      - The engine's API socket. When not set, the E(DOCKER_HOST) environment variable, else
        V(unix:///var/run/docker.sock).
      - Host paths (O(trusted_keys), O(instances[].identity_key), ...) are checked on the managed host only when this
        is a C(unix://) socket. TLS connections are not supported.
    type: str
  api_timeout:
    description:
      - Seconds one engine API call may take.
    type: int
    default: 60
requirements:
  - docker (Python SDK) >= 5.0.3, on the managed host (Debian 12 C(python3-docker) is fine)
notes:
  - Create the identity keys and state directories first (owned by the container user), and enroll the instances
    at the control plane, so that the new containers can become healthy.
  - Container names are C(vantage-<checkpoint>-<instance>); two checkpoints whose names could produce the same
    container name (C(a-b)/C(c) and C(a)/C(b-c)) cannot share a host - the module refuses to touch the other's
    container.
seealso:
  - module: vantage.checkpoint.checkpoint_identity
  - module: vantage.checkpoint.checkpoint_enrollment
"""

EXAMPLES = r"""
- name: Run the pair of checkpoint office-berlin on this host
  vantage.checkpoint.checkpoint_container:
    checkpoint: office-berlin
    image: registry.example.com/vantage/checkpoint@sha256:3b5a9c7e41d0f6e2b8a4c1d9e7f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3
    control_plane_url: https://cp.example.com
    trusted_keys: /etc/vantage/trusted_keys.json
    env:
      VANTAGE_DP_STRIP_CONTENT: true
      VANTAGE_DP_STRIP_IPS: true
    instances:
      - name: a
        identity_key: /etc/vantage/instances/a/identity.pem
        state_dir: /var/lib/vantage/instances/a
      - name: b
        identity_key: /etc/vantage/instances/b/identity.pem
        state_dir: /var/lib/vantage/instances/b
  register: deployment

- name: Show the bridge the egress firewall must filter
  ansible.builtin.debug:
    var: deployment.bridge

- name: Run a locally loaded image (docker load), with a quicker healthcheck
  vantage.checkpoint.checkpoint_container:
    checkpoint: lab
    image: sha256:0f3a9c7e41d0f6e2b8a4c1d9e7f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3
    control_plane_url: https://cp.lab.example.com
    trusted_keys: /etc/vantage/trusted_keys.json
    ca_bundle: /etc/vantage/ca.pem
    credentials_file: /etc/vantage/checkpoints/lab/credentials.json
    health_timeout: 60
    healthcheck:
      test: [vantage, agent, healthcheck]
      interval: 5
      start_period: 10
    instances:
      - name: a
        identity_key: /etc/vantage/instances/a/identity.pem
        state_dir: /var/lib/vantage/instances/a

- name: Remove every container of checkpoint lab from this host
  vantage.checkpoint.checkpoint_container:
    checkpoint: lab
    state: absent
"""

RETURN = r"""
checkpoint:
  description: The checkpoint name.
  returned: always
  type: str
  sample: office-berlin
network:
  description: The checkpoint's Docker network.
  returned: always
  type: str
  sample: vantage-office-berlin
bridge:
  description:
    - Name of the network's bridge interface on the host, for the egress firewall.
    - V(null) with O(state=absent) when there is no network.
  returned: always
  type: str
  sample: vtg-6f1c2a9b3d4
network_created:
  description: Whether the network was (or, in check mode, would be) created.
  returned: always
  type: bool
network_removed:
  description: Whether the network was (or would be) removed (O(state=absent)).
  returned: always
  type: bool
image:
  description: The resolved image (V(null) with O(state=absent)).
  returned: always
  type: dict
  contains:
    reference:
      description: What the engine resolved, the repository digest or the image id.
      type: str
      sample: registry.example.com/vantage/checkpoint@sha256:3b5a9c7e41d0f6e2b8a4c1d9e7f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3
    id:
      description: The image id (V(null) in check mode when the image would be pulled).
      type: str
      sample: sha256:0f3a9c7e41d0f6e2b8a4c1d9e7f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3
    digest:
      description: The digest passed to the agent as C(VANTAGE_IMAGE_DIGEST).
      type: str
      sample: sha256:3b5a9c7e41d0f6e2b8a4c1d9e7f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3
    pulled:
      description: Whether the image was (or would be) pulled.
      type: bool
instances:
  description:
    - One entry per listed instance (in the order of O(instances)), then one per removed container.
    - Also returned when the module fails, for the instances handled until then.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The instance name.
      type: str
      sample: a
    container:
      description: The container name.
      type: str
      sample: vantage-office-berlin-a
    container_id:
      description: Short id of the container now running the instance (V(null) when none, or in check mode for a new one).
      type: str
      sample: 4f2a6c1d9e0b
    previous_container_id:
      description: Short id of the container that was replaced (only with RV(instances[].action=replaced)).
      type: str
      returned: when replaced
      sample: 9a8b7c6d5e4f
    action:
      description:
        - V(created), V(replaced), V(started) (a matching but stopped container), V(unchanged) or V(removed).
        - On failure, V(rolled_back) (the previous container runs again) or V(failed).
      type: str
      sample: replaced
    changes:
      description: The settings that differed (empty for created, unchanged and removed instances).
      type: list
      elements: str
      sample: [env, image]
    image:
      description: Id of the image the instance runs (or would run).
      type: str
      sample: sha256:0f3a9c7e41d0f6e2b8a4c1d9e7f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3
    health:
      description:
        - The container's condition after the run - V(healthy), V(unhealthy), V(starting), V(none) (no healthcheck),
          V(restarting), or the engine's status when it does not run (V(exited), ...).
        - V(null) for removed containers and in check mode for planned changes.
      type: str
      sample: healthy
    reason:
      description: Why the new container was refused (with RV(instances[].action=rolled_back) or V(failed)).
      type: str
      returned: on failure
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    REQUIRED_IF_PRESENT,
    CheckpointSpec,
    SpecError,
    argument_spec,
    engine_host_name,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_deploy import (
    CheckpointDeployment,
    DeployError,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import (
    DOCKER_IMPORT_ERROR,
    DockerEngine,
    EngineError,
    docker_sdk_problem,
)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("state", "present", REQUIRED_IF_PRESENT)],
    )
    try:
        spec = CheckpointSpec(module.params)
    except SpecError as exc:
        module.fail_json(msg=str(exc))
    problem = docker_sdk_problem()
    if problem:
        module.fail_json(msg="%s: %s" % (missing_required_lib("docker (Python SDK) >= 5.0.3"), problem),
                         exception=DOCKER_IMPORT_ERROR)
    try:
        engine = DockerEngine(spec.docker_host, spec.api_timeout)
        spec.host_name = engine_host_name(engine.host_name())
        result = CheckpointDeployment(spec, engine, module.check_mode).run()
    except EngineError as exc:
        module.fail_json(msg=str(exc))
    except DeployError as exc:
        result = exc.result
        result["msg"] = str(exc)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    diff = result.pop("diff", None)
    if "msg" in result:
        module.fail_json(**result)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
