# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The container engine of a checkpoint host, and the one-at-a-time replacement built on it.

The engine interface
--------------------
Everything that decides *what* runs - the option model and the settings (``_container``), the
fingerprint label, the plan, the health gates, the replacement and its rollback (below and in
``_container_deploy``) - talks to the engine through these calls only. Inspect data is the Docker
Engine API's JSON (``docker inspect``), whatever the backend::

    limits() -> {"memory": bool, "swap": bool, "pids": bool}   limits the kernel enforces
    image(reference) -> image inspect or None
    pull(repository, digest)                                   pull repository@digest
    images() -> [{"Id", "RepoDigests"}, ...]                   every local image
    used_images() -> {image id, ...}                           images some container uses
    remove_image(image_id)
    network(name) -> network inspect or None
    create_network(name, bridge, checkpoint) -> network inspect    ``bridge``: the host-side name
    network_interface(network) -> str                          the host-side name of a network
                                                               the checkpoint can use, or EngineError
    remove_network(network_id)
    container(name_or_id) -> container inspect or None
    checkpoint_containers(checkpoint) -> [container inspect, ...]   labelled with the checkpoint
    create_container(name, settings, environment, labels, mounts) -> container id
    start(id), stop(id, timeout), rename(id, name), remove(id)      remove: forced, absent is fine
    logs(id, lines) -> str                                     best effort

Every failure is an :class:`EngineError` whose message says what was being done.
:class:`DockerEngine` is the backend for Linux hosts (the ``docker`` SDK's low-level client on
the engine's socket; SDK 5.0.3 of Debian 12 and 7.x). A backend for Windows hosts drives
``docker.exe`` with the same calls (``_windows_docker.DockerCli``, driven from the controller by an
action plugin), and the update engine in the Windows checkpoint image uses :class:`DockerEngine` on
the named pipe ``npipe:////./pipe/docker_engine``, so the manager and the update engine stay the
same on both. Settings a platform lacks are None (limits) or empty/false (Linux-only hardening) in
the settings; ``isolation`` exists only for Windows containers (see ``_container``).

This file imports neither Ansible nor the ``vantage`` package: ``checkpoint_container``,
``checkpoint_health`` and the update engine of the ``vantage`` package (which carries it
unchanged, see docs/auto-update.md) all use it.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

try:
    import docker
    from docker.errors import DockerException, NotFound
    from docker.types import LogConfig, Mount
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()  # type: Optional[str]

    class DockerException(Exception):  # type: ignore[no-redef]  # noqa: N818 - stand-in, so that except clauses work
        pass

    class NotFound(DockerException):  # type: ignore[no-redef,misc]
        pass

else:
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None

from ._container import (
    BRIDGE_NAME_OPTION,
    ICC_OPTION,
    LABEL_CHECKPOINT,
    PREVIOUS_SUFFIX,
    MountSpec,
    Settings,
    healthcheck_to_engine,
)

MIN_DOCKER_SDK = (5, 0, 3)
Inspect = Dict[str, Any]
#: a health gate: (container id) -> (True, container inspect) or (False, why not)
Gate = Callable[[str], Tuple[bool, Any]]


#: The resource limits Windows containers enforce (Microsoft, "Implementing resource controls for Windows
#: containers": memory and CPU; dockerd on Windows refuses MemorySwap and PidsLimit). ``docker info`` of a
#: Windows engine does not say, so a Windows engine is known by its OSType.
WINDOWS_LIMITS = {"memory": True, "swap": False, "pids": False}


class EngineError(Exception):
    pass


def docker_sdk_problem():
    # type: () -> Optional[str]
    """Why the Docker SDK cannot be used (missing, too old), or None."""
    if not HAS_DOCKER:
        return "the docker Python SDK is missing"
    version = tuple(int(p) for p in docker.__version__.split(".")[:3] if p.isdigit())
    if version < MIN_DOCKER_SDK:
        return "the docker Python SDK is %s; %s or later is needed" % (
            docker.__version__, ".".join(str(p) for p in MIN_DOCKER_SDK))
    return None


def _text(exc):
    # type: (BaseException) -> str
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation)
    return str(exc)


class DockerEngine:
    """The engine interface (see the module's docstring) on the Docker Engine API."""

    def __init__(self, docker_host, timeout):
        # type: (str, int) -> None
        problem = docker_sdk_problem()
        if problem:
            raise EngineError(problem)
        try:
            self.api = docker.APIClient(base_url=docker_host, version="auto", timeout=timeout)
        except DockerException as exc:
            raise EngineError("cannot reach the Docker engine at %s: %s" % (docker_host, _text(exc)))

    def _call(self, what, func, *args, **kwargs):
        # type: (str, Callable[..., Any], Any, Any) -> Any
        try:
            return func(*args, **kwargs)
        except DockerException as exc:
            raise EngineError("%s: %s" % (what, _text(exc)))

    def _inspect(self, what, func, name_or_id):
        # type: (str, Callable[[str], Inspect], str) -> Optional[Inspect]
        try:
            return func(name_or_id)
        except NotFound:
            return None
        except DockerException as exc:
            raise EngineError("inspecting %s %s: %s" % (what, name_or_id, _text(exc)))

    def limits(self):
        # type: () -> Dict[str, bool]
        """Which resource limits the engine's kernel enforces (``docker info``): it silently drops
        the others, which would otherwise look like a difference on every run."""
        info = self._call("reading the engine's information", self.api.info)
        if info.get("OSType") == "windows":
            return dict(WINDOWS_LIMITS)
        return dict(
            memory=info.get("MemoryLimit", True) is not False,
            swap=info.get("SwapLimit", True) is not False,
            pids=info.get("PidsLimit", True) is not False,
        )

    def host_name(self):
        # type: () -> Any
        """The name of the host the engine runs on (``docker info`` ``Name``), as the engine says it."""
        return self._call("reading the engine's information", self.api.info).get("Name")

    # -- images --------------------------------------------------------------------------------

    def image(self, reference):
        # type: (str) -> Optional[Inspect]
        return self._inspect("image", self.api.inspect_image, reference)

    def pull(self, repository, digest):
        # type: (str, str) -> None
        what = "pulling %s@%s" % (repository, digest)
        for line in self._call(what, self.api.pull, repository, tag=digest, stream=True, decode=True):
            if isinstance(line, dict) and line.get("error"):
                raise EngineError("%s: %s" % (what, line["error"]))

    def images(self):
        # type: () -> List[Inspect]
        return list(self._call("listing images", self.api.images))

    def used_images(self):
        # type: () -> Set[str]
        return set(c.get("ImageID") for c in self._call("listing containers", self.api.containers, all=True))

    def remove_image(self, image_id):
        # type: (str) -> None
        self._call("removing image %s" % image_id[:19], self.api.remove_image, image_id)

    # -- networks ------------------------------------------------------------------------------

    def network(self, name):
        # type: (str) -> Optional[Inspect]
        """``docker network inspect`` of the network called exactly ``name``, or None."""
        found = [n for n in self._call("listing networks", self.api.networks, names=[name]) if n.get("Name") == name]
        if not found:
            return None
        if len(found) > 1:
            raise EngineError("there are %d networks called %s; remove the extra ones" % (len(found), name))
        return self._inspect("network", self.api.inspect_network, found[0]["Id"])

    def create_network(self, name, bridge, checkpoint):
        # type: (str, str, str) -> Optional[Inspect]
        self._call(
            "creating network %s" % name,
            self.api.create_network,
            name,
            driver="bridge",
            options={BRIDGE_NAME_OPTION: bridge, ICC_OPTION: "false"},
            labels={LABEL_CHECKPOINT: checkpoint},
        )
        return self.network(name)

    @staticmethod
    def network_interface(network):
        # type: (Inspect) -> str
        return bridge_interface(network)

    def remove_network(self, network_id):
        # type: (str) -> None
        self._call("removing network %s" % network_id, self.api.remove_network, network_id)

    # -- containers ----------------------------------------------------------------------------

    def container(self, name_or_id):
        # type: (str) -> Optional[Inspect]
        return self._inspect("container", self.api.inspect_container, name_or_id)

    def checkpoint_containers(self, checkpoint):
        # type: (str) -> List[Inspect]
        """``docker inspect`` of every container (running or not) labelled with ``checkpoint``."""
        listed = self._call(
            "listing containers",
            self.api.containers,
            all=True,
            filters={"label": ["%s=%s" % (LABEL_CHECKPOINT, checkpoint)]},
        )
        result = []
        for item in listed:
            inspected = self.container(item["Id"])
            if inspected is not None:
                result.append(inspected)
        return result

    def create_container(self, name, settings, environment, labels, mounts):
        # type: (str, Settings, Dict[str, str], Dict[str, str], List[MountSpec]) -> str
        """Create (not start) a container from comparable ``settings`` (``_container``).

        A limit that is None in the settings (not enforced by the kernel) is not asked for; a
        healthcheck that is None keeps the image's.
        """
        api = self.api
        restart = {"Name": settings["restart_policy"]}  # type: Dict[str, Any]
        if settings["restart_policy"] == "on-failure":
            restart["MaximumRetryCount"] = 0
        log_config = dict(settings["log_config"])
        host_config = self._call(
            "preparing the container settings",
            api.create_host_config,
            mounts=[Mount(target=target, source=source, type="bind", read_only=read_only)
                    for source, target, read_only in mounts],
            network_mode=settings["network"],
            nano_cpus=settings["nano_cpus"],
            restart_policy=restart,
            log_config=LogConfig(type=log_config.pop("type"), config=log_config),
            read_only=settings["read_only"],
            tmpfs=dict(settings["tmpfs"]),
            cap_drop=list(settings["cap_drop"]),
            cap_add=list(settings["cap_add"]) or None,
            security_opt=list(settings["security_opt"]),
            privileged=settings["privileged"],
            init=settings["init"],
            isolation=settings.get("isolation"),
            extra_hosts=list(settings.get("extra_hosts") or []) or None,
        )
        for key, value in (("Memory", settings["memory"]), ("MemorySwap", settings["memory_swap"]),
                           ("PidsLimit", settings["pids_limit"])):
            if value is not None:
                host_config[key] = value
        kwargs = dict(
            name=name,
            user=settings["user"] or None,
            environment=dict(sorted(environment.items())),
            labels=labels,
            host_config=host_config,
            networking_config=api.create_networking_config({settings["network"]: api.create_endpoint_config()}),
            stop_timeout=settings["stop_timeout"],
            use_config_proxy=False,
        )  # type: Dict[str, Any]
        if settings["healthcheck"]:
            kwargs["healthcheck"] = healthcheck_to_engine(settings["healthcheck"])
        created = self._call("creating container %s" % name, api.create_container, settings["image"], **kwargs)
        return str(created["Id"])

    def start(self, container_id):
        # type: (str) -> None
        self._call("starting container %s" % container_id[:12], self.api.start, container_id)

    def stop(self, container_id, timeout):
        # type: (str, int) -> None
        self._call("stopping container %s" % container_id[:12], self.api.stop, container_id, timeout=timeout)

    def rename(self, container_id, name):
        # type: (str, str) -> None
        self._call("renaming container %s to %s" % (container_id[:12], name), self.api.rename, container_id, name)

    def remove(self, container_id):
        # type: (str) -> None
        try:
            self.api.remove_container(container_id, v=True, force=True)
        except NotFound:
            pass
        except DockerException as exc:
            raise EngineError("removing container %s: %s" % (container_id[:12], _text(exc)))

    def logs(self, container_id, lines=20):
        # type: (str, int) -> str
        """The last ``lines`` lines the container wrote (stdout and stderr), best effort."""
        try:
            data = self.api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except DockerException as exc:
            return "(no logs: %s)" % _text(exc)
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        return str(data).strip()


def bridge_interface(network):
    # type: (Inspect) -> str
    """The bridge interface on the host of a Linux ``bridge`` network; EngineError for another driver."""
    if network.get("Driver") != "bridge":
        raise EngineError(
            "network %s uses driver %s; the checkpoint needs a bridge network of its own"
            % (network.get("Name"), network.get("Driver"))
        )
    options = network.get("Options") or {}
    return str(options.get(BRIDGE_NAME_OPTION) or "br-" + network["Id"][:12])


# ----------------------------------------------------------------------------- health


def container_name_of(container):
    # type: (Inspect) -> str
    return str(container.get("Name") or "").lstrip("/")


def health_state(container):
    # type: (Optional[Inspect]) -> str
    """One word for a container's condition: healthy, unhealthy, starting, none (no healthcheck),
    restarting, missing, or the engine's status when it is not running (exited, created, dead, ...)."""
    if container is None:
        return "missing"
    state = container.get("State") or {}
    if state.get("Restarting"):
        return "restarting"
    if not state.get("Running"):
        return str(state.get("Status") or "exited")
    health = state.get("Health")
    if not health:
        return "none"
    return str(health.get("Status") or "starting")


def health_report(engine, container):
    # type: (Any, Inspect) -> str
    """Why a container is not healthy: its state, last health check output and last log lines."""
    state = container.get("State") or {}
    parts = ["state %s" % health_state(container)]
    if not state.get("Running") and state.get("ExitCode") is not None:
        parts.append("exit code %s" % state.get("ExitCode"))
    if state.get("Error"):
        parts.append("error: %s" % state["Error"])
    if container.get("RestartCount"):
        parts.append("restarted %s times" % container["RestartCount"])
    log = ((state.get("Health") or {}).get("Log")) or []
    if log:
        last = log[-1]
        output = (last.get("Output") or "").strip()
        parts.append("last health check exit %s: %s" % (last.get("ExitCode"), output[-500:] or "(no output)"))
    text = "; ".join(parts)
    logs = engine.logs(container["Id"])
    if logs:
        text += "; last log lines:\n" + logs[-2000:]
    return text


def wait_healthy(engine, container_id, timeout, interval=0.5, clock=time.monotonic, sleep=time.sleep):
    # type: (Any, str, float, float, Callable[[], float], Callable[[float], None]) -> Tuple[bool, Any]
    """Wait until the container is healthy; return ``(True, inspect)`` or ``(False, reason)``.

    Gives up at once when the container stops running or is restarted by its restart policy (it
    crashed): waiting longer cannot make that instance good.
    """
    deadline = clock() + timeout
    while True:
        container = engine.container(container_id)
        if container is None:
            return False, "the container disappeared"
        state = health_state(container)
        if state == "healthy":
            return True, container
        if state == "none":
            return False, "the container has no healthcheck"
        if state not in ("starting", "unhealthy") or container.get("RestartCount"):
            return False, "it stopped running: " + health_report(engine, container)
        if clock() >= deadline:
            return False, "it was not healthy within %ss: %s" % (timeout, health_report(engine, container))
        sleep(interval)


# ----------------------------------------------------------------------------- replacing one instance


class Replacement:
    """What :func:`replace_container` did.

    ``ok``: the new container passed its gate and the old one is removed (``new_id``, ``outcome``:
    the gate's answer). Otherwise ``reason`` says why the new container was refused; the old one
    is back under its name and, when it ran, started again - ``restored`` is its gate's answer
    (``restored_ok``) - unless putting it back failed (``rollback_error``).
    """

    def __init__(self, ok, new_id=None, outcome=None, reason=None):
        # type: (bool, Optional[str], Any, Optional[str]) -> None
        self.ok = ok
        self.new_id = new_id
        self.outcome = outcome
        self.reason = reason
        self.rollback_error = None  # type: Optional[str]
        self.restored_ok = None  # type: Optional[bool]
        self.restored = None  # type: Any


def replace_container(engine, old, create, gate, stop_timeout, check_created=None, restore_gate=None):
    # type: (Any, Inspect, Callable[[], str], Gate, int, Optional[Callable[[str], Optional[str]]], Optional[Gate]) -> Replacement
    """Replace the container ``old`` (an inspect) by the one ``create()`` makes, behind ``gate``.

    The old container is renamed ``<name>-previous`` (a creation failure renames it back and
    raises :class:`EngineError`), ``check_created(new id)`` may refuse the new container before
    anything stops, then the old one is stopped - never two agents on one identity and state
    directory - and the new one started; ``gate(new id)`` decides. On success the old container
    is removed; otherwise the new one is removed and the old one renamed back and started again
    (when it ran), and ``restore_gate`` (default ``gate``) waits for it.
    """
    name = container_name_of(old)
    engine.rename(old["Id"], name + PREVIOUS_SUFFIX)
    try:
        new_id = create()
    except EngineError as exc:
        engine.rename(old["Id"], name)
        raise EngineError("%s; the running container was kept" % exc)
    was_running = bool((old.get("State") or {}).get("Running"))
    result = Replacement(False, new_id)
    try:
        result.reason = check_created(new_id) if check_created else None
        if result.reason is None:
            if was_running:
                engine.stop(old["Id"], stop_timeout)
            engine.start(new_id)
            result.ok, result.outcome = gate(new_id)
            if not result.ok:
                result.reason = str(result.outcome)
    except EngineError as exc:
        result.reason = str(exc)
    if result.ok:
        engine.remove(old["Id"])
        return result
    try:
        engine.remove(new_id)
        engine.rename(old["Id"], name)
        if was_running:
            engine.start(old["Id"])
    except EngineError as exc:
        result.rollback_error = str(exc)
        return result
    if was_running:
        result.restored_ok, result.restored = (restore_gate or gate)(old["Id"])
    else:
        result.restored = engine.container(old["Id"])
    return result
