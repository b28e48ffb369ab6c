# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The desired and observed settings of a checkpoint instance container, without the engine.

``checkpoint_container`` compares, for each instance, a flat dictionary of *settings* built from
the module's options (:func:`desired_settings`) with the same dictionary read back from
``docker inspect`` (:func:`observed_settings`). Both use the same units (bytes, seconds, sorted
lists), so equality means "nothing to do" and the two dictionaries are the C(diff) before/after
(after :func:`display_settings` has masked sensitive environment values).

Nothing here imports the Docker SDK: it is plain data handling, unit-tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # the agent's rule
LOCAL_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REPO_DIGEST_RE = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY_RE = re.compile(r"^(?P<number>[0-9]+)\s*(?P<unit>[bkmg]?)b?$", re.IGNORECASE)
LOG_SIZE_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
SENSITIVE_NAME_RE = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|PRIVATE|AUTH", re.IGNORECASE)
URL_USERINFO_RE = re.compile(r"(?<=://)[^/@\s]+@")

LABEL_CHECKPOINT = "io.vantage.checkpoint"
LABEL_INSTANCE = "io.vantage.instance"
LABEL_CONFIG_HASH = "io.vantage.config-hash"

PREVIOUS_SUFFIX = "-previous"
BUILTIN_NETWORKS = ("bridge", "host", "none", "default")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
ICC_OPTION = "com.docker.network.bridge.enable_icc"

# Where the host files appear inside the container, and the agent variables that point there.
IDENTITY_KEY_PATH = "/etc/vantage/identity.pem"
TRUSTED_KEYS_PATH = "/etc/vantage/trusted_keys.json"
CA_BUNDLE_PATH = "/etc/vantage/ca-bundle.pem"
CREDENTIALS_PATH = "/etc/vantage/credentials.json"
#: a fingerprint of the credentials file's content (HMAC keyed with the instance's identity key), so
#: that new secrets replace the instances (the agent reads the file at start-up); not a VANTAGE_*
#: name, which the agent would warn about as unknown
CREDENTIALS_REVISION_ENV = "CHECKPOINT_CREDENTIALS_REVISION"
STATE_DIR_PATH = "/var/lib/vantage"
TMPFS = {"/tmp": "rw,noexec,nosuid,nodev,size=64m"}
SECURITY_OPT = ["no-new-privileges:true"]

#: variables the module sets itself; O(env) and instance env may not override them
RESERVED_ENV = (
    "VANTAGE_CONTROL_PLANE_URL",
    "VANTAGE_CHECKPOINT",
    "VANTAGE_INSTANCE",
    "VANTAGE_IDENTITY_KEY",
    "VANTAGE_TRUSTED_KEYS",
    "VANTAGE_CA_BUNDLE",
    "VANTAGE_CREDENTIALS_FILE",
    CREDENTIALS_REVISION_ENV,
    "VANTAGE_STATE_DIR",
    "VANTAGE_IMAGE_DIGEST",
    "VANTAGE_CONFIG",
)

NANOSECONDS = 1000000000
HEALTHCHECK_DEFAULTS = dict(interval=15, timeout=10, retries=3, start_period=30)


class SpecError(ValueError):
    """An option value the module refuses; the message names the option."""


# ----------------------------------------------------------------------------- names


def container_name(checkpoint, instance):
    return "vantage-%s-%s" % (checkpoint, instance)


def default_network(checkpoint):
    return "vantage-%s" % checkpoint


def bridge_name(network):
    """A deterministic Linux interface name (at most 15 characters) for ``network``'s bridge.

    The egress firewall matches the checkpoint's traffic with ``iifname`` on it, so it must be
    known before the network exists and be the same on every host.
    """
    return "vtg-" + hashlib.sha256(network.encode("utf-8")).hexdigest()[:11]


# ----------------------------------------------------------------------------- option values


class ImageRef:
    """An image option value: ``repository@sha256:<digest>`` or a local image id ``sha256:<id>``."""

    def __init__(self, text):
        self.text = text
        self.local_id = None
        self.repository = None
        self.digest = None
        if LOCAL_ID_RE.match(text):
            self.local_id = text
            self.digest = text
            return
        match = REPO_DIGEST_RE.match(text)
        if not match:
            raise SpecError(
                "option image must be pinned: repository@sha256:<64 hex digits> (a registry digest) or "
                "sha256:<64 hex digits> (a local image id), got %r; a tag can point to another image at any "
                "time, so tags are refused" % text
            )
        name = match.group("name")
        # "repo:tag@sha256:..." - the digest decides, the tag is decoration
        last = name.rsplit("/", 1)
        if ":" in last[-1]:
            last[-1] = last[-1].split(":", 1)[0]
            name = "/".join(last)
        self.repository = name
        self.digest = match.group("digest")

    @property
    def reference(self):
        """What the engine resolves: the local id, or ``repository@digest``."""
        return self.local_id or "%s@%s" % (self.repository, self.digest)

    @property
    def pullable(self):
        return self.local_id is None


def parse_memory(value, option="memory"):
    """Docker's memory notation (``256m``, ``1g``, ``268435456``) in bytes (binary units)."""
    match = MEMORY_RE.match(str(value).strip())
    if not match:
        raise SpecError("option %s must be a size such as 256m or 1g, got %r" % (option, value))
    factor = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group("unit").lower()]
    size = int(match.group("number")) * factor
    if size < 6 * 1024 ** 2:
        raise SpecError("option %s must be at least 6m (the engine's minimum), got %r" % (option, value))
    return size


def credentials_revision(identity_key, content):
    """The fingerprint of a credentials file's ``content`` (bytes) for one instance.

    HMAC-SHA256 keyed with the instance's identity key (bytes of its file), so that the value, which
    ``docker inspect`` and the module's diff show, tells nothing about the secrets - a plain hash of
    a file holding one weak password could be guessed offline.
    """
    return hmac.new(identity_key, content, hashlib.sha256).hexdigest()[:32]


def env_value(value):
    """An environment value as the agent reads it (YAML booleans become true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def check_env(env, option):
    result = {}
    for name, value in (env or {}).items():
        if not ENV_NAME_RE.match(str(name)):
            raise SpecError("option %s: %r is not a valid environment variable name" % (option, name))
        if name in RESERVED_ENV:
            raise SpecError(
                "option %s may not set %s: the module sets it from its own options" % (option, name)
            )
        result[str(name)] = env_value(value)
    return result


def check_healthcheck(spec):
    """Validate the O(healthcheck) option's timings."""
    if not spec:
        return None
    values = dict(HEALTHCHECK_DEFAULTS)
    for key in HEALTHCHECK_DEFAULTS:
        if spec.get(key) is not None:
            values[key] = spec[key]
    if values["interval"] < 1 or values["timeout"] < 1 or values["retries"] < 1 or values["start_period"] < 0:
        raise SpecError("option healthcheck: interval, timeout and retries must be at least 1, start_period >= 0")
    values["test"] = list(spec.get("test") or [])
    return values


def healthcheck_settings(spec, image_healthcheck=None):
    """The O(healthcheck) option as comparable settings (seconds), or None.

    Without ``test``, the command of the image's HEALTHCHECK (``image_healthcheck``, comparable
    settings) is kept with the option's timings; None when the image has none either.
    """
    values = check_healthcheck(spec)
    if values is None:
        return image_healthcheck
    if values["test"]:
        test = ["CMD"] + values["test"]
    elif image_healthcheck:
        test = list(image_healthcheck["test"])
    else:
        return None
    return {
        "test": test,
        "interval": float(values["interval"]),
        "timeout": float(values["timeout"]),
        "retries": int(values["retries"]),
        "start_period": float(values["start_period"]),
    }


def healthcheck_from_engine(config):
    """A Docker ``Healthcheck`` object (nanoseconds) as comparable settings, or None when absent."""
    if not config or not config.get("Test") or config.get("Test") == ["NONE"]:
        return None

    def seconds(key, default=0):
        value = config.get(key) or default
        return float(value) / NANOSECONDS

    return {
        "test": list(config["Test"]),
        "interval": seconds("Interval", 30 * NANOSECONDS),
        "timeout": seconds("Timeout", 30 * NANOSECONDS),
        "retries": int(config.get("Retries") or 3),
        "start_period": seconds("StartPeriod"),
    }


def healthcheck_to_engine(settings):
    """Comparable healthcheck settings as the engine's create argument (nanoseconds)."""
    return {
        "test": list(settings["test"]),
        "interval": int(settings["interval"] * NANOSECONDS),
        "timeout": int(settings["timeout"] * NANOSECONDS),
        "retries": int(settings["retries"]),
        "start_period": int(settings["start_period"] * NANOSECONDS),
    }


def env_list_to_dict(env_list):
    result = {}
    for item in env_list or []:
        name, sep, value = item.partition("=")
        result[name] = value if sep else ""
    return result


def managed_env(env, image_env):
    """The variables of ``env`` that the image does not already set to the same value."""
    return dict((k, v) for k, v in env.items() if image_env.get(k) != v)


def mount_text(source, target, read_only):
    return "%s:%s:%s" % (source, target, "ro" if read_only else "rw")


# ----------------------------------------------------------------------------- settings


class CheckpointSpec:
    """The validated module options of ``state=present`` (everything but the engine's answers)."""

    def __init__(self, params):
        self.checkpoint = params["checkpoint"]
        if not NAME_RE.match(self.checkpoint):
            raise SpecError(
                "option checkpoint must be lower-case letters, digits and '-' (at most 63, not starting with '-'), "
                "got %r" % self.checkpoint
            )
        self.network = params.get("network") or default_network(self.checkpoint)
        if self.network in BUILTIN_NETWORKS or self.network.startswith("container:"):
            raise SpecError(
                "option network must name a dedicated network of the checkpoint, not %r" % self.network
            )
        self.state = params.get("state") or "present"
        self.instances = []
        if self.state == "absent":
            return
        missing = [key for key in ("image", "control_plane_url", "trusted_keys", "instances") if not params.get(key)]
        if missing:
            raise SpecError("state is present but the following are missing: %s" % ", ".join(missing))
        self.image = ImageRef(params["image"])
        self.control_plane_url = params["control_plane_url"]
        if not re.match(r"^https?://[^/\s]+", self.control_plane_url):
            raise SpecError("option control_plane_url must be an https:// (or http://) URL, got %r" % self.control_plane_url)
        self.trusted_keys = params["trusted_keys"]
        self.ca_bundle = params.get("ca_bundle")
        self.credentials_file = params.get("credentials_file")
        #: instance name -> credentials_revision(); filled by the caller, which can read the host files
        self.credentials_revisions = {}
        self.env = check_env(params.get("env"), "env")
        self.user = params.get("user") or "10001:10001"
        if self.user.split(":", 1)[0] in ("0", "root"):
            raise SpecError("option user must not be root: the agent runs unprivileged")
        self.memory = parse_memory(params.get("memory") or "256m")
        cpus = params.get("cpus")
        if cpus is None or cpus <= 0:
            raise SpecError("option cpus must be a positive number, got %r" % cpus)
        self.nano_cpus = int(round(cpus * NANOSECONDS))
        self.pids_limit = params.get("pids_limit")
        if self.pids_limit is None or self.pids_limit < 16:
            raise SpecError("option pids_limit must be at least 16, got %r" % self.pids_limit)
        self.extra_hosts = check_extra_hosts(params.get("extra_hosts"))
        self.restart_policy = params.get("restart_policy") or "unless-stopped"
        self.log_max_size = str(params.get("log_max_size") or "10m").lower()
        if not LOG_SIZE_RE.match(self.log_max_size):
            raise SpecError("option log_max_size must be a size such as 10m, got %r" % params.get("log_max_size"))
        self.log_max_file = params.get("log_max_file")
        if self.log_max_file is None or self.log_max_file < 1:
            raise SpecError("option log_max_file must be at least 1")
        self.stop_timeout = params.get("stop_timeout")
        self.healthcheck_option = params.get("healthcheck")
        check_healthcheck(self.healthcheck_option)
        seen = set()
        for item in params["instances"]:
            name = item["name"]
            if not NAME_RE.match(name):
                raise SpecError(
                    "option instances: name must be lower-case letters, digits and '-' (at most 63), got %r" % name
                )
            if name in seen:
                raise SpecError("option instances: instance %r is listed twice" % name)
            if name.endswith(PREVIOUS_SUFFIX):
                raise SpecError("option instances: instance names may not end with %r" % PREVIOUS_SUFFIX)
            seen.add(name)
            self.instances.append(
                {
                    "name": name,
                    "identity_key": item["identity_key"],
                    "state_dir": item["state_dir"],
                    "env": check_env(item.get("env"), "instances[%s].env" % name),
                }
            )

    def host_files(self):
        """``(option, path, kind)`` of every host path that is mounted (kind: file or directory)."""
        result = [("trusted_keys", self.trusted_keys, "file")]
        if self.ca_bundle:
            result.append(("ca_bundle", self.ca_bundle, "file"))
        if self.credentials_file:
            result.append(("credentials_file", self.credentials_file, "file"))
        for item in self.instances:
            result.append(("instances[%s].identity_key" % item["name"], item["identity_key"], "file"))
            result.append(("instances[%s].state_dir" % item["name"], item["state_dir"], "directory"))
        return result

    def environment(self, instance):
        env = dict(self.env)
        env.update(instance["env"])
        env.update(
            {
                "VANTAGE_CONTROL_PLANE_URL": self.control_plane_url,
                "VANTAGE_CHECKPOINT": self.checkpoint,
                "VANTAGE_INSTANCE": instance["name"],
                "VANTAGE_IDENTITY_KEY": IDENTITY_KEY_PATH,
                "VANTAGE_TRUSTED_KEYS": TRUSTED_KEYS_PATH,
                "VANTAGE_STATE_DIR": STATE_DIR_PATH,
                "VANTAGE_IMAGE_DIGEST": self.image.digest,
            }
        )
        if self.ca_bundle:
            env["VANTAGE_CA_BUNDLE"] = CA_BUNDLE_PATH
        if self.credentials_file:
            env["VANTAGE_CREDENTIALS_FILE"] = CREDENTIALS_PATH
            revision = self.credentials_revisions.get(instance["name"])
            if revision:
                env[CREDENTIALS_REVISION_ENV] = revision
        return env

    def mounts(self, instance):
        """``(source, target, read_only)`` of the instance's bind mounts."""
        result = [
            (instance["identity_key"], IDENTITY_KEY_PATH, True),
            (self.trusted_keys, TRUSTED_KEYS_PATH, True),
            (instance["state_dir"], STATE_DIR_PATH, False),
        ]
        if self.ca_bundle:
            result.append((self.ca_bundle, CA_BUNDLE_PATH, True))
        if self.credentials_file:
            result.append((self.credentials_file, CREDENTIALS_PATH, True))
        return result

    def desired_settings(self, instance, image_id, image_config):
        """The comparable settings of ``instance``'s container.

        ``image_id`` and ``image_config`` (the image's ``Config``) come from the engine; in check
        mode, for an image still to be pulled, they are the reference and None.
        """
        image_config = image_config or {}
        image_env = env_list_to_dict(image_config.get("Env"))
        healthcheck = healthcheck_settings(
            self.healthcheck_option, healthcheck_from_engine(image_config.get("Healthcheck"))
        )
        settings = {
            "image": image_id,
            "user": self.user,
            "env": managed_env(self.environment(instance), image_env),
            "mounts": sorted(mount_text(*mount) for mount in self.mounts(instance)),
            "network": self.network,
            "published_ports": [],
            "memory": self.memory,
            "memory_swap": self.memory,
            "nano_cpus": self.nano_cpus,
            "pids_limit": self.pids_limit,
            "extra_hosts": self.extra_hosts,
            "restart_policy": self.restart_policy,
            "log_config": {"type": "json-file", "max-size": self.log_max_size, "max-file": str(self.log_max_file)},
            "read_only": True,
            "tmpfs": dict(TMPFS),
            "cap_drop": ["ALL"],
            "cap_add": [],
            "security_opt": list(SECURITY_OPT),
            "privileged": False,
            "init": True,
            "stop_timeout": self.stop_timeout,
            "healthcheck": healthcheck,
        }
        return settings


HOST_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def check_extra_hosts(value):
    """``extra_hosts`` as Docker's sorted ``name:address`` list; SpecError naming a bad entry."""
    result = []
    for name, address in sorted((value or {}).items()):
        if not HOST_NAME_RE.match(str(name)):
            raise SpecError("option extra_hosts: %r is not a host name" % (name,))
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            raise SpecError("option extra_hosts: the address of %s must be an IP address, got %r" % (name, address))
        result.append("%s:%s" % (name, address))
    return result


def config_hash(settings):
    """The fingerprint recorded in the ``io.vantage.config-hash`` label."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _security_opt(values):
    result = []
    for value in values or []:
        result.append("no-new-privileges:true" if value in ("no-new-privileges", "no-new-privileges=true") else value)
    return sorted(result)


def _caps(values):
    result = []
    for value in values or []:
        value = value.upper()
        result.append(value[4:] if value.startswith("CAP_") else value)
    return sorted(result)


def observed_settings(container, image_config):
    """The comparable settings of an existing container, from ``docker inspect`` (``container``).

    ``image_config`` is the ``Config`` of the image the container runs (its environment is not
    part of what the module set), or None when the engine no longer has it.
    """
    config = container.get("Config") or {}
    host = container.get("HostConfig") or {}
    image_env = env_list_to_dict((image_config or {}).get("Env"))
    mounts = []
    for mount in host.get("Mounts") or []:
        mounts.append(mount_text(mount.get("Source"), mount.get("Target"), bool(mount.get("ReadOnly"))))
    for bind in host.get("Binds") or []:
        parts = bind.split(":")
        mounts.append(mount_text(parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    ports = []
    for port, bindings in (host.get("PortBindings") or {}).items():
        if bindings:
            ports.append(port)
    if host.get("PublishAllPorts"):
        ports.append("all")
    log_config = host.get("LogConfig") or {}
    restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    return {
        "image": container.get("Image"),
        "user": config.get("User") or "",
        "env": managed_env(env_list_to_dict(config.get("Env")), image_env),
        "mounts": sorted(mounts),
        "network": host.get("NetworkMode"),
        "published_ports": sorted(ports),
        "memory": host.get("Memory") or 0,
        "memory_swap": host.get("MemorySwap") or 0,
        "nano_cpus": host.get("NanoCpus") or 0,
        "pids_limit": host.get("PidsLimit") or 0,
        "extra_hosts": sorted(host.get("ExtraHosts") or []),
        "restart_policy": restart,
        "log_config": dict({"type": log_config.get("Type")}, **(log_config.get("Config") or {})),
        "read_only": bool(host.get("ReadonlyRootfs")),
        "tmpfs": dict(host.get("Tmpfs") or {}),
        "cap_drop": _caps(host.get("CapDrop")),
        "cap_add": _caps(host.get("CapAdd")),
        "security_opt": _security_opt(host.get("SecurityOpt")),
        "privileged": bool(host.get("Privileged")),
        "init": bool(host.get("Init")),
        "stop_timeout": config.get("StopTimeout"),
        "healthcheck": healthcheck_from_engine(config.get("Healthcheck")),
    }


def differences(before, after):
    """The setting names whose values differ, sorted."""
    keys = set(before or {}) | set(after or {})
    return sorted(key for key in keys if (before or {}).get(key) != (after or {}).get(key))


def mask_value(name, value):
    if SENSITIVE_NAME_RE.search(name):
        return "********"
    return URL_USERINFO_RE.sub("********@", value)


def display_settings(settings):
    """``settings`` safe to show in a diff: sensitive-looking environment values masked."""
    if settings is None:
        return None
    shown = dict(settings)
    shown["env"] = dict((k, mask_value(k, v)) for k, v in sorted((settings.get("env") or {}).items()))
    return shown
