# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The checkpoint's instance containers on a Windows host: the option model and the host's proof.

:class:`WindowsCheckpointSpec` is ``_container.CheckpointSpec`` - the same options, validation,
environment, fingerprint label and desired settings - with what differs on Windows (docs/windows.md,
"What Windows applies and what it does not"):

- Windows bind mounts are directories only. Each instance mounts exactly two: its own configuration
  directory ``<config>\\<checkpoint>\\<instance>`` read-only at ``C:\\vantage\\config`` (its
  identity key, the pinned trusted keys, the CA bundle and the credentials, each a file with its own
  access list, see ``_windows_checkpoint``) and its state directory at ``C:\\vantage\\state``.
  Nothing else - in particular never the engine's named pipe.
- The agent runs as ``ContainerUser`` (the SID the key files grant), process-isolated.
- Linux-only hardening (read-only root, tmpfs, capabilities, security options, init, PID and swap
  limits) is not asked for: ``_windows_docker`` refuses it, and the engine's limits mask the two
  limits Windows lacks, so they are neither compared nor fingerprinted.

The manager (``_container_deploy.CheckpointDeployment``) plans and performs the rolling deployment
with this spec exactly as on Linux. :func:`instance_reasons` then reads each instance back as the
host reports it and lists whatever contradicts the above: the deployment fails closed on any.
"""

from __future__ import annotations

import ntpath

from ._container import (
    DEFAULTS,
    WINDOWS_CONFIG_DIR,
    WINDOWS_STATE_DIR,
    CheckpointSpec,
    SpecError,
    argument_spec,
    observed_mounts,
)
from ._contract import CONFIG_FILES, IDENTITY_KEY_FILE
from ._windows_docker import BUILTIN_NETWORKS_WINDOWS, ISOLATION, NETWORK_DRIVER, PIPE_MARKERS
from ._windows_host import PIPE_ADDRESS, is_windows_path

CONTAINER_USER = "ContainerUser"
#: where an instance's two host directories appear inside its container
CONTAINER_CONFIG_DIR = WINDOWS_CONFIG_DIR
CONTAINER_STATE_DIR = WINDOWS_STATE_DIR
#: the files of an instance's configuration directory, by the name the contract gives them
TRUSTED_KEYS_FILE = CONFIG_FILES["trusted_keys"]
CA_FILE = CONFIG_FILES["ca"]
CREDENTIALS_FILE = CONFIG_FILES["credentials"]

#: the options of ``win_checkpoint_container`` that differ from ``checkpoint_container``'s
INSTANCE_OPTIONS = dict(
    name=dict(type="str", required=True),
    config_dir=dict(type="str", required=True),
    state_dir=dict(type="str", required=True),
    env=dict(type="dict"),
)


def container_path(name):
    """The path of a file of the instance's configuration directory inside its container."""
    return ntpath.join(CONTAINER_CONFIG_DIR, name)


class WindowsCheckpointSpec(CheckpointSpec):
    """``CheckpointSpec`` for a Windows host (see the module docstring).

    ``params`` are ``checkpoint_container``'s options, except: ``instances`` entries give
    ``config_dir`` (the instance's configuration directory) instead of ``identity_key``;
    ``ca_bundle`` and ``credentials`` are booleans (the files are in each configuration directory);
    ``credentials_revisions`` maps instances to the fingerprint ``win_checkpoint_files`` computed on
    the host; ``isolation`` must be ``process``; ``user`` must be ``ContainerUser``.
    """

    def __init__(self, params):
        params = dict(params)
        params.setdefault("user", CONTAINER_USER)
        for key, option in argument_spec().items():  # the other defaults checkpoint_container has
            if params.get(key) is None and option.get("default") is not None:
                params[key] = option["default"]
        problems = []
        user = params.get("user") or CONTAINER_USER
        if user != CONTAINER_USER:
            problems.append("option user must be %s on Windows (the key files grant that SID), got %r"
                            % (CONTAINER_USER, user))
        isolation = str(params.get("isolation") or ISOLATION).lower()
        if isolation != ISOLATION:
            problems.append("option isolation must be process: Hyper-V isolation reads bind mounts as LocalSystem, "
                            "so the key files' access lists would not limit the agent (docs/windows.md, 'Isolation'); "
                            "got %r" % params.get("isolation"))
        if params.get("network") in BUILTIN_NETWORKS_WINDOWS:
            problems.append("option network must name a dedicated network of the checkpoint, not %r" % params["network"])
        instances = []
        for item in params.get("instances") or []:
            for key in ("config_dir", "state_dir"):
                if not is_windows_path(item.get(key)):
                    problems.append("option instances[%s].%s must be an absolute Windows path, got %r"
                                    % (item.get("name"), key, item.get(key)))
            instances.append(dict(name=item.get("name"), identity_key=ntpath.join(str(item.get("config_dir")), IDENTITY_KEY_FILE),
                                  state_dir=item.get("state_dir"), env=item.get("env")))
        if problems:
            raise SpecError("; ".join(problems))
        self.config_dirs = dict((item.get("name"), item.get("config_dir")) for item in params.get("instances") or [])
        params.update(
            instances=instances or None,
            trusted_keys=TRUSTED_KEYS_FILE,
            ca_bundle=CA_FILE if params.get("ca_bundle") else None,
            credentials_file=CREDENTIALS_FILE if params.get("credentials") else None,
            user=CONTAINER_USER,
            pids_limit=DEFAULTS["pids_limit"],  # not applied on Windows: masked by the engine's limits
            docker_host=PIPE_ADDRESS,  # the files are on the Windows host, never read here
        )
        super(WindowsCheckpointSpec, self).__init__(params)
        self.credentials_revisions.update(
            (name, str(value)) for name, value in (params.get("credentials_revisions") or {}).items() if value)

    def environment(self, instance):
        env = super(WindowsCheckpointSpec, self).environment(instance)
        env.update(
            VANTAGE_IDENTITY_KEY=container_path(IDENTITY_KEY_FILE),
            VANTAGE_TRUSTED_KEYS=container_path(TRUSTED_KEYS_FILE),
            VANTAGE_STATE_DIR=CONTAINER_STATE_DIR,
        )
        if self.ca_bundle:
            env["VANTAGE_CA_BUNDLE"] = container_path(CA_FILE)
        if self.credentials_file:
            env["VANTAGE_CREDENTIALS_FILE"] = container_path(CREDENTIALS_FILE)
        return env

    def mounts(self, instance):
        return [(self.config_dirs[instance["name"]], CONTAINER_CONFIG_DIR, True),
                (instance["state_dir"], CONTAINER_STATE_DIR, False)]

    def desired_settings(self, instance, image_id, image_config):
        settings = super(WindowsCheckpointSpec, self).desired_settings(instance, image_id, image_config)
        settings.update(read_only=False, tmpfs={}, cap_drop=[], cap_add=[], security_opt=[], init=False,
                        isolation=ISOLATION)
        return settings


def _same_path(one, other):
    return ntpath.normcase(ntpath.normpath(str(one or ""))) == ntpath.normcase(ntpath.normpath(str(other or "")))


def container_reasons(name, container):
    """Why a container the host reports for instance ``name`` is not what a Windows instance must be,
    whatever its options: process isolation, ContainerUser, not privileged, no named pipe mounted."""
    host = container.get("HostConfig") or {}
    config = container.get("Config") or {}
    reasons = []
    if str(host.get("Isolation") or "").lower() != ISOLATION:
        reasons.append("instance %s runs with isolation %r, not process" % (name, host.get("Isolation")))
    if config.get("User") != CONTAINER_USER:
        reasons.append("instance %s runs as %r, not %s" % (name, config.get("User"), CONTAINER_USER))
    if host.get("Privileged"):
        reasons.append("instance %s is privileged" % name)
    for source, target, _read_only in _mounts(container):
        if any(marker in str(source).lower() or marker in str(target).lower() for marker in PIPE_MARKERS):
            reasons.append("instance %s mounts the named pipe %s: the engine must never be reachable from an instance"
                           % (name, source))
    return reasons


def _mounts(container):
    return observed_mounts(container) + [(m.get("Source"), m.get("Destination"), not m.get("RW", True))
                                         for m in container.get("Mounts") or [] if m.get("Type") != "volume"]


def instance_reasons(spec, instance, container):
    """Why the container the host reports for ``instance`` is not what a Windows instance must be.

    ``container`` is ``docker container inspect`` (None: missing). Checked as the engine reports it,
    after the deployment: :func:`container_reasons`, the checkpoint's own ``nat`` network, and exactly
    the instance's two directory mounts.
    """
    name = instance["name"]
    if container is None:
        return ["instance %s: its container does not exist after the deployment" % name]
    reasons = container_reasons(name, container)
    network = (container.get("HostConfig") or {}).get("NetworkMode")
    if network != spec.network:
        reasons.append("instance %s is on network %r, not the checkpoint's %s network %s"
                       % (name, network, NETWORK_DRIVER, spec.network))
    wanted = spec.mounts(instance)
    for source, target, read_only in _mounts(container):
        if any(marker in str(source).lower() or marker in str(target).lower() for marker in PIPE_MARKERS):
            continue  # said by container_reasons
        if not any(_same_path(source, s) and _same_path(target, t) and read_only == ro for s, t, ro in wanted):
            reasons.append("instance %s mounts %s at %s%s, which is neither its configuration nor its state directory"
                           % (name, source, target, " read-only" if read_only else ""))
    return reasons
