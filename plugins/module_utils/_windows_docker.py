# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine interface of ``_container_engine`` on a Windows host's ``docker.exe``.

:class:`DockerCli` is the Windows backend of the engine interface: every call becomes one
``docker.exe`` command line, run on the host by ``run(argv)`` (the action plugins pass a function
that executes the thin ``win_docker_exec`` module; the unit tests pass a simulated host), and every
answer is parsed from the JSON ``docker.exe`` prints - ``docker container inspect``, ``docker image
inspect`` and ``docker network inspect`` print the Engine API's inspect objects, so the manager
(``_container_deploy``), the health verdict and the egress checks read the same shapes as on Linux.

What Windows containers lack is refused, never silently dropped: a setting that asks for a
read-only root file system, a tmpfs, capabilities, security options, an init process, a PID or swap
limit, privileges or Hyper-V isolation makes :meth:`DockerCli.create_container` raise
:class:`EngineError` before ``docker create`` runs. ``docker.exe`` cannot give an exec-form health
command either (``--health-cmd`` is always ``CMD-SHELL``): the image's own command is kept, or a
shell-form one is given.

This file imports neither Ansible nor the ``vantage`` package.
"""

from __future__ import annotations

import json

from ._container import BUILTIN_NETWORKS, LABEL_CHECKPOINT, NANOSECONDS, healthcheck_from_engine
from ._container_engine import WINDOWS_LIMITS, EngineError

#: The driver of a checkpoint network on Windows and the option that names its HNS network.
NETWORK_DRIVER = "nat"
HNS_NAME_OPTION = "com.docker.network.windowsshim.networkname"
HNS_ID_OPTION = "com.docker.network.windowsshim.hnsid"
ISOLATION = "process"
#: networks every Windows engine has, never a checkpoint's own
BUILTIN_NETWORKS_WINDOWS = BUILTIN_NETWORKS + ("nat",)
#: How a host path names a named pipe (``\\.\pipe\docker_engine``, ``//./pipe/docker_engine``), lower case.
PIPE_MARKERS = ("\\\\.\\pipe\\", "//./pipe/")
#: Markers of "not there" in docker.exe's error output (``Error: No such container: x``,
#: ``Error response from daemon: No such image: x``, ``network x not found``).
NOT_FOUND = ("no such container", "no such image", "no such object", "no such network", "not found")
#: What only Linux containers have: (setting, value that means "not asked for", what to say)
LINUX_ONLY = (
    ("read_only", False, "a read-only root file system (--read-only)"),
    ("tmpfs", {}, "tmpfs mounts"),
    ("cap_drop", [], "dropping capabilities"),
    ("cap_add", [], "adding capabilities"),
    ("security_opt", [], "security options (no-new-privileges, seccomp)"),
    ("privileged", False, "privileged mode"),
    ("init", False, "an init process (--init)"),
    ("pids_limit", None, "a PID limit (--pids-limit)"),
    ("memory_swap", None, "a swap limit (--memory-swap)"),
)


def _lines(text):
    return [line for line in str(text or "").splitlines() if line.strip()]


def not_found(answer):
    """Whether a failed ``docker.exe`` answer says that the object does not exist."""
    text = ("%s %s" % (answer.get("stderr") or "", answer.get("stdout") or "")).lower()
    return answer.get("rc") != 0 and any(marker in text for marker in NOT_FOUND)


def cpus_text(nano_cpus):
    """``--cpus`` for a NanoCpus value, exactly (``1``, ``0.5``, ``1.25``)."""
    whole, rest = divmod(int(nano_cpus), NANOSECONDS)
    if not rest:
        return str(whole)
    return ("%d.%09d" % (whole, rest)).rstrip("0")


def mount_argument(source, target, read_only):
    """``--mount`` for a bind mount; refuses values the CLI's CSV syntax could misread."""
    for value in (source, target):
        if any(char in value for char in ',"\r\n'):
            raise EngineError("the mount path %r contains a character docker.exe's --mount cannot take" % value)
    text = "type=bind,source=%s,target=%s" % (source, target)
    return text + ",readonly" if read_only else text


def create_arguments(name, settings, environment, labels, mounts, image_healthcheck=None):
    """The ``docker create`` arguments of an instance container (without ``docker.exe``).

    ``image_healthcheck`` is the image's HEALTHCHECK as comparable settings (``_container``): an
    exec-form command equal to it is left to the image, since ``docker.exe`` can only give a shell
    command. Raises :class:`EngineError` for anything a Windows container cannot have.
    """
    refused = [what for key, empty, what in LINUX_ONLY if settings.get(key) not in (empty, None, [], {}, False)]
    if settings.get("isolation") not in (None, ISOLATION):
        refused.append("%s isolation (only process isolation is supported, docs/windows.md 'Isolation')"
                       % settings.get("isolation"))
    if settings.get("network") in BUILTIN_NETWORKS_WINDOWS:
        refused.append("the built-in network %s" % settings.get("network"))
    if refused:
        raise EngineError("container %s cannot be created on Windows with %s" % (name, ", ".join(refused)))
    argv = ["container", "create", "--name", name, "--isolation", ISOLATION, "--network", settings["network"]]
    if settings.get("user"):
        argv += ["--user", settings["user"]]
    for key, value in sorted(environment.items()):
        argv += ["--env", "%s=%s" % (key, value)]
    for key, value in sorted(labels.items()):
        argv += ["--label", "%s=%s" % (key, value)]
    for source, target, read_only in mounts:
        argv += ["--mount", mount_argument(source, target, read_only)]
    if settings.get("memory"):
        argv += ["--memory", str(settings["memory"])]
    if settings.get("nano_cpus"):
        argv += ["--cpus", cpus_text(settings["nano_cpus"])]
    for entry in settings.get("extra_hosts") or []:
        argv += ["--add-host", entry]
    restart = settings.get("restart_policy") or "no"
    argv += ["--restart", restart]
    log_config = dict(settings["log_config"])
    argv += ["--log-driver", log_config.pop("type")]
    for key, value in sorted(log_config.items()):
        argv += ["--log-opt", "%s=%s" % (key, value)]
    if settings.get("stop_timeout") is not None:
        argv += ["--stop-timeout", str(int(settings["stop_timeout"]))]
    health = settings.get("healthcheck")
    if health:
        test = list(health["test"])
        if test[:1] == ["CMD-SHELL"] and len(test) == 2:
            argv += ["--health-cmd", test[1]]
        elif not (image_healthcheck and image_healthcheck["test"] == test):
            raise EngineError(
                "container %s: docker.exe can set a health command only in shell form; give "
                "healthcheck.test as the image's own command or leave it unset" % name)
        argv += [
            "--health-interval", "%gs" % health["interval"],
            "--health-timeout", "%gs" % health["timeout"],
            "--health-retries", str(int(health["retries"])),
            "--health-start-period", "%gs" % health["start_period"],
        ]
    argv.append(settings["image"])
    return argv


class DockerCli:
    """The engine interface (``_container_engine``) on ``docker.exe``.

    ``run(argv)`` runs ``docker.exe argv...`` on the host and returns ``{"rc", "stdout",
    "stderr"}``. With ``check_mode``, every call that would change the host raises
    :class:`EngineError` (the manager never makes one in check mode; this makes sure of it).
    """

    network_driver = NETWORK_DRIVER

    def __init__(self, run, check_mode=False):
        self.run = run
        self.check_mode = check_mode

    # -- running docker.exe ----------------------------------------------------------------------

    def call(self, what, argv, change=False, missing_ok=False):
        """The answer of ``docker.exe argv``; EngineError naming ``what`` when it failed."""
        if change and self.check_mode:
            raise EngineError("%s would change the host in check mode" % what)
        answer = self.run(list(argv))
        if answer.get("rc") == 0 or (missing_ok and not_found(answer)):
            return answer
        detail = (str(answer.get("stderr") or "").strip() or str(answer.get("stdout") or "").strip())[-1000:]
        raise EngineError("%s: docker.exe exited %s: %s" % (what, answer.get("rc"), detail or "no output"))

    def inspect(self, what, argv):
        """The objects an inspect command printed (a JSON list), [] when they do not exist."""
        answer = self.call("inspecting %s" % what, argv, missing_ok=True)
        if answer.get("rc") != 0:
            return []
        try:
            value = json.loads(answer.get("stdout") or "[]")
        except ValueError:
            raise EngineError("inspecting %s: docker.exe did not print JSON: %s" % (what, str(answer.get("stdout"))[:200]))
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise EngineError("inspecting %s: docker.exe printed %s, not a list of objects" % (what, type(value).__name__))
        return value

    def _one(self, what, argv):
        found = self.inspect(what, argv)
        if len(found) > 1:
            raise EngineError("inspecting %s: docker.exe described %d objects" % (what, len(found)))
        return found[0] if found else None

    def _ids(self, what, argv):
        return _lines(self.call(what, argv).get("stdout"))

    # -- the engine interface --------------------------------------------------------------------

    @staticmethod
    def limits():
        return dict(WINDOWS_LIMITS)

    def image(self, reference):
        return self._one("image %s" % reference, ["image", "inspect", reference])

    def pull(self, repository, digest):
        self.call("pulling %s@%s" % (repository, digest), ["image", "pull", "%s@%s" % (repository, digest)], change=True)

    def images(self):
        ids = self._ids("listing images", ["image", "ls", "--quiet", "--no-trunc"])
        return self.inspect("images", ["image", "inspect"] + sorted(set(ids))) if ids else []

    def used_images(self):
        ids = self._ids("listing containers", ["container", "ls", "--all", "--quiet", "--no-trunc"])
        if not ids:
            return set()
        return set(c.get("Image") for c in self.inspect("containers", ["container", "inspect"] + ids))

    def remove_image(self, image_id):
        self.call("removing image %s" % image_id[:19], ["image", "rm", image_id], change=True)

    def network(self, name):
        listed = self.call("listing networks", ["network", "ls", "--no-trunc", "--filter", "name=%s" % name,
                                                "--format", "{{json .}}"])
        found = []
        for line in _lines(listed.get("stdout")):
            try:
                item = json.loads(line)
            except ValueError:
                raise EngineError("listing networks: docker.exe did not print JSON: %s" % line[:200])
            if isinstance(item, dict) and item.get("Name") == name:
                found.append(item)
        if not found:
            return None
        if len(found) > 1:
            raise EngineError("there are %d networks called %s; remove the extra ones" % (len(found), name))
        return self._one("network %s" % name, ["network", "inspect", found[0]["ID"]])

    def create_network(self, name, bridge, checkpoint):
        """A ``nat`` network whose HNS network is called ``bridge`` (the contract's interface name)."""
        self.call("creating network %s" % name, [
            "network", "create", "--driver", NETWORK_DRIVER, "--label", "%s=%s" % (LABEL_CHECKPOINT, checkpoint),
            "--opt", "%s=%s" % (HNS_NAME_OPTION, bridge), name], change=True)
        return self.network(name)

    @staticmethod
    def network_interface(network):
        """The HNS network name of a checkpoint's ``nat`` network (what the egress ACLs attach to)."""
        if network.get("Driver") != NETWORK_DRIVER:
            raise EngineError("network %s uses driver %s; a Windows checkpoint needs a %s network of its own"
                              % (network.get("Name"), network.get("Driver"), NETWORK_DRIVER))
        options = network.get("Options") or {}
        return str(options.get(HNS_NAME_OPTION) or network.get("Name"))

    def remove_network(self, network_id):
        self.call("removing network %s" % network_id, ["network", "rm", network_id], change=True)

    def container(self, name_or_id):
        return self._one("container %s" % name_or_id, ["container", "inspect", name_or_id])

    def checkpoint_containers(self, checkpoint):
        ids = self._ids("listing containers", ["container", "ls", "--all", "--quiet", "--no-trunc", "--filter",
                                               "label=%s=%s" % (LABEL_CHECKPOINT, checkpoint)])
        return self.inspect("containers", ["container", "inspect"] + ids) if ids else []

    def create_container(self, name, settings, environment, labels, mounts):
        image = self.image(settings["image"]) or {}
        argv = create_arguments(name, settings, environment, labels, mounts,
                                healthcheck_from_engine((image.get("Config") or {}).get("Healthcheck")))
        answer = self.call("creating container %s" % name, argv, change=True)
        created = _lines(answer.get("stdout"))
        if not created:
            raise EngineError("creating container %s: docker.exe printed no container id" % name)
        return created[-1].strip()

    def start(self, container_id):
        self.call("starting container %s" % container_id[:12], ["container", "start", container_id], change=True)

    def stop(self, container_id, timeout):
        self.call("stopping container %s" % container_id[:12],
                  ["container", "stop", "-t", str(int(timeout)), container_id], change=True)

    def rename(self, container_id, name):
        self.call("renaming container %s to %s" % (container_id[:12], name),
                  ["container", "rename", container_id, name], change=True)

    def remove(self, container_id):
        self.call("removing container %s" % container_id[:12], ["container", "rm", "--force", "--volumes", container_id],
                  change=True, missing_ok=True)

    def logs(self, container_id, lines=20):
        answer = self.run(["container", "logs", "--tail", str(int(lines)), container_id])
        if answer.get("rc") != 0:
            return "(no logs: %s)" % str(answer.get("stderr") or "").strip()[:200]
        return ("%s\n%s" % (answer.get("stdout") or "", answer.get("stderr") or "")).strip()

    def execute(self, container_id, argv):
        """``docker exec`` in a running container (the egress probe, which only reads); the raw answer."""
        return self.run(["container", "exec", container_id] + list(argv))
