# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The health verdict of ``checkpoint_health``: what the control plane says, what the local engine
shows, and the report built from both.

The network and the engine are read by :func:`read_control_plane` and :func:`inspect_local`; the
verdict itself (:func:`build_report`, :func:`local_findings`) is plain data handling, unit-tested
without any server or engine. Every reason is a sentence that names the checkpoint or the instance,
so that a list of them can be shown to an operator as it is. :class:`HealthCheck` is the module's
manager: its options (:func:`argument_spec`), the wait and the result.
"""

from __future__ import annotations

import datetime
import ntpath
import os
import stat
import time
from email.utils import parsedate_to_datetime

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    IDENTITY_KEY_PATH,
    LABEL_CHECKPOINT,
    LABEL_INSTANCE,
    WINDOWS_CONFIG_DIR,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._container_engine import (
    DOCKER_IMPORT_ERROR,
    DockerEngine,
    EngineError,
    docker_sdk_problem,
    health_state,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import IDENTITY_KEY_FILE, container_name
from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import (
    CONTROL_PLANE_ARGUMENT_SPEC,
    ControlPlaneError,
    api_path,
    check_name,
)

ALERT_LIMIT = 1000
CHECKPOINT_UNAVAILABLE = "checkpoint_unavailable"
IDENTITY_KEY_MODE = "0600"
#: the report's state when the control plane could not be asked (the control plane's own states
#: are active, maintenance, unavailable and disabled)
STATE_UNKNOWN = "unknown"


class NotKnownError(ControlPlaneError):
    """The control plane does not know the checkpoint (HTTP 404 on its health)."""


# ----------------------------------------------------------------------------- the control plane


def server_clock(client):
    """``(offset_s, status)``: this host's clock minus the control plane's (from its HTTP ``Date``
    header on ``GET /api/v1/status``, which needs no token), and the status answer.

    The header has a resolution of one second, so the offset is known to about +-1 s. Raises
    :class:`ControlPlaneError` ("cannot reach the control plane at URL: ...") when no answer comes.
    """
    url = client.base_url + api_path("status")
    started = time.time()
    try:
        response = open_url(
            url,
            method="GET",
            headers={"Accept": "application/json"},
            timeout=client.timeout,
            validate_certs=client.validate_certs,
            ca_path=client.ca_path,
            follow_redirects="none",
            http_agent=client.user_agent,
            use_netrc=False,
        )
        raw = response.read()
        date = response.headers.get("Date")
    except Exception as exc:  # pylint: disable=broad-except
        # URLError, HTTPError (a status endpoint that fails is no control plane), TLS errors
        reason = getattr(exc, "reason", None) or exc
        raise ControlPlaneError(client.scrub("cannot reach the control plane at %s: %s" % (client.base_url, reason)))
    finished = time.time()
    try:
        status = client._decode(raw)
    except ValueError:
        status = None
    offset = None
    if date:
        try:
            server = parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            server = None
        if server is not None:
            if server.tzinfo is None:
                server = server.replace(tzinfo=datetime.timezone.utc)
            # the header is truncated to the second: compare with the middle of that second
            offset = (started + finished) / 2.0 - (server.timestamp() + 0.5)
    return offset, status if isinstance(status, dict) else {}


def read_control_plane(client, checkpoint):
    """``(health, alerts)``: the checkpoint's health answer and its open alerts.

    Raises :class:`NotKnownError` for an unknown checkpoint and :class:`ControlPlaneError` for
    everything else (authentication, unreachable, unexpected answers).
    """
    path = api_path("checkpoints", checkpoint, "health")
    status, health = client.request("GET", path, accept=(200, 404))
    if status == 404:
        raise NotKnownError(
            "checkpoint %s is not known to the control plane at %s" % (checkpoint, client.base_url), status=404
        )
    if not isinstance(health, dict) or not isinstance(health.get("instances"), list):
        raise ControlPlaneError(
            "GET %s: unexpected answer from the control plane at %s (no instances list)" % (path, client.base_url)
        )
    dummy, answer = client.request("GET", api_path("alerts") + "?open=true&limit=%d" % ALERT_LIMIT)
    alerts = []
    for alert in (answer or {}).get("alerts") or []:
        if isinstance(alert, dict) and alert.get("subject") == checkpoint and not alert.get("closed_at"):
            alerts.append(
                dict(kind=alert.get("kind"), opened_at=alert.get("opened_at"), message=alert.get("message") or "")
            )
    return health, alerts


# ----------------------------------------------------------------------------- the local engine


def mode_text(mode):
    return "%04o" % stat.S_IMODE(mode)


def identity_key_source(container):
    """The host path mounted at the agent's identity key path, or None.

    A Windows instance mounts its configuration directory (Windows reports the destination in lower case).
    """
    for mount in container.get("Mounts") or []:
        if mount.get("Destination") == IDENTITY_KEY_PATH:
            return mount.get("Source")
        if str(mount.get("Destination") or "").lower() == WINDOWS_CONFIG_DIR.lower() and mount.get("Source"):
            return ntpath.join(mount["Source"], IDENTITY_KEY_FILE)
    for bind in (container.get("HostConfig") or {}).get("Binds") or []:
        parts = bind.split(":")
        if len(parts) > 1 and parts[1] == IDENTITY_KEY_PATH:
            return parts[0]
    return None


def image_digests(image_id, image):
    """Every digest that names the image a container runs: its id and its registry digests."""
    result = set()
    if image_id:
        result.add(image_id)
    for item in (image or {}).get("RepoDigests") or []:
        if "@" in item:
            result.add(item.rsplit("@", 1)[1])
    return result


def local_findings(checkpoint, instance, container, image, key_stat, health_state):
    """``(local, reasons)`` for one instance on this host, from what the engine and the file system show.

    ``container``: ``docker inspect`` (None when missing); ``image``: ``docker image inspect`` of
    its image (or None); ``key_stat``: ``os.stat`` of the mounted identity key, or the
    ``OSError`` raised by it, or None when nothing is mounted; ``health_state``: one word
    (``healthy``, ``unhealthy``, ``starting``, ``exited``, ...).
    """
    name = container_name(checkpoint, instance)
    local = dict(container=name, running=False, health="missing", image_id=None, image_digests=[],
                 identity_key=None, identity_key_mode=None)
    if container is None:
        return local, ["instance %s: container %s does not exist on this host" % (instance, name)]
    reasons = []
    state = container.get("State") or {}
    config = container.get("Config") or {}
    labels = config.get("Labels") or {}
    local["running"] = bool(state.get("Running")) and not state.get("Restarting")
    local["health"] = health_state
    local["image_id"] = container.get("Image")
    local["image_digests"] = sorted(image_digests(container.get("Image"), image))
    if labels.get(LABEL_CHECKPOINT) != checkpoint or labels.get(LABEL_INSTANCE) != instance:
        reasons.append(
            "instance %s: container %s is not labelled as instance %s of checkpoint %s (%s=%s, %s=%s); "
            "it was not made by checkpoint_container"
            % (instance, name, instance, checkpoint, LABEL_CHECKPOINT, labels.get(LABEL_CHECKPOINT),
               LABEL_INSTANCE, labels.get(LABEL_INSTANCE))
        )
    if not local["running"]:
        detail = "state %s" % health_state
        if state.get("ExitCode") is not None and not state.get("Running"):
            detail += ", exit code %s" % state.get("ExitCode")
        reasons.append("instance %s: container %s is not running (%s)" % (instance, name, detail))
    elif health_state != "healthy":
        reasons.append("instance %s: container %s is %s according to its Docker health check" % (instance, name, health_state))
    source = identity_key_source(container)
    local["identity_key"] = source
    if source is None:
        reasons.append("instance %s: container %s mounts no identity key at %s" % (instance, name, IDENTITY_KEY_PATH))
    elif isinstance(key_stat, OSError):
        reasons.append("instance %s: identity key %s cannot be read: %s" % (instance, source, key_stat.strerror or key_stat))
    elif key_stat is not None:
        local["identity_key_mode"] = mode_text(key_stat.st_mode)
        if not stat.S_ISREG(key_stat.st_mode):
            reasons.append("instance %s: identity key %s is not a regular file" % (instance, source))
        elif key_stat.st_size == 0:
            reasons.append("instance %s: identity key %s is empty" % (instance, source))
        elif local["identity_key_mode"] != IDENTITY_KEY_MODE:
            reasons.append(
                "instance %s: identity key %s has mode %s, expected %s (readable by others)"
                % (instance, source, local["identity_key_mode"], IDENTITY_KEY_MODE)
            )
    return local, reasons


def inspect_local(engine, checkpoint, instance, health_state):
    """:func:`local_findings` for ``instance``, read from ``engine`` (``_container_engine.Engine``)."""
    container = engine.container(container_name(checkpoint, instance))
    image = None
    key_stat = None
    if container is not None:
        if container.get("Image"):
            image = engine.image(container["Image"])
        source = identity_key_source(container)
        if source:
            try:
                key_stat = os.stat(source)
            except OSError as exc:
                key_stat = exc
    return local_findings(checkpoint, instance, container,
                          image, key_stat, health_state(container) if container is not None else "missing")


# ----------------------------------------------------------------------------- the verdict


def _age(now_cp, when):
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        return None
    return round(max(0.0, now_cp - float(when)), 1)


def build_report(
    checkpoint,
    base_url,
    health,
    alerts,
    expected=None,
    min_healthy=None,
    image_digest=None,
    local=None,
    clock_offset=None,
    max_clock_offset=None,
    now=None,
):
    """The module's report from the control plane's answers and the local findings.

    ``expected``: the instance names to judge (None: every instance the control plane lists);
    ``local``: ``{instance: (local, reasons)}`` for the instances inspected on this host;
    ``clock_offset``: this host minus the control plane, in seconds (None: unknown);
    ``max_clock_offset``: when set, a larger offset is a reason (only meaningful when the module
    runs on a checkpoint host).
    """
    now = time.time() if now is None else now
    local = local or {}
    now_cp = now - (clock_offset or 0.0)
    by_name = {}
    for entry in health.get("instances") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            by_name[entry["name"]] = entry
    names = list(expected) if expected is not None else sorted(by_name)
    state = health.get("state") or STATE_UNKNOWN
    reasons = []  # about the checkpoint as a whole: any of them makes it unhealthy
    if state == "disabled":
        why = [r for r in health.get("reasons") or [] if isinstance(r, str) and r.startswith("checkpoint is disabled")]
        reasons.append("checkpoint %s is disabled at the control plane%s" % (checkpoint, (": " + why[0].split(": ", 1)[-1]) if why else ""))
    elif state != "active":
        reasons.append("checkpoint %s is %s at the control plane" % (checkpoint, state))
    for alert in alerts or []:
        reasons.append("checkpoint %s has an open %s alert: %s" % (checkpoint, alert.get("kind"), alert.get("message")))
    if not names:
        reasons.append("checkpoint %s has no enrolled instance" % checkpoint)
    if clock_offset is not None and max_clock_offset is not None and abs(clock_offset) > max_clock_offset:
        reasons.append(
            "the clock of this host is %.1f s %s the control plane's (more than %s s): signed instructions "
            "live 5 minutes and may be refused; fix the time synchronisation"
            % (abs(clock_offset), "ahead of" if clock_offset > 0 else "behind", max_clock_offset)
        )

    instances = []
    instance_reasons = []
    for name in names:
        entry = by_name.get(name)
        item = dict(name=name, connected=False, healthy=False, last_heartbeat_age_s=None, version=None,
                    image_digest=None, reasons=[], local=None)
        if entry is None:
            item["reasons"].append("instance %s is not enrolled at the control plane" % name)
        else:
            item["connected"] = entry.get("connected") is True
            item["healthy"] = entry.get("healthy") is True
            item["last_heartbeat_age_s"] = _age(now_cp, entry.get("last_heartbeat"))
            item["version"] = entry.get("version")
            item["image_digest"] = entry.get("image_digest")
            item["reasons"].extend(r for r in entry.get("reasons") or [] if isinstance(r, str))
            if not item["healthy"] and not item["reasons"]:
                item["reasons"].append("instance %s is not healthy according to the control plane" % name)
            if image_digest and item["connected"] and item["image_digest"] != image_digest:
                item["reasons"].append(
                    "instance %s runs image %s, expected %s" % (name, item["image_digest"] or "(not reported)", image_digest)
                )
        if name in local:
            findings, local_reasons = local[name]
            item["local"] = findings
            item["reasons"].extend(local_reasons)
            digests = findings.get("image_digests") or []
            if findings.get("running") and item["connected"] and item["image_digest"] and digests and item["image_digest"] not in digests:
                item["reasons"].append(
                    "instance %s: the control plane reports image %s but container %s runs %s"
                    % (name, item["image_digest"], findings["container"], findings.get("image_id"))
                )
            if image_digest and findings.get("running") and digests and image_digest not in digests:
                item["reasons"].append(
                    "instance %s: container %s runs %s, expected image %s"
                    % (name, findings["container"], findings.get("image_id"), image_digest)
                )
        item["healthy"] = item["healthy"] and not item["reasons"]
        instances.append(item)
        instance_reasons.extend(item["reasons"])

    healthy_count = sum(1 for item in instances if item["healthy"])
    required = len(names) if min_healthy is None else min_healthy
    healthy = state == "active" and bool(names) and healthy_count >= required and not reasons
    if healthy_count < required:
        reasons.append(
            "checkpoint %s has %d healthy instance%s of %d expected, at least %d required"
            % (checkpoint, healthy_count, "" if healthy_count == 1 else "s", len(names), required)
        )
    # instance reasons are listed too; they make the checkpoint unhealthy only through min_healthy
    reasons.extend(instance_reasons)
    return dict(
        checkpoint=checkpoint,
        control_plane_url=base_url,
        state=state,
        healthy=healthy,
        degraded=state == "active" and healthy_count < len(names),
        healthy_instances=healthy_count,
        min_healthy=required,
        reasons=reasons,
        alerts=list(alerts or []),
        checked_at=datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        clock_offset_s=None if clock_offset is None else round(clock_offset, 1),
        instances=instances,
    )


def unknown_report(checkpoint, base_url, message, clock_offset=None, now=None):
    """The report when the control plane could not be asked (unreachable, token refused, unknown checkpoint)."""
    now = time.time() if now is None else now
    return dict(
        checkpoint=checkpoint,
        control_plane_url=base_url,
        state=STATE_UNKNOWN,
        healthy=False,
        degraded=False,
        healthy_instances=0,
        min_healthy=None,
        reasons=[to_text(message)],
        alerts=[],
        checked_at=datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        clock_offset_s=None if clock_offset is None else round(clock_offset, 1),
        instances=[],
    )


# ----------------------------------------------------------------------------- the module's manager


DIGEST_PREFIX = "sha256:"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
ENGINE_TIMEOUT = 30


def argument_spec():
    """The options of ``checkpoint_health`` (with the control plane's connection options)."""
    spec = dict(CONTROL_PLANE_ARGUMENT_SPEC)
    spec.update(
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
    return spec


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
        self.max_clock_offset = params["max_clock_offset"]
        if self.max_clock_offset < 0:
            module.fail_json(msg="max_clock_offset must be 0 or more seconds")
        self.wait = params["wait"]
        self.fail_on_unhealthy = params["fail_on_unhealthy"]
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
        problem = docker_sdk_problem()
        if problem:
            self.module.fail_json(msg="%s: %s" % (missing_required_lib("docker (Python SDK) >= 5.0.3"), problem),
                                  exception=DOCKER_IMPORT_ERROR)
        try:
            return DockerEngine(docker_host, ENGINE_TIMEOUT), health_state
        except EngineError as exc:
            self.module.fail_json(msg=str(exc))

    def clock_offset(self):
        """This host's clock minus the control plane's (the Windows action adds the host's offset to the controller's)."""
        return server_clock(self.client)[0]

    def inspect(self, name):
        """``(local, reasons)`` of one instance on this host (:func:`inspect_local`)."""
        return inspect_local(self.engine, self.checkpoint, name, self.health_state)

    def check_once(self, deadline):
        """One report; raises ControlPlaneError when the control plane cannot be asked."""
        self.client.timeout = max(1, min(self.request_timeout, int(round(deadline - self.clock()))))
        offset = self.clock_offset()
        health, alerts = read_control_plane(self.client, self.checkpoint)
        expected = self.expected
        if expected is None:
            expected = sorted(i["name"] for i in health["instances"] if isinstance(i, dict) and isinstance(i.get("name"), str))
        local = {}
        if self.engine is not None:
            names = self.local_instances if self.local_instances is not None else expected
            for name in names:
                try:
                    local[name] = self.inspect(name)
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
            max_clock_offset=self.max_clock_offset if self.engine is not None else None,
        )

    def run(self):
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
                if exc.status is not None or not self.wait:
                    self.fail_error(exc, attempts)
                error = exc
            if report is not None and (report["healthy"] or not self.wait):
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
        if not report["healthy"] and self.fail_on_unhealthy:
            waited = " after waiting %s s" % self.timeout if self.wait else ""
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
