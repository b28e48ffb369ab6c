"""One update run: verify the channel's release, pull it, replace the instances one at a time.

The engine is reached through the collection's engine interface (``_container_engine``: the
Docker backend in production, an in-memory one in the unit tests) and the control plane through
:class:`~vantage.update.control_plane.ControlPlaneClient` (or anything with ``release`` and
``health``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from vantage._collection._container import (
    PREVIOUS_SUFFIX,
    differences,
    image_digest_of,
    instance_labels,
    mask_unenforced,
    observed_mounts,
    observed_settings,
    replacement_settings,
)
from vantage._collection._container_engine import EngineError, health_state, replace_container
from vantage._fs import atomic_write
from vantage.contract import container_name
from vantage.protocol import Release, TrustStore, VerificationError, verify_release
from vantage.update.config import (
    EXIT_CONTROL_PLANE,
    EXIT_DEFERRED,
    EXIT_FAILED,
    EXIT_IMAGE,
    EXIT_OK,
    EXIT_REFUSED,
    UpdateConfig,
    UpdateError,
    config_error,
)
from vantage.update.control_plane import ControlPlaneError

Inspect = dict[str, Any]
#: the status and release files are read by operators and playbooks
RECORD_MODE = 0o644


class ControlPlane(Protocol):
    def release(self, channel: str) -> Any: ...

    def health(self, checkpoint: str) -> Any: ...


def log(message: str) -> None:
    print(message, flush=True)


def refused(exc: VerificationError, trust: TrustStore | None = None) -> UpdateError:
    """A refused manifest: ``reason`` starts with the failed check's code."""
    reason = str(exc)
    if exc.reason == "unknown_key" and trust is not None:
        reason += "; pinned: " + (", ".join(key.keyid for key in trust.keys) or "none")
    return UpdateError(EXIT_REFUSED, "refused", reason, check=exc.reason)


def read_json(path: str, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise config_error(f"{path} cannot be read: {exc}") from None


def write_json(path: str, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
    atomic_write(Path(path), data, mode=RECORD_MODE)


def images_to_prune(images: Iterable[Inspect], repository: str, keep: set[str], used: set[str]) -> list[str]:
    """Ids of the images of ``repository`` to remove: none of ``keep`` (digests), not used."""
    result = []
    for image in images:
        digests = [d for d in image.get("RepoDigests") or [] if d.split("@", 1)[0] == repository]
        if not digests or image["Id"] in used:
            continue
        if any(d.split("@", 1)[1] in keep for d in digests):
            continue
        result.append(image["Id"])
    return sorted(result)


class Updater:
    """Moves the instances of ``config.checkpoint`` on this host to the channel's release."""

    def __init__(
        self,
        config: UpdateConfig,
        control_plane: ControlPlane,
        engine: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cp = control_plane
        self.engine = engine
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self.limits: dict[str, bool] = {}
        self.status: dict[str, Any] = {
            "checkpoint": config.checkpoint,
            "channel": config.channel,
            "instances": [],
        }
        #: (instance, previous image id, previous digest) of the instances replaced in this run
        self.done: list[tuple[str, str, str | None]] = []

    def name(self, instance: str) -> str:
        return container_name(self.config.checkpoint, instance)

    # -- the manifest ----------------------------------------------------------------------------

    def installed(self) -> dict[str, Any] | None:
        record = read_json(self.config.release_file)
        if record is not None and (
            not isinstance(record, dict) or not isinstance(record.get("version"), str)
        ):
            raise config_error(f"{self.config.release_file} is not a release record")
        return record

    def fetch_manifest(self, manifest_file: str | None = None) -> Any:
        path = manifest_file or self.config.manifest_file
        if path:
            try:
                return json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise refused(VerificationError("malformed_envelope", f"cannot read {path}: {exc}")) from None
        try:
            return self.cp.release(self.config.channel)
        except ControlPlaneError as exc:
            raise UpdateError(
                EXIT_CONTROL_PLANE,
                "unreachable",
                f"cannot fetch the release manifest of channel {self.config.channel}: {exc}",
            ) from None

    def verify(self, envelope: Any, installed: dict[str, Any] | None) -> Release:
        try:
            trust = TrustStore.load(self.config.trusted_keys)
        except ValueError as exc:
            raise config_error(f"pinned keys: {exc}") from None
        try:
            return verify_release(
                envelope,
                trust,
                channel=self.config.channel,
                installed_version=(installed or {}).get("version"),
                now=self.wall(),
                skew=self.config.skew,
            )
        except VerificationError as exc:
            raise refused(exc, trust) from None
        except ValueError as exc:  # the installed version in release.json
            raise config_error(f"{self.config.release_file}: {exc}") from None

    # -- the engine ------------------------------------------------------------------------------

    def local_containers(self) -> dict[str, Inspect]:
        result = {}
        for instance in self.config.instances:
            container = self.engine.container(self.name(instance))
            if container is None:
                raise config_error(
                    f"container {self.name(instance)} does not exist: deploy the checkpoint with Ansible first"
                )
            result[instance] = container
        return result

    def pull(self, release: Release) -> Inspect:
        reference = release.reference
        image = self.engine.image(reference)
        if image is None:
            log(f"pulling {reference}")
            try:
                self.engine.pull(release.image, release.digest)
            except EngineError as exc:
                raise UpdateError(
                    EXIT_IMAGE, "image_unavailable", f"cannot pull {reference}: {exc}"
                ) from None
            image = self.engine.image(reference)
        if image is None or reference not in (image.get("RepoDigests") or []):
            raise UpdateError(
                EXIT_IMAGE, "image_unavailable", f"the engine has no image {reference} after the pull"
            )
        return dict(image)

    # -- the gates -------------------------------------------------------------------------------

    def control_plane_health(self) -> dict[str, Any]:
        try:
            health = self.cp.health(self.config.checkpoint)
        except ControlPlaneError as exc:
            return {"error": str(exc), "instances": []}
        return health if isinstance(health, dict) else {"error": "not a health report", "instances": []}

    def peers_ok(self, instance: str, health: dict[str, Any]) -> list[str]:
        """Why replacing ``instance`` must wait (empty: go): every other instance, on this host and
        elsewhere, must be connected and healthy at the control plane, and healthy here."""
        if health.get("error"):
            return [f"the control plane cannot be asked: {health['error']}"]
        entries = [e for e in health.get("instances") or [] if isinstance(e, dict)]
        reasons = []
        if instance not in [entry.get("name") for entry in entries]:
            reasons.append(f"the control plane does not know instance {instance}")
        for entry in entries:
            if entry.get("name") != instance and not (entry.get("connected") and entry.get("healthy")):
                why = "; ".join(entry.get("reasons") or []) or "no reason given"
                reasons.append(
                    f"instance {entry.get('name')} is not connected and healthy at the control plane ({why})"
                )
        for other in self.config.instances:
            if other != instance:
                state = health_state(self.engine.container(self.name(other)))
                if state != "healthy":
                    reasons.append(f"local instance {other} is {state}")
        return reasons

    def wait_peers(self, instance: str) -> None:
        deadline = self.clock() + self.config.gate_timeout
        while True:
            reasons = self.peers_ok(instance, self.control_plane_health())
            if not reasons:
                return
            if self.clock() >= deadline:
                raise UpdateError(
                    EXIT_DEFERRED, "deferred", f"instance {instance} was not replaced: {'; '.join(reasons)}"
                )
            self.sleep(self.config.poll_interval)

    def gate(self, instance: str, digest: str | None) -> Callable[[str], tuple[bool, str]]:
        """The gate of a new (or restored) container: healthy here, then connected, healthy and
        running ``digest`` at the control plane, within ``health_timeout``."""

        def wait(container_id: str) -> tuple[bool, str]:
            deadline = self.clock() + self.config.health_timeout
            last = "not checked yet"
            while True:
                container = self.engine.container(container_id)
                state = health_state(container)
                if (
                    container is None
                    or state not in ("healthy", "starting", "unhealthy")
                    or container.get("RestartCount")
                ):
                    exit_code = ((container or {}).get("State") or {}).get("ExitCode")
                    logs = self.engine.logs(container_id)[-500:] if container else ""
                    return False, f"the new container stopped: state {state}, exit code {exit_code}; {logs}"
                if state == "healthy":
                    health = self.control_plane_health()
                    entry = {e.get("name"): e for e in health.get("instances") or []}.get(instance) or {}
                    if (
                        entry.get("connected")
                        and entry.get("healthy")
                        and entry.get("image_digest") == digest
                    ):
                        return True, f"healthy, connected with {digest}"
                    error = f" ({health['error']})" if health.get("error") else ""
                    last = (
                        f"control plane sees connected={entry.get('connected')} healthy={entry.get('healthy')} "
                        f"image_digest={entry.get('image_digest')}{error}"
                    )
                else:
                    checks = ((container.get("State") or {}).get("Health") or {}).get("Log") or []
                    output = (checks[-1].get("Output") or "").strip()[-300:] if checks else ""
                    last = f"local health {state}" + (f": last check said {output!r}" if output else "")
                if self.clock() >= deadline:
                    return False, f"not healthy within {self.config.health_timeout} s: {last}"
                self.sleep(self.config.poll_interval)

        return wait

    # -- one instance ----------------------------------------------------------------------------

    def replace(self, instance: str, image: Inspect, digest: str) -> tuple[bool, str, Inspect]:
        """Replace ``instance``'s container by one running ``image`` (an inspect) with the same
        settings; ``(ok, reason, the previous container)``."""
        engine = self.engine
        name = self.name(instance)
        old = engine.container(name)
        if old is None:
            raise config_error(f"container {name} disappeared during the update")
        if engine.container(name + PREVIOUS_SUFFIX) is not None:
            raise config_error(
                f"container {name}{PREVIOUS_SUFFIX} exists (an interrupted run): "
                "run the checkpoint role to recover it"
            )
        old_image = engine.image(old["Image"])
        settings, environment = replacement_settings(old, (old_image or {}).get("Config"), image, digest)
        settings = mask_unenforced(settings, self.limits)
        labels = instance_labels(self.config.checkpoint, instance, settings)

        def create() -> str:
            return str(engine.create_container(name, settings, environment, labels, observed_mounts(old)))

        def check_created(new_id: str) -> str | None:
            created = engine.container(new_id) or {}
            drift = differences(
                mask_unenforced(observed_settings(created, image.get("Config")), self.limits), settings
            )
            return (
                f"the new container would not keep the settings {', '.join(drift)}; refused"
                if drift
                else None
            )

        log(f"instance {instance}: replacing {old['Id'][:12]} ({old['Image'][:19]}) with {image['Id'][:19]}")
        stop_timeout = (old.get("Config") or {}).get("StopTimeout") or 15
        try:
            done = replace_container(
                engine,
                old,
                create,
                self.gate(instance, digest),
                stop_timeout,
                check_created=check_created,
                restore_gate=self.gate(instance, image_digest_of(old)),
            )
        except EngineError as exc:
            return False, f"creating the new container failed: {exc}", old
        if done.ok:
            log(f"instance {instance}: {done.outcome}")
            return True, str(done.outcome), old
        reason = str(done.reason)
        log(f"instance {instance}: the new container failed ({reason}); the previous one was put back")
        if done.rollback_error:
            reason += f"; putting the previous container back failed: {done.rollback_error}"
        elif done.restored_ok is False:
            reason += f"; and the restored container is not healthy again: {done.restored}"
        return False, reason, old

    # -- the run ---------------------------------------------------------------------------------

    def check(self, manifest_file: str | None = None) -> dict[str, Any]:
        """Verify the manifest only (``--check``); changes nothing."""
        installed = self.installed()
        release = self.verify(self.fetch_manifest(manifest_file), installed)
        return {"release": dataclasses.asdict(release), "installed": installed}

    def run(self, manifest_file: str | None = None, force: bool = False) -> tuple[int, str, str]:
        config = self.config
        installed = self.installed()
        release = self.verify(self.fetch_manifest(manifest_file), installed)
        self.status["release"] = dataclasses.asdict(release)
        self.status["installed"] = installed
        log(f"manifest of channel {config.channel} verified: version {release.version}, {release.reference}")
        failed = (read_json(config.status_file, default={}) or {}).get("failed_release") or {}
        if failed.get("digest") == release.digest and not (force or config.retry_failed):
            self.status["failed_release"] = failed
            raise UpdateError(
                EXIT_FAILED,
                "failed",
                f"release {release.version} ({release.digest}) failed its health gate before "
                f"({failed.get('reason')}); not retried - publish a newer release, or run with --retry-failed",
            )
        containers = self.local_containers()
        todo = [name for name, c in containers.items() if image_digest_of(c) != release.digest]
        if not todo:
            log(f"instances {', '.join(config.instances)} already run {release.digest}")
            self.record(release, installed, containers)
            return EXIT_OK, "up_to_date", f"version {release.version} is installed"
        image = self.pull(release)
        self.limits = self.engine.limits()
        # unhealthy local instances first: replacing them can only help
        todo.sort(key=lambda name: 1 if health_state(containers[name]) == "healthy" else 0)
        for instance in todo:
            self.wait_peers(instance)
            ok, reason, old = self.replace(instance, image, release.digest)
            self.status["instances"].append(
                {
                    "name": instance,
                    "from_digest": image_digest_of(old),
                    "to_digest": release.digest,
                    "result": "replaced" if ok else "rolled_back",
                    "reason": reason,
                }
            )
            if ok:
                self.done.append((instance, old["Image"], image_digest_of(old)))
                continue
            self.undo()
            self.status["failed_release"] = {
                "version": release.version,
                "digest": release.digest,
                "reason": reason,
                "at": int(self.wall()),
            }
            raise UpdateError(
                EXIT_FAILED,
                "rolled_back",
                f"release {release.version} failed on instance {instance} and was rolled back: {reason}",
            )
        replaced_from = {digest for _instance, _image, digest in self.done if digest}
        self.record(release, installed, self.local_containers(), replaced_from)
        # keep the release and the one before it: the recorded one, and what the instances ran
        keep = {release.digest, *replaced_from} | (
            {installed["digest"]} if installed and installed.get("digest") else set()
        )
        self.status["pruned"] = self.prune(release.image, keep)
        return EXIT_OK, "updated", f"version {release.version} installed on {', '.join(todo)}"

    def undo(self) -> None:
        """Move the instances this run already replaced back to their previous image."""
        for instance, image_id, digest in reversed(self.done):
            image = self.engine.image(image_id)
            if image is None or digest is None:
                log(f"instance {instance}: cannot roll back, image {image_id} is gone")
                continue
            try:
                self.wait_peers(instance)
            except UpdateError as exc:
                # it runs the new release healthily; taking it down now would leave no healthy instance
                log(f"instance {instance}: kept on the new release: {exc.reason}")
                self.status["instances"].append({"name": instance, "result": "kept", "reason": exc.reason})
                continue
            ok, reason, _old = self.replace(instance, image, digest)
            self.status["instances"].append(
                {
                    "name": instance,
                    "to_digest": digest,
                    "result": "rolled_back" if ok else "rollback_failed",
                    "reason": reason,
                }
            )
        self.done = []

    def prune(self, repository: str, keep: set[str]) -> list[str]:
        removed = []
        for image_id in images_to_prune(self.engine.images(), repository, keep, self.engine.used_images()):
            try:
                self.engine.remove_image(image_id)
                removed.append(image_id)
            except EngineError as exc:
                log(f"prune: {exc}")
        return removed

    def record(
        self,
        release: Release,
        installed: dict[str, Any] | None,
        containers: dict[str, Inspect],
        replaced_from: set[str] | None = None,
    ) -> None:
        """``release.json``: the installed release, and the one before it (for rollback and pruning)."""
        if (
            installed
            and installed.get("digest") == release.digest
            and installed.get("version") == release.version
        ):
            return
        previous = None
        if installed:
            previous = {k: installed.get(k) for k in ("version", "image", "digest", "installed_at")}
        elif replaced_from:
            previous = {
                "version": None,
                "image": release.image,
                "digest": min(replaced_from),
                "installed_at": None,
            }
        record = dict(
            dataclasses.asdict(release),
            reference=release.reference,
            image_ids=sorted({str(c.get("Image")) for c in containers.values()}),
            installed_at=int(self.wall()),
            previous=previous,
        )
        for key in ("iat", "exp"):
            record.pop(key)
        write_json(self.config.release_file, record)
        log(f"recorded release {release.version} in {self.config.release_file}")

