# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Scheduled updates of a Windows checkpoint host, decided on the controller.

:func:`update_plan` checks the ``auto_update`` settings the way the Linux role does (names, channel,
URL with the contract, at most two weeks between runs - computed here, see ``_windows_tasks``) and
returns what ``win_update_task`` puts on the host: ``update.conf`` for ``vantage update`` (the same
keys as the Linux template, plus the engine's named pipe and the lock in a directory of its own),
the API token file, the scheduled task ``\\Vantage\\Update <checkpoint>`` that runs
``vantage-checkpoint-update.ps1`` as SYSTEM (daily by default, a random delay, never two runs at
once, a missed run made up when the host is back), and the Windows Update policy: automatic
download and installation every day in a maintenance window, with the restart policy a variable.
"""

from __future__ import annotations

import ntpath

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract, _windows_host, _windows_tasks

POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
SCRIPT = "vantage-checkpoint-update.ps1"
TASK_PATH = "\\Vantage\\"
PIPE = _windows_host.PIPE_ADDRESS
LOCK_FILE = "update.lock"
#: the Windows Update policy key (the "Configure Automatic Updates" group policy's registry values)
WINDOWS_UPDATE_KEY = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU"
AUTO_DOWNLOAD_AND_SCHEDULE_INSTALL = 4
EVERY_DAY = 0
#: the most a checkpoint may go without an update (the product's promise), as on Linux
MAX_INTERVAL_DAYS = 14


def execution_limit(gate_timeout, health_timeout, instances):
    """How long one run may take (the Linux unit's TimeoutStartSec): the gates of every instance, twice, and ten minutes."""
    return (gate_timeout + 2 * health_timeout) * max(instances, 1) * 2 + 600


def update_conf(settings):
    """The text of ``update.conf`` (``[update]``), read by ``vantage.update.config.UpdateConfig``."""
    lines = [
        "# Configuration of `vantage update` (run by the scheduled task \\Vantage\\Update %s), written by the"
        % settings["checkpoint"],
        "# auto_update role. See docs/auto-update.md and docs/windows.md.",
        "[update]",
        "checkpoint = %s" % settings["checkpoint"],
        "channel = %s" % settings["channel"],
        "# the instances of the checkpoint that run on this host, replaced one at a time",
        "instances = %s" % " ".join(settings["instances"]),
        "control_plane_url = %s" % settings["control_plane_url"],
        "api_token_file = %s" % settings["layout"]["update_token"],
        "ca_file = %s" % (settings["layout"]["ca"] if settings["ca"] else ""),
        "validate_certs = %s" % ("true" if settings["validate_certs"] else "false"),
        "# the signing keys pinned by the checkpoint role: only they may sign a release",
        "trusted_keys = %s" % settings["layout"]["trusted_keys"],
        "# release.json (the installed release) and update-status.json (the last run) live here",
        "state_dir = %s" % settings["layout"]["state_dir"],
        "health_timeout = %d" % settings["health_timeout"],
        "gate_timeout = %d" % settings["gate_timeout"],
        "# the engine's named pipe, mounted into the update container",
        "docker_host = %s" % PIPE,
        "# the host-wide lock: Windows bind mounts are directories, so it lives in a directory of its own",
        "lock_file = %s" % ntpath.join(settings["lock_dir"], LOCK_FILE),
    ]
    return "\n".join(lines) + "\n"


def windows_update_policy(reboot, hour):
    """The values of :data:`WINDOWS_UPDATE_KEY`: download and install automatically every day at ``hour``.

    ``reboot``: restart at the scheduled time when an update needs it (15 minutes' notice, even with
    somebody signed in); otherwise no automatic restart while somebody is signed in - Windows may
    still restart a host nobody is signed in to, so a pair's hosts need their own restart windows.
    """
    values = [
        ("NoAutoUpdate", 0),
        ("AUOptions", AUTO_DOWNLOAD_AND_SCHEDULE_INSTALL),
        ("ScheduledInstallDay", EVERY_DAY),
        ("ScheduledInstallTime", hour),
        ("NoAutoRebootWithLoggedOnUsers", 0 if reboot else 1),
        ("AlwaysAutoRebootAtScheduledTime", 1 if reboot else 0),
    ]
    if reboot:
        values.append(("AlwaysAutoRebootAtScheduledTimeMinutes", 15))
    return [{"path": WINDOWS_UPDATE_KEY, "name": name, "data": data, "type": "dword"} for name, data in values]


def update_plan(params):
    """Everything ``win_update_task`` writes, or ``_windows_host.WindowsHostError`` with every reason.

    ``params``: the role's settings without the ``auto_update_`` prefix (``checkpoint``, ``instances``,
    ``channel``, ``control_plane_url``, ``ca``, ``validate_certs``, ``health_timeout``, ``gate_timeout``,
    ``schedule``, ``randomized_delay``, ``max_interval_days``, ``enabled``, ``config_dir`` and
    ``state_dir`` (used when they are Windows paths), ``bin_dir``, ``lock_dir``, ``docker``,
    ``os_updates``, ``os_reboot``, ``os_update_hour``). Booleans and numbers may be strings (AWX surveys).
    """
    reasons = _windows_host.Reasons()

    def contract(rule, value, what):
        try:
            return _contract.check(rule, value, what)
        except _contract.ContractError as exc:
            reasons.items.append(str(exc))
            return None

    def number(key, minimum, maximum=None):
        value = reasons.attempt(_windows_host.to_int, params.get(key), "auto_update_%s" % key, minimum)
        if value is not None and maximum is not None and value > maximum:
            reasons.items.append("auto_update_%s must be at most %d, got %d" % (key, maximum, value))
        return value

    def flag(key):
        return reasons.attempt(_windows_host.to_bool, params.get(key), "auto_update_%s" % key)

    checkpoint = contract("name", params.get("checkpoint"), "auto_update_checkpoint_name")
    instances = list(params.get("instances") or [])
    if not instances:
        reasons.items.append("auto_update_instances must list the instances of the checkpoint on this host")
    for index, instance in enumerate(instances):
        contract("name", instance, "auto_update_instances[%d]" % index)
    contract("channel", params.get("channel"), "auto_update_channel")
    url = None
    try:
        url = _contract.control_plane_url(params.get("control_plane_url"), "auto_update_control_plane_url")
    except _contract.ContractError as exc:
        reasons.items.append(str(exc))
    max_days = number("max_interval_days", 1, MAX_INTERVAL_DAYS)
    health_timeout = number("health_timeout", 1)
    gate_timeout = number("gate_timeout", 1)
    hour = number("os_update_hour", 0, 23)
    validate_certs, enabled, os_updates, os_reboot = (flag(key) for key in ("validate_certs", "enabled", "os_updates", "os_reboot"))
    schedule = None
    if max_days is not None:
        try:
            schedule = _windows_tasks.check_schedule(params.get("schedule"), max_days)
        except _windows_tasks.TaskError as exc:
            reasons.items.append(str(exc))
    try:
        random_delay = _windows_tasks.duration(params.get("randomized_delay"))
    except _windows_tasks.TaskError as exc:
        reasons.items.append(str(exc))
    for key in ("bin_dir", "lock_dir"):
        if not _windows_host.is_windows_path(params.get(key)):
            reasons.items.append("auto_update_windows_%s must be an absolute Windows path, got %r" % (key, params.get(key)))
    if params.get("docker") and '"' in params["docker"]:
        reasons.items.append("the docker.exe path %r cannot be put on a command line" % params["docker"])
    reasons.raise_any()
    # the checkpoint role's directories when they are Windows paths, else the collection's Windows layout
    layout = _contract.host_layout(
        checkpoint, instances, platform="windows",
        config_dir=params["config_dir"] if _windows_host.is_windows_path(params.get("config_dir")) else None,
        state_dir=params["state_dir"] if _windows_host.is_windows_path(params.get("state_dir")) else None)
    settings = dict(checkpoint=checkpoint, instances=instances, channel=params["channel"], control_plane_url=url,
                    layout=layout, ca=bool(params.get("ca")), validate_certs=validate_certs, health_timeout=health_timeout,
                    gate_timeout=gate_timeout, lock_dir=params["lock_dir"])
    script = ntpath.join(params["bin_dir"], SCRIPT)
    arguments = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "%s" -Config "%s"' % (script, layout["update_config"])
    if params.get("docker"):
        arguments += ' -Docker "%s"' % params["docker"]
    task = _windows_tasks.task_xml(
        "Vantage: update checkpoint %s to its channel's signed release, one instance at a time" % checkpoint,
        POWERSHELL, arguments, [{"type": "calendar", "schedule": schedule, "random_delay": random_delay}],
        _windows_tasks.iso_duration(execution_limit(gate_timeout, health_timeout, len(instances))), enabled=enabled)
    return {
        "layout": layout,
        "update_conf": update_conf(settings),
        "script": script,
        "task_name": "Update %s" % checkpoint,
        "task_xml": task,
        "schedule": schedule,
        "longest_gap_days": _windows_tasks.longest_gap_days(schedule),
        "windows_update": windows_update_policy(os_reboot, hour) if os_updates else [],
    }
