# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Docker engine, as ``checkpoint_container`` needs it, through the ``docker`` SDK's low-level
``APIClient`` (works with the SDK 5.0.3 of Debian 12 and with 7.x).

Every engine error becomes an :class:`EngineError` whose message says what was being done.
"""

from __future__ import annotations

import time
import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound
    from docker.types import LogConfig, Mount
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    class DockerException(Exception):  # noqa: N818 - stand-in, so that except clauses work
        pass

    class APIError(DockerException):
        pass

    class NotFound(APIError):
        pass

else:
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    BRIDGE_NAME_OPTION,
    ICC_OPTION,
    LABEL_CHECKPOINT,
    LABEL_CONFIG_HASH,
    LABEL_INSTANCE,
    healthcheck_to_engine,
)

MIN_DOCKER_SDK = "5.0.3"


def ensure_docker(module):
    """Fail the module with Ansible's standard message when the SDK is missing or too old."""
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker (Python SDK, >= %s)" % MIN_DOCKER_SDK),
                         exception=DOCKER_IMPORT_ERROR)
    version = tuple(int(p) for p in docker.__version__.split(".")[:3] if p.isdigit())
    if version < (5, 0, 3):
        module.fail_json(msg="the docker Python SDK is %s; checkpoint_container needs >= %s"
                         % (docker.__version__, MIN_DOCKER_SDK))


class EngineError(Exception):
    pass


def _text(exc):
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return explanation.decode("utf-8", "replace") if isinstance(explanation, bytes) else str(explanation)
    return str(exc)


class Engine:
    """The few engine operations the module uses."""

    def __init__(self, docker_host, timeout):
        try:
            self.api = docker.APIClient(base_url=docker_host, version="auto", timeout=timeout)
        except DockerException as exc:
            raise EngineError("cannot reach the Docker engine at %s: %s" % (docker_host, _text(exc)))

    def _call(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DockerException as exc:
            raise EngineError("%s: %s" % (what, _text(exc)))

    def limits(self):
        """Which resource limits the engine's kernel enforces (``docker info``): it silently drops
        the others, which would otherwise look like a difference on every run."""
        info = self._call("reading the engine's information", self.api.info)
        return dict(
            memory=info.get("MemoryLimit", True) is not False,
            swap=info.get("SwapLimit", True) is not False,
            pids=info.get("PidsLimit", True) is not False,
        )

    # -- images --------------------------------------------------------------------------------

    def image(self, reference):
        """``docker image inspect`` of ``reference``, or None when the engine does not have it."""
        try:
            return self.api.inspect_image(reference)
        except NotFound:
            return None
        except DockerException as exc:
            raise EngineError("inspecting image %s: %s" % (reference, _text(exc)))

    def pull(self, repository, digest):
        what = "pulling %s@%s" % (repository, digest)
        try:
            for line in self.api.pull(repository, tag=digest, stream=True, decode=True):
                if isinstance(line, dict) and line.get("error"):
                    raise EngineError("%s: %s" % (what, line["error"]))
        except DockerException as exc:
            raise EngineError("%s: %s" % (what, _text(exc)))

    # -- networks ------------------------------------------------------------------------------

    def network(self, name):
        """``docker network inspect`` of the network called exactly ``name``, or None."""
        found = [n for n in self._call("listing networks", self.api.networks, names=[name]) if n.get("Name") == name]
        if not found:
            return None
        if len(found) > 1:
            raise EngineError("there are %d networks called %s; remove the extra ones" % (len(found), name))
        return self._call("inspecting network %s" % name, self.api.inspect_network, found[0]["Id"])

    def create_network(self, name, bridge, checkpoint):
        self._call(
            "creating network %s" % name,
            self.api.create_network,
            name,
            driver="bridge",
            options={BRIDGE_NAME_OPTION: bridge, ICC_OPTION: "false"},
            labels={LABEL_CHECKPOINT: checkpoint},
        )
        return self.network(name)

    def remove_network(self, network_id):
        self._call("removing network %s" % network_id, self.api.remove_network, network_id)

    # -- containers ----------------------------------------------------------------------------

    def container(self, name_or_id):
        """``docker inspect`` of a container, or None when there is none."""
        try:
            return self.api.inspect_container(name_or_id)
        except NotFound:
            return None
        except DockerException as exc:
            raise EngineError("inspecting container %s: %s" % (name_or_id, _text(exc)))

    def checkpoint_containers(self, checkpoint):
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

    def create_container(self, spec, instance, name, image_id, settings, digest):
        api = self.api
        mounts = [
            Mount(target=target, source=source, type="bind", read_only=read_only)
            for source, target, read_only in spec.mounts(instance)
        ]
        restart = {"Name": settings["restart_policy"]}
        if settings["restart_policy"] == "on-failure":
            restart["MaximumRetryCount"] = 0
        log_config = dict(settings["log_config"])
        host_config = self._call(
            "preparing the container settings",
            api.create_host_config,
            mounts=mounts,
            network_mode=settings["network"],
            nano_cpus=settings["nano_cpus"],
            restart_policy=restart,
            log_config=LogConfig(type=log_config.pop("type"), config=log_config),
            read_only=True,
            tmpfs=dict(settings["tmpfs"]),
            cap_drop=list(settings["cap_drop"]),
            security_opt=list(settings["security_opt"]),
            privileged=False,
            init=True,
            extra_hosts=list(settings.get("extra_hosts") or []) or None,
        )
        # a limit the kernel cannot enforce is None in the settings, and not asked for
        for key, value in (("Memory", settings["memory"]), ("MemorySwap", settings["memory_swap"]),
                           ("PidsLimit", settings["pids_limit"])):
            if value is not None:
                host_config[key] = value
        labels = {
            LABEL_CHECKPOINT: spec.checkpoint,
            LABEL_INSTANCE: instance["name"],
            LABEL_CONFIG_HASH: digest,
        }
        kwargs = dict(
            name=name,
            user=settings["user"],
            environment=spec.environment(instance),
            labels=labels,
            host_config=host_config,
            networking_config=api.create_networking_config({settings["network"]: api.create_endpoint_config()}),
            stop_timeout=settings["stop_timeout"],
            use_config_proxy=False,
        )
        if spec.healthcheck_option and settings["healthcheck"]:
            kwargs["healthcheck"] = healthcheck_to_engine(settings["healthcheck"])
        created = self._call("creating container %s" % name, api.create_container, image_id, **kwargs)
        return created["Id"]

    def start(self, container_id):
        self._call("starting container %s" % container_id[:12], self.api.start, container_id)

    def stop(self, container_id, timeout):
        self._call("stopping container %s" % container_id[:12], self.api.stop, container_id, timeout=timeout)

    def rename(self, container_id, name):
        self._call("renaming container %s to %s" % (container_id[:12], name), self.api.rename, container_id, name)

    def remove(self, container_id):
        try:
            self.api.remove_container(container_id, v=True, force=True)
        except NotFound:
            pass
        except DockerException as exc:
            raise EngineError("removing container %s: %s" % (container_id[:12], _text(exc)))

    def logs(self, container_id, lines=20):
        """The last ``lines`` lines the container wrote (stdout and stderr), best effort."""
        try:
            data = self.api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except DockerException as exc:
            return "(no logs: %s)" % _text(exc)
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        return data.strip()


def health_state(container):
    """One word for a container's condition: healthy, unhealthy, starting, none (no healthcheck),
    restarting, or the engine's status when it is not running (exited, created, dead, ...)."""
    if container is None:
        return "missing"
    state = container.get("State") or {}
    if state.get("Restarting"):
        return "restarting"
    if not state.get("Running"):
        return state.get("Status") or "exited"
    health = state.get("Health")
    if not health:
        return "none"
    return health.get("Status") or "starting"


def health_report(engine, container):
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
