# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manager behind ``checkpoint_container``: plans and performs the rolling deployment.

One instance at a time: the running container is renamed ``<name>-previous`` and stopped, the
new one is started and must become healthy within the health timeout; only then is the
previous container removed and the next instance considered. A new container that does not
become healthy is removed and the previous one renamed back and started again, and the run
fails without touching any other instance.

The manager reads its options from the option model (``_container.CheckpointSpec``) only and
reaches the engine through the engine interface (``_container_engine``), so the same manager
serves any engine backend; it never talks to Ansible - the module turns its result, or the
:class:`DeployError` it raises, into ``exit_json``/``fail_json``.
"""

from __future__ import annotations

import os
import stat
import time

from ._container import (
    LABEL_CHECKPOINT,
    LABEL_CONFIG_HASH,
    LABEL_INSTANCE,
    PREVIOUS_SUFFIX,
    config_hash,
    credentials_revision,
    differences,
    display_settings,
    instance_labels,
    mask_unenforced,
    observed_settings,
)
from ._container_engine import (
    EngineError,
    container_name_of,
    health_state,
    replace_container,
    wait_healthy,
)
from ._contract import bridge_name, container_name
from ._diff import DifferenceTracker


class DeployError(Exception):
    """A failed run: ``result`` is what the module returns with the message."""

    def __init__(self, message, result=None):
        super(DeployError, self).__init__(message)
        self.result = result or {}


_UNSET = object()


def _short(container_id):
    return (container_id or "")[:12] or None


_name = container_name_of


class CheckpointDeployment:
    """Converges the containers of one checkpoint (``spec``) on one engine."""

    def __init__(self, spec, engine, check_mode=False, clock=time.monotonic, sleep=time.sleep):
        self.spec = spec
        self.engine = engine
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.results = []
        self.changed = False
        self.tracker = DifferenceTracker()
        self.warnings = []
        self.network_info = {"name": None, "bridge": None, "created": False, "removed": False}
        self.image_info = None
        self.limits = dict(memory=True, swap=True, pids=True)

    # -- entry point ---------------------------------------------------------------------------

    def run(self):
        """The module's result (with ``diff`` and ``warnings``); :class:`DeployError` on failure."""
        try:
            if self.spec.state == "present":
                self.present()
            else:
                self.absent()
        except (DeployError, EngineError) as exc:
            raise DeployError(str(exc), self.result())
        return self.result()

    def result(self):
        before, after = self.tracker.get_before_after()
        return dict(
            changed=self.changed,
            checkpoint=self.spec.checkpoint,
            network=self.network_info["name"],
            bridge=self.network_info["bridge"],
            network_created=self.network_info["created"],
            network_removed=self.network_info["removed"],
            image=self.image_info,
            instances=self.results,
            diff=dict(before=before, after=after),
            warnings=list(self.warnings),
        )

    # -- state=present -------------------------------------------------------------------------

    def present(self):
        spec = self.spec
        self.check_host_files()
        self.read_credentials_revisions()
        containers = self.engine.checkpoint_containers(spec.checkpoint)
        self.check_names(containers)
        image_id, image_config = self.resolve_image()
        if image_config is not None and spec.desired_settings(
            spec.instances[0], image_id, image_config
        )["healthcheck"] is None:
            raise DeployError(
                "image %s has no HEALTHCHECK and option healthcheck is not set: the rolling replacement waits "
                "for each new container to be healthy, so it needs one" % spec.image.text
            )
        self.limits = self.engine.limits()
        for key, option in (("memory", "memory"), ("swap", "memory (swap)"), ("pids", "pids_limit")):
            if not self.limits[key]:
                self.warnings.append(
                    "the engine's kernel does not enforce %s limits, so option %s has no effect on this host"
                    % (key, option)
                )
        self.ensure_network()

        plans = []
        for instance in spec.instances:
            plans.append(self.plan_instance(instance, containers, image_id, image_config))
        # Instances that are down or unhealthy first: replacing them can only help; a healthy one is
        # replaced only while another instance is healthy (see replace()).
        order = sorted(plans, key=lambda p: 1 if p["health"] == "healthy" else 0)
        for plan in order:
            self.apply(plan, plans)
        # results in the order of the option, whatever order they were processed in
        names = [i["name"] for i in spec.instances]
        self.results.sort(key=lambda r: names.index(r["name"]) if r["name"] in names else len(names))

        listed = set(names)
        managed = set()
        for name in names:
            managed.update([container_name(spec.checkpoint, name), container_name(spec.checkpoint, name) + PREVIOUS_SUFFIX])
        for container in containers:
            instance = ((container.get("Config") or {}).get("Labels") or {}).get(LABEL_INSTANCE)
            if instance in listed:
                if _name(container) not in managed and self.engine.container(container["Id"]) is not None:
                    self.warnings.append(
                        "container %s is labelled as instance %s of checkpoint %s but does not have the module's name "
                        "for it; it was left alone - two agents with one identity and state directory interfere, "
                        "remove it" % (_name(container), instance, spec.checkpoint)
                    )
                continue
            if self.engine.container(container["Id"]) is None:
                continue
            self.remove_instance_container(container, instance)

    def check_host_files(self):
        """Mounted host paths must exist (a missing bind source would fail late, at create)."""
        if not self.spec.local_files:
            return  # a remote engine: the paths are on its host, not here
        for option, path, kind in self.spec.host_files():
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                raise DeployError("option %s: %s cannot be used: %s" % (option, path, exc.strerror))
            if kind == "file" and not stat.S_ISREG(mode):
                raise DeployError("option %s: %s is not a regular file" % (option, path))
            if kind == "directory" and not stat.S_ISDIR(mode):
                raise DeployError("option %s: %s is not a directory" % (option, path))

    def read_credentials_revisions(self):
        """Fingerprint the credentials file per instance, so that new secrets replace the instances.

        Only with a local engine (the files are on this host); a remote engine's instances are
        replaced when the O(credentials_file) path changes, not when its content does.
        """
        spec = self.spec
        if not spec.credentials_file or not spec.local_files:
            return
        try:
            with open(spec.credentials_file, "rb") as handle:
                content = handle.read()
        except (IOError, OSError) as exc:
            raise DeployError("option credentials_file: %s cannot be read: %s" % (spec.credentials_file, exc.strerror))
        for instance in spec.instances:
            try:
                with open(instance["identity_key"], "rb") as handle:
                    key = handle.read()
            except (IOError, OSError) as exc:
                raise DeployError(
                    "option instances[%s].identity_key: %s cannot be read: %s"
                    % (instance["name"], instance["identity_key"], exc.strerror)
                )
            spec.credentials_revisions[instance["name"]] = credentials_revision(key, content)

    def check_names(self, containers):
        """A container that carries one of our names but not our labels is somebody else's: refuse."""
        ours = set(c["Id"] for c in containers)
        for instance in self.spec.instances:
            base = container_name(self.spec.checkpoint, instance["name"])
            for name in (base, base + PREVIOUS_SUFFIX):
                other = self.engine.container(name)
                if other is not None and other["Id"] not in ours:
                    labels = (other.get("Config") or {}).get("Labels") or {}
                    owner = labels.get(LABEL_CHECKPOINT)
                    raise DeployError(
                        "container %s exists but does not belong to checkpoint %s (%s); it is left alone - "
                        "rename or remove it, or choose other checkpoint/instance names"
                        % (name, self.spec.checkpoint, "it belongs to checkpoint %s" % owner if owner else "no label")
                    )

    def resolve_image(self):
        """``(image id, image Config)``; pulls a missing ``repo@digest`` (not in check mode)."""
        ref = self.spec.image
        info = self.engine.image(ref.reference)
        pulled = False
        if info is None:
            if not ref.pullable:
                raise DeployError(
                    "option image: the engine has no image %s (a local image id cannot be pulled; load the "
                    "image first, or give repository@sha256:<digest>)" % ref.text
                )
            if self.check_mode:
                self.image_info = dict(reference=ref.reference, id=None, digest=ref.digest, pulled=True)
                return ref.reference, None
            self.engine.pull(ref.repository, ref.digest)
            pulled = True
            self.changed = True
            info = self.engine.image(ref.reference)
            if info is None:
                raise DeployError("pulled %s but the engine does not know it afterwards" % ref.reference)
        self.image_info = dict(reference=ref.reference, id=info["Id"], digest=ref.digest, pulled=pulled)
        return info["Id"], info.get("Config") or {}

    def ensure_network(self):
        name = self.spec.network
        self.network_info["name"] = name
        network = self.engine.network(name)
        before = None
        if network is None:
            bridge = bridge_name(name)
            if not self.check_mode:
                network = self.engine.create_network(name, bridge, self.spec.checkpoint)
                if network is None:
                    raise DeployError("network %s was created but cannot be found" % name)
            self.network_info["created"] = True
            self.changed = True
        else:
            bridge = self.bridge_of(network)
            before = dict(name=name, bridge=bridge)
            expected = bridge_name(name)
            if bridge != expected:
                self.warnings.append(
                    "network %s already existed with bridge interface %s (not %s, as the module would name it); "
                    "the egress firewall must match %s" % (name, bridge, expected, bridge)
                )
        if network is not None:
            bridge = self.bridge_of(network)
        self.network_info["bridge"] = bridge
        self.tracker.add("network", before, dict(name=name, bridge=bridge))

    def bridge_of(self, network):
        """The network's interface on the host (the engine backend knows its drivers)."""
        try:
            return self.engine.network_interface(network)
        except EngineError as exc:
            raise DeployError(str(exc))

    def observed(self, container):
        image = self.engine.image(container.get("Image")) if container.get("Image") else None
        settings = observed_settings(container, (image or {}).get("Config"))
        return settings

    def plan_instance(self, instance, containers, image_id, image_config):
        spec = self.spec
        name = container_name(spec.checkpoint, instance["name"])
        by_name = dict((_name(c), c) for c in containers)
        current = by_name.get(name)
        previous = by_name.get(name + PREVIOUS_SUFFIX)
        if previous is not None:
            current = self.recover(name, current, previous)
        # limits the kernel cannot enforce are dropped by the engine: neither asked for nor compared
        desired = mask_unenforced(spec.desired_settings(instance, image_id, image_config), self.limits)
        digest = config_hash(desired)
        plan = dict(instance=instance, name=name, desired=desired, digest=digest, current=current,
                    observed=None, health="missing", changes=[])
        if current is None:
            plan["action"] = "created"
        else:
            plan["observed"] = mask_unenforced(self.observed(current), self.limits)
            plan["health"] = health_state(current)
            plan["changes"] = differences(plan["observed"], desired)
            label = ((current.get("Config") or {}).get("Labels") or {}).get(LABEL_CONFIG_HASH)
            if not plan["changes"] and label != digest and image_config is not None:
                plan["changes"] = ["config-hash"]
            if plan["changes"]:
                plan["action"] = "replaced"
            elif plan["health"] in ("exited", "created", "dead", "paused"):
                plan["action"] = "started"
            else:
                plan["action"] = "unchanged"
        self.tracker.add(
            "instances",
            *self._tracked_instances(plan)
        )
        return plan

    def _tracked_instances(self, plan):
        before, after = self.tracker.get_before_after()
        before = dict(before.get("instances") or {})
        after = dict(after.get("instances") or {})
        name = plan["instance"]["name"]
        before[name] = display_settings(plan["observed"])
        after[name] = display_settings(plan["desired"])
        return before, after

    def recover(self, name, current, previous):
        """A ``-previous`` container left by an interrupted run: finish or undo that replacement."""
        if self.check_mode:
            self.warnings.append(
                "container %s%s was left by an interrupted run; it would be recovered" % (name, PREVIOUS_SUFFIX)
            )
            return current or previous
        self.changed = True
        if current is not None and health_state(current) == "healthy":
            self.engine.remove(previous["Id"])
            self.warnings.append("removed %s%s left by an interrupted run (%s is healthy)" % (name, PREVIOUS_SUFFIX, name))
            return current
        if current is not None:
            self.engine.remove(current["Id"])
        # back under its name; a stopped one is then started (and waited for) like any stopped instance
        self.engine.rename(previous["Id"], name)
        self.warnings.append(
            "restored %s from %s%s left by an interrupted run" % (name, name, PREVIOUS_SUFFIX)
        )
        return self.engine.container(previous["Id"])

    # -- performing a plan ---------------------------------------------------------------------

    def result_for(self, plan, action, container=None, health=_UNSET, **extra):
        """Record the outcome for one instance: ``container`` is the inspected container that now
        runs it (default: the one found at the start); in check mode nothing ran, so planned
        changes have no health."""
        container = container if container is not None else plan["current"]
        if health is _UNSET:
            health = health_state(container) if container else None
        if self.check_mode or not container:
            image = plan["desired"]["image"] if action != "unchanged" or not container else container.get("Image")
        else:
            image = container.get("Image")
        entry = dict(
            name=plan["instance"]["name"],
            container=plan["name"],
            container_id=_short(container["Id"]) if container else None,
            action=action,
            image=image,
            health=health,
            changes=plan["changes"],
        )
        entry.update(extra)
        self.results.append(entry)
        return entry

    def apply(self, plan, plans):
        action = plan["action"]
        if action == "unchanged":
            self.result_for(plan, "unchanged")
            return
        self.changed = True
        if self.check_mode:
            self.result_for(plan, action, health=None)
            return
        if action == "created":
            self.create(plan)
        elif action == "started":
            self.start_existing(plan)
        else:
            self.replace(plan, plans)

    def create_new(self, plan):
        """A container for ``plan`` (created, not started); returns its id."""
        instance = plan["instance"]
        return self.engine.create_container(
            plan["name"],
            plan["desired"],
            self.spec.environment(instance),
            instance_labels(self.spec.checkpoint, instance["name"], plan["desired"]),
            self.spec.mounts(instance),
        )

    def gate(self, container_id):
        """The health gate: the container healthy within the health timeout."""
        return wait_healthy(self.engine, container_id, self.spec.health_timeout, clock=self.clock, sleep=self.sleep)

    def create(self, plan):
        container_id = self.create_new(plan)
        self.engine.start(container_id)
        ok, outcome = self.gate(container_id)
        if not ok:
            # there was no container before: go back to that, so that every run tells the same story
            self.engine.remove(container_id)
            self.result_for(plan, "failed", health="removed", reason=outcome)
            raise DeployError(
                "instance %s: new container %s did not become healthy, so it was removed and no further instance "
                "was touched: %s" % (plan["instance"]["name"], plan["name"], outcome)
            )
        self.result_for(plan, "created", outcome)

    def start_existing(self, plan):
        container_id = plan["current"]["Id"]
        self.engine.start(container_id)
        ok, outcome = self.gate(container_id)
        if not ok:
            entry = self.result_for(plan, "failed", self.engine.container(container_id))
            entry["reason"] = outcome
            raise DeployError(
                "instance %s: stopped container %s was started but did not become healthy: %s"
                % (plan["instance"]["name"], plan["name"], outcome)
            )
        self.result_for(plan, "started", outcome)

    def wait_for_peer(self, plan, plans):
        """Before stopping a healthy instance, make sure another one is healthy (when there is another)."""
        others = [p for p in plans if p is not plan]
        if not others or plan["health"] != "healthy":
            return
        deadline = self.clock() + self.spec.health_timeout
        while True:
            states = {}
            for other in others:
                states[other["instance"]["name"]] = health_state(self.engine.container(other["name"]))
            if "healthy" in states.values():
                return
            if self.clock() >= deadline:
                raise DeployError(
                    "refusing to replace instance %s: it is healthy and no other instance is (%s); replacing it "
                    "now would leave the checkpoint without a healthy instance"
                    % (plan["instance"]["name"], ", ".join("%s: %s" % item for item in sorted(states.items())))
                )
            self.sleep(0.5)

    def replace(self, plan, plans):
        old = plan["current"]
        name = plan["instance"]["name"]
        self.wait_for_peer(plan, plans)
        try:
            done = replace_container(self.engine, old, lambda: self.create_new(plan), self.gate, self.spec.stop_timeout)
        except EngineError as exc:
            raise DeployError("instance %s: %s" % (name, exc))
        if done.ok:
            self.result_for(plan, "replaced", done.outcome, previous_container_id=_short(old["Id"]))
            return
        restored = done.restored if done.restored_ok else self.engine.container(old["Id"])
        entry = self.result_for(plan, "rolled_back", restored, reason=done.reason)
        if done.rollback_error:
            entry["action"] = "failed"
            raise DeployError(
                "instance %s: the new container did not become healthy (%s), and putting the previous container "
                "back failed: %s. Container %s holds the previous instance; start it by hand"
                % (name, done.reason, done.rollback_error, old["Id"][:12])
            )
        raise DeployError(
            "instance %s: the new container did not become healthy, so the previous one was restored and no "
            "further instance was touched: %s" % (name, done.reason)
        )

    # -- removal -------------------------------------------------------------------------------

    def remove_instance_container(self, container, instance):
        entry = dict(
            name=instance,
            container=_name(container),
            container_id=_short(container["Id"]),
            action="removed",
            image=container.get("Image"),
            health=None,
            changes=[],
        )
        self.changed = True
        before, after = self.tracker.get_before_after()
        tracked_before = dict(before.get("instances") or {})
        tracked_after = dict(after.get("instances") or {})
        key = instance if instance not in tracked_before else _name(container)
        tracked_before[key] = display_settings(self.observed(container))
        tracked_after[key] = None
        self.tracker.add("instances", tracked_before, tracked_after)
        if not self.check_mode:
            if (container.get("State") or {}).get("Running"):
                self.engine.stop(container["Id"], self.spec.stop_timeout)
            self.engine.remove(container["Id"])
        self.results.append(entry)

    def absent(self):
        spec = self.spec
        containers = self.engine.checkpoint_containers(spec.checkpoint)
        self.tracker.add("instances", {}, {})
        for container in sorted(containers, key=_name):
            instance = ((container.get("Config") or {}).get("Labels") or {}).get(LABEL_INSTANCE)
            self.remove_instance_container(container, instance)
        name = spec.network
        self.network_info["name"] = name
        network = self.engine.network(name)
        if network is None:
            self.tracker.add("network", None, None)
            return
        try:
            bridge = self.engine.network_interface(network)
        except EngineError:
            bridge = None
        self.network_info["bridge"] = bridge
        labels = network.get("Labels") or {}
        attached = [c for c in (network.get("Containers") or {}) if c not in set(x["Id"] for x in containers)]
        if labels.get(LABEL_CHECKPOINT) != spec.checkpoint:
            self.warnings.append("network %s was not created for checkpoint %s; it is kept" % (name, spec.checkpoint))
            self.tracker.add("network", dict(name=name, bridge=bridge), dict(name=name, bridge=bridge))
            return
        if attached:
            self.warnings.append("network %s is kept: other containers are attached to it" % name)
            self.tracker.add("network", dict(name=name, bridge=bridge), dict(name=name, bridge=bridge))
            return
        self.tracker.add("network", dict(name=name, bridge=bridge), None)
        self.changed = True
        self.network_info["removed"] = True
        if not self.check_mode:
            self.engine.remove_network(network["Id"])
