# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The option model of ``checkpoint_container`` and the settings of an instance container.

``checkpoint_container`` compares, for each instance, a flat dictionary of *settings* built from
the module's options (:meth:`CheckpointSpec.desired_settings`) with the same dictionary read back
from ``docker inspect`` (:func:`observed_settings`). Both use the same units (bytes, seconds,
sorted lists), so equality means "nothing to do", :func:`config_hash` of them is the fingerprint
label, and the two dictionaries are the C(diff) before/after (after :func:`display_settings` has
masked sensitive environment values). :func:`replacement_settings` derives, from a running
container, the settings of the same container on another image: the update engine of the
``vantage`` package replaces instances with it, so that the module then finds nothing to change.

Nothing here imports the Docker SDK or Ansible: it is plain data handling, unit-tested on its
own, and carried unchanged inside the ``vantage`` package (see docs/auto-update.md). Names, the
control-plane URL policy and the container defaults come from ``_contract``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ._contract import CONTAINER_DEFAULTS, ContractError, check, control_plane_url, default_network, is_valid

Settings = Dict[str, Any]
#: what every instance gets unless the options say otherwise (the contract's values)
DEFAULTS = CONTAINER_DEFAULTS  # type: Dict[str, Any]
#: a bind mount: (host path, path in the container, read-only)
MountSpec = Tuple[str, str, bool]

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
#: Windows bind mounts are directories: a Windows instance mounts its configuration directory (its key and
#: the files beside it) and its state directory here (``_windows_container``); the image's own case
WINDOWS_CONFIG_DIR = "C:\\vantage\\config"
WINDOWS_STATE_DIR = "C:\\vantage\\state"
IMAGE_DIGEST_ENV = "VANTAGE_IMAGE_DIGEST"
#: the name of the host the instance runs on, for the agent's host facts (docs/agent.md); the
#: module sets it to the engine's ``docker info`` name unless O(env) or an instance's env sets it
HOST_NAME_ENV = "VANTAGE_HOST_NAME"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
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
    IMAGE_DIGEST_ENV,
    "VANTAGE_CONFIG",
)

NANOSECONDS = 1000000000
#: the timings of the O(healthcheck) option when not given: the image's own HEALTHCHECK timings
HEALTHCHECK_DEFAULTS = dict(interval=DEFAULTS["healthcheck_interval"], timeout=10, retries=3, start_period=30)
RESTART_POLICIES = ["no", "on-failure", "always", "unless-stopped"]
#: the settings an engine whose kernel does not enforce a limit drops (see :func:`mask_unenforced`)
UNENFORCEABLE = {"memory": ("memory", "memory_swap"), "swap": ("memory_swap",), "pids": ("pids_limit",)}


class SpecError(ValueError):
    """An option value the module refuses; the message names the option."""


# ----------------------------------------------------------------------------- the options


def argument_spec():
    # type: () -> Dict[str, Any]
    """The options of ``checkpoint_container``; the defaults that are the contract's come from it."""
    return dict(
        checkpoint=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        instances=dict(
            type="list",
            elements="dict",
            options=dict(
                name=dict(type="str", required=True),
                identity_key=dict(type="path", required=True),
                state_dir=dict(type="path", required=True),
                env=dict(type="dict"),
            ),
        ),
        image=dict(type="str"),
        control_plane_url=dict(type="str"),
        trusted_keys=dict(type="path"),
        ca_bundle=dict(type="path"),
        credentials_file=dict(type="path"),
        env=dict(type="dict"),
        network=dict(type="str"),
        user=dict(type="str", default=DEFAULTS["user"]),
        memory=dict(type="str", default=DEFAULTS["memory"]),
        cpus=dict(type="float", default=DEFAULTS["cpus"]),
        pids_limit=dict(type="int", default=DEFAULTS["pids_limit"]),
        extra_hosts=dict(type="dict", default={}),
        restart_policy=dict(type="str", default="unless-stopped", choices=RESTART_POLICIES),
        log_max_size=dict(type="str", default="10m"),
        log_max_file=dict(type="int", default=3),
        stop_timeout=dict(type="int", default=15),
        health_timeout=dict(type="int", default=DEFAULTS["health_timeout"]),
        healthcheck=dict(
            type="dict",
            options=dict(
                test=dict(type="list", elements="str"),
                interval=dict(type="int", default=HEALTHCHECK_DEFAULTS["interval"]),
                timeout=dict(type="int", default=HEALTHCHECK_DEFAULTS["timeout"]),
                retries=dict(type="int", default=HEALTHCHECK_DEFAULTS["retries"]),
                start_period=dict(type="int", default=HEALTHCHECK_DEFAULTS["start_period"]),
            ),
        ),
        docker_host=dict(type="str"),
        api_timeout=dict(type="int", default=60),
    )


#: options that state=present needs
REQUIRED_IF_PRESENT = ("instances", "image", "control_plane_url", "trusted_keys")


# ----------------------------------------------------------------------------- option values


class ImageRef:
    """An image option value: ``repository@sha256:<digest>`` or a local image id ``sha256:<id>``."""

    def __init__(self, text):
        # type: (str) -> None
        self.text = text
        self.local_id = None  # type: Optional[str]
        self.repository = None  # type: Optional[str]
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
        # type: () -> str
        """What the engine resolves: the local id, or ``repository@digest``."""
        return self.local_id or "%s@%s" % (self.repository, self.digest)

    @property
    def pullable(self):
        # type: () -> bool
        return self.local_id is None


def parse_memory(value, option="memory"):
    # type: (Any, str) -> int
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
    # type: (bytes, bytes) -> str
    """The fingerprint of a credentials file's ``content`` (bytes) for one instance.

    HMAC-SHA256 keyed with the instance's identity key (bytes of its file), so that the value, which
    ``docker inspect`` and the module's diff show, tells nothing about the secrets - a plain hash of
    a file holding one weak password could be guessed offline.
    """
    return hmac.new(identity_key, content, hashlib.sha256).hexdigest()[:32]


def env_value(value):
    # type: (Any) -> str
    """An environment value as the agent reads it (YAML booleans become true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def check_env(env, option):
    # type: (Optional[Dict[str, Any]], str) -> Dict[str, str]
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


def engine_host_name(name):
    # type: (Any) -> Optional[str]
    """The engine's host name (``docker info`` ``Name``) when it is a valid ``host_name``, else None
    (the agent then reports its container's own host name, never an invalid value it would refuse)."""
    return name if is_valid("host_name", name) else None


def check_host_name_env(env, option):
    # type: (Dict[str, str], str) -> None
    """A ``VANTAGE_HOST_NAME`` given in ``env`` must follow the contract's ``host_name`` rule."""
    if HOST_NAME_ENV in env:
        _contract_value(check, "host_name", env[HOST_NAME_ENV], "option %s: %s" % (option, HOST_NAME_ENV))


def check_healthcheck(spec):
    # type: (Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]
    """The O(healthcheck) option with its timings filled in, or None when not set."""
    if not spec:
        return None
    values = dict(HEALTHCHECK_DEFAULTS)  # type: Dict[str, Any]
    for key in HEALTHCHECK_DEFAULTS:
        if spec.get(key) is not None:
            values[key] = spec[key]
    if values["interval"] < 1 or values["timeout"] < 1 or values["retries"] < 1 or values["start_period"] < 0:
        raise SpecError("option healthcheck: interval, timeout and retries must be at least 1, start_period >= 0")
    values["test"] = list(spec.get("test") or [])
    return values


def healthcheck_settings(option, image_healthcheck=None):
    # type: (Optional[Dict[str, Any]], Optional[Settings]) -> Optional[Settings]
    """The O(healthcheck) option as comparable settings (seconds).

    Without ``test``, the command of the image's HEALTHCHECK (``image_healthcheck``, comparable
    settings) is kept with the option's timings; None when the image has none either. Without the
    option, the image's own.
    """
    option = check_healthcheck(option)
    if option is None:
        return image_healthcheck
    if option["test"]:
        test = ["CMD"] + option["test"]
    elif image_healthcheck:
        test = list(image_healthcheck["test"])
    else:
        return None
    return {
        "test": test,
        "interval": float(option["interval"]),
        "timeout": float(option["timeout"]),
        "retries": int(option["retries"]),
        "start_period": float(option["start_period"]),
    }


def healthcheck_from_engine(config):
    # type: (Optional[Dict[str, Any]]) -> Optional[Settings]
    """A Docker ``Healthcheck`` object (nanoseconds) as comparable settings, or None when absent."""
    if not config or not config.get("Test") or config.get("Test") == ["NONE"]:
        return None

    def seconds(key, default=0):
        # type: (str, int) -> float
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
    # type: (Settings) -> Dict[str, Any]
    """Comparable healthcheck settings as the engine's create argument (nanoseconds)."""
    return {
        "test": list(settings["test"]),
        "interval": int(settings["interval"] * NANOSECONDS),
        "timeout": int(settings["timeout"] * NANOSECONDS),
        "retries": int(settings["retries"]),
        "start_period": int(settings["start_period"] * NANOSECONDS),
    }


def env_list_to_dict(env_list):
    # type: (Optional[List[str]]) -> Dict[str, str]
    result = {}
    for item in env_list or []:
        name, sep, value = item.partition("=")
        result[name] = value if sep else ""
    return result


def managed_env(env, image_env):
    # type: (Dict[str, str], Dict[str, str]) -> Dict[str, str]
    """The variables of ``env`` that the image does not already set to the same value."""
    return dict((k, v) for k, v in env.items() if image_env.get(k) != v)


def mount_text(source, target, read_only):
    # type: (str, str, bool) -> str
    return "%s:%s:%s" % (source, target, "ro" if read_only else "rw")


HOST_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def check_extra_hosts(value):
    # type: (Optional[Dict[str, Any]]) -> List[str]
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


def _given(params, key, default):
    # type: (Dict[str, Any], str, Any) -> Any
    """``params[key]`` unless missing or None (0 is a value)."""
    value = params.get(key)
    return default if value is None else value


def _contract_value(rule_check, *args):
    # type: (Any, Any) -> Any
    """A ``_contract`` check whose ContractError becomes the module's SpecError (same sentence)."""
    try:
        return rule_check(*args)
    except ContractError as exc:
        raise SpecError(str(exc))


# ----------------------------------------------------------------------------- the option model


class CheckpointSpec:
    """The validated options of ``checkpoint_container``: the one place the manager reads them.

    Built whole for both states; with ``state=absent`` only the checkpoint, the network and the
    engine options matter and the rest stays empty (None, empty lists).
    """

    def __init__(self, params):
        # type: (Dict[str, Any]) -> None
        self.checkpoint = _contract_value(check, "name", params["checkpoint"], "option checkpoint")  # type: str
        self.state = params.get("state") or "present"  # type: str
        self.network = str(params.get("network") or default_network(self.checkpoint))
        if self.network in BUILTIN_NETWORKS or self.network.startswith("container:"):
            raise SpecError(
                "option network must name a dedicated network of the checkpoint, not %r" % self.network
            )
        self.docker_host = params.get("docker_host") or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST  # type: str
        self.local_files = self.docker_host.startswith("unix://")
        self.api_timeout = int(_given(params, "api_timeout", 60))
        self.stop_timeout = int(_given(params, "stop_timeout", 15))
        self.health_timeout = int(_given(params, "health_timeout", DEFAULTS["health_timeout"]))
        self.instances = []  # type: List[Dict[str, Any]]
        self.image = None  # type: Optional[ImageRef]
        self.control_plane_url = None  # type: Optional[str]
        self.trusted_keys = None  # type: Optional[str]
        self.ca_bundle = params.get("ca_bundle")  # type: Optional[str]
        self.credentials_file = params.get("credentials_file")  # type: Optional[str]
        #: instance name -> credentials_revision(); filled by the manager, which can read the host files
        self.credentials_revisions = {}  # type: Dict[str, str]
        #: the engine's host name (:func:`engine_host_name`), set by the module once it reached the engine
        self.host_name = None  # type: Optional[str]
        if self.state == "absent":
            return
        missing = [key for key in REQUIRED_IF_PRESENT if not params.get(key)]
        if missing:
            raise SpecError("state is present but the following are missing: %s" % ", ".join(missing))
        # refused before anything else, so that no container changes on a bad URL
        self.control_plane_url = _contract_value(control_plane_url, params["control_plane_url"], "option control_plane_url")
        self.image = ImageRef(params["image"])
        self.trusted_keys = params["trusted_keys"]
        self.env = check_env(params.get("env"), "env")
        check_host_name_env(self.env, "env")
        self.user = str(params.get("user") or DEFAULTS["user"])
        if self.user.split(":", 1)[0] in ("0", "root"):
            raise SpecError("option user must not be root: the agent runs unprivileged")
        self.memory = parse_memory(params.get("memory") or DEFAULTS["memory"])
        cpus = params.get("cpus")
        if cpus is None or cpus <= 0:
            raise SpecError("option cpus must be a positive number, got %r" % cpus)
        self.nano_cpus = int(round(cpus * NANOSECONDS))
        pids_limit = params.get("pids_limit")
        if pids_limit is None or pids_limit < 16:
            raise SpecError("option pids_limit must be at least 16, got %r" % pids_limit)
        self.pids_limit = int(pids_limit)
        self.extra_hosts = check_extra_hosts(params.get("extra_hosts"))
        self.restart_policy = params.get("restart_policy") or "unless-stopped"  # type: str
        self.log_max_size = str(params.get("log_max_size") or "10m").lower()
        if not LOG_SIZE_RE.match(self.log_max_size):
            raise SpecError("option log_max_size must be a size such as 10m, got %r" % params.get("log_max_size"))
        log_max_file = params.get("log_max_file")
        if log_max_file is None or log_max_file < 1:
            raise SpecError("option log_max_file must be at least 1")
        self.log_max_file = int(log_max_file)
        self.healthcheck = check_healthcheck(params.get("healthcheck"))
        seen = set()  # type: set[str]
        for item in params["instances"]:
            name = _contract_value(check, "name", item["name"], "option instances[].name")
            if name in seen:
                raise SpecError("option instances: instance %r is listed twice" % name)
            if name.endswith(PREVIOUS_SUFFIX):
                raise SpecError("option instances: instance names may not end with %r" % PREVIOUS_SUFFIX)
            seen.add(name)
            env = check_env(item.get("env"), "instances[%s].env" % name)
            check_host_name_env(env, "instances[%s].env" % name)
            self.instances.append(
                {
                    "name": name,
                    "identity_key": item["identity_key"],
                    "state_dir": item["state_dir"],
                    "env": env,
                }
            )

    def host_files(self):
        # type: () -> List[Tuple[str, str, str]]
        """``(option, path, kind)`` of every host path that is mounted (kind: file or directory)."""
        result = [("trusted_keys", str(self.trusted_keys), "file")]
        if self.ca_bundle:
            result.append(("ca_bundle", self.ca_bundle, "file"))
        if self.credentials_file:
            result.append(("credentials_file", self.credentials_file, "file"))
        for item in self.instances:
            result.append(("instances[%s].identity_key" % item["name"], item["identity_key"], "file"))
            result.append(("instances[%s].state_dir" % item["name"], item["state_dir"], "directory"))
        return result

    def environment(self, instance):
        # type: (Dict[str, Any]) -> Dict[str, str]
        if self.image is None or self.control_plane_url is None:
            raise SpecError("the containers of checkpoint %s are only defined with state=present" % self.checkpoint)
        env = {HOST_NAME_ENV: self.host_name} if self.host_name else {}
        env.update(self.env)
        env.update(instance["env"])
        env.update(
            {
                "VANTAGE_CONTROL_PLANE_URL": self.control_plane_url,
                "VANTAGE_CHECKPOINT": self.checkpoint,
                "VANTAGE_INSTANCE": instance["name"],
                "VANTAGE_IDENTITY_KEY": IDENTITY_KEY_PATH,
                "VANTAGE_TRUSTED_KEYS": TRUSTED_KEYS_PATH,
                "VANTAGE_STATE_DIR": STATE_DIR_PATH,
                IMAGE_DIGEST_ENV: self.image.digest,
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
        # type: (Dict[str, Any]) -> List[MountSpec]
        """``(source, target, read_only)`` of the instance's bind mounts."""
        result = [
            (instance["identity_key"], IDENTITY_KEY_PATH, True),
            (str(self.trusted_keys), TRUSTED_KEYS_PATH, True),
            (instance["state_dir"], STATE_DIR_PATH, False),
        ]
        if self.ca_bundle:
            result.append((self.ca_bundle, CA_BUNDLE_PATH, True))
        if self.credentials_file:
            result.append((self.credentials_file, CREDENTIALS_PATH, True))
        return result

    def desired_settings(self, instance, image_id, image_config):
        # type: (Dict[str, Any], str, Optional[Dict[str, Any]]) -> Settings
        """The comparable settings of ``instance``'s container.

        ``image_id`` and ``image_config`` (the image's ``Config``) come from the engine; in check
        mode, for an image still to be pulled, they are the reference and None.
        """
        image_config = image_config or {}
        image_env = env_list_to_dict(image_config.get("Env"))
        healthcheck = healthcheck_settings(self.healthcheck, healthcheck_from_engine(image_config.get("Healthcheck")))
        return {
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


# ----------------------------------------------------------------------------- settings


def config_hash(settings):
    # type: (Settings) -> str
    """The fingerprint recorded in the ``io.vantage.config-hash`` label."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mask_unenforced(settings, limits):
    # type: (Settings, Dict[str, bool]) -> Settings
    """``settings`` with the limits the engine's kernel does not enforce set to None.

    ``limits`` is the engine's answer (``{"memory": bool, "swap": bool, "pids": bool}``). The
    engine silently drops such a limit, so it is neither asked for nor compared nor fingerprinted.
    """
    masked = dict(settings)
    for limit, keys in UNENFORCEABLE.items():
        if not limits.get(limit, True):
            for key in keys:
                masked[key] = None
    return masked


def instance_labels(checkpoint, instance, settings):
    # type: (str, str, Settings) -> Dict[str, str]
    """The labels of an instance container: its checkpoint, its instance and :func:`config_hash`."""
    return {LABEL_CHECKPOINT: checkpoint, LABEL_INSTANCE: instance, LABEL_CONFIG_HASH: config_hash(settings)}


def _security_opt(values):
    # type: (Optional[List[str]]) -> List[str]
    result = []
    for value in values or []:
        result.append("no-new-privileges:true" if value in ("no-new-privileges", "no-new-privileges=true") else value)
    return sorted(result)


def _caps(values):
    # type: (Optional[List[str]]) -> List[str]
    result = []
    for value in values or []:
        value = value.upper()
        result.append(value[4:] if value.startswith("CAP_") else value)
    return sorted(result)


def observed_mounts(container):
    # type: (Dict[str, Any]) -> List[MountSpec]
    """The bind mounts of an inspected container as ``(source, target, read_only)``."""
    host = container.get("HostConfig") or {}
    mounts = []
    for mount in host.get("Mounts") or []:
        mounts.append((mount.get("Source"), mount.get("Target"), bool(mount.get("ReadOnly"))))
    for bind in host.get("Binds") or []:
        parts = bind.split(":")
        mounts.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return mounts


def observed_settings(container, image_config):
    # type: (Dict[str, Any], Optional[Dict[str, Any]]) -> Settings
    """The comparable settings of an existing container, from ``docker inspect`` (``container``).

    ``image_config`` is the ``Config`` of the image the container runs (its environment is not
    part of what the module set), or None when the engine no longer has it.
    """
    config = container.get("Config") or {}
    host = container.get("HostConfig") or {}
    image_env = env_list_to_dict((image_config or {}).get("Env"))
    ports = []
    for port, bindings in (host.get("PortBindings") or {}).items():
        if bindings:
            ports.append(port)
    if host.get("PublishAllPorts"):
        ports.append("all")
    log_config = host.get("LogConfig") or {}
    restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    settings = {
        "image": container.get("Image"),
        "user": config.get("User") or "",
        "env": managed_env(env_list_to_dict(config.get("Env")), image_env),
        "mounts": sorted(mount_text(*mount) for mount in observed_mounts(container)),
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
    # Windows containers only (process or hyperv); Linux reports "" and has no such setting
    isolation = host.get("Isolation")
    if isolation and isolation != "default":
        settings["isolation"] = isolation
    return settings


def image_digest_of(container):
    # type: (Optional[Dict[str, Any]]) -> Optional[str]
    """The digest an instance container was given (``VANTAGE_IMAGE_DIGEST``), or None."""
    env = env_list_to_dict(((container or {}).get("Config") or {}).get("Env"))
    return env.get(IMAGE_DIGEST_ENV)


def replacement_settings(container, old_image_config, new_image, digest):
    # type: (Dict[str, Any], Optional[Dict[str, Any]], Dict[str, Any], str) -> Tuple[Settings, Dict[str, str]]
    """The settings of ``container`` (an inspect) moved to ``new_image`` (an image inspect).

    Everything stays as the container has it - user, mounts, network, limits, hardening, log
    settings, stop timeout, the variables the module set - except the image, the
    ``VANTAGE_IMAGE_DIGEST`` variable (``digest``) and, when the container used its image's
    healthcheck command, the new image's command (with the container's timings). Returns the
    settings and the full environment to create the new container with; the settings are those
    :meth:`CheckpointSpec.desired_settings` computes for the same options and the new image.
    """
    old = observed_settings(container, old_image_config)
    new_config = new_image.get("Config") or {}
    environment = dict(old["env"])
    environment[IMAGE_DIGEST_ENV] = digest
    healthcheck = old["healthcheck"]
    old_test = healthcheck_from_engine((old_image_config or {}).get("Healthcheck"))
    new_test = healthcheck_from_engine(new_config.get("Healthcheck"))
    if healthcheck is not None and old_test is not None and healthcheck["test"] == old_test["test"]:
        healthcheck = dict(healthcheck, test=list(new_test["test"])) if new_test else None
    settings = dict(old)
    settings["image"] = new_image["Id"]
    settings["env"] = managed_env(environment, env_list_to_dict(new_config.get("Env")))
    settings["healthcheck"] = healthcheck
    return settings, environment


def differences(before, after):
    # type: (Optional[Settings], Optional[Settings]) -> List[str]
    """The setting names whose values differ, sorted."""
    keys = set(before or {}) | set(after or {})
    return sorted(key for key in keys if (before or {}).get(key) != (after or {}).get(key))


def mask_value(name, value):
    # type: (str, str) -> str
    if SENSITIVE_NAME_RE.search(name):
        return "********"
    return URL_USERINFO_RE.sub("********@", value)


def display_settings(settings):
    # type: (Optional[Settings]) -> Optional[Settings]
    """``settings`` safe to show in a diff: sensitive-looking environment values masked."""
    if settings is None:
        return None
    shown = dict(settings)
    shown["env"] = dict((k, mask_value(k, v)) for k, v in sorted((settings.get("env") or {}).items()))
    return shown
