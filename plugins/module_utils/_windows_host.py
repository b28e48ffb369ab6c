# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a Windows Server checkpoint host is, and what the roles do to it: decided on the controller.

The collection cannot run Windows here, so every decision about a Windows host is made in Python
from what the host reports (``ansible_facts`` of ``ansible.windows.setup`` and the read-only
``win_docker_engine_facts`` module): which Windows Server release it is, whether the role may
touch it at all, which engine it gets and how the engine is configured, whether a reboot is
needed and allowed, and which checkpoint image matches it. The PowerShell on the host only
applies what is decided here, and docs/windows.md lists what was executed where.

Every function raises :class:`WindowsHostError` listing *all* the reasons at once, each one
naming the variable or fact to fix; nothing on the host has been changed when that happens.
"""

from __future__ import annotations

import ntpath
import re

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.vantage.checkpoint.plugins.module_utils import _contract

#: Windows Server long-term servicing channel releases a checkpoint host may run, by OS build.
#: A process-isolated Windows container must be built for its host's build, so the LTSC name is
#: also the tag suffix of the checkpoint image built for it (images/checkpoint/Dockerfile.windows).
LTSC_BY_BUILD = {
    17763: {"ltsc": "ltsc2019", "release": "Windows Server 2019"},
    20348: {"ltsc": "ltsc2022", "release": "Windows Server 2022"},
    26100: {"ltsc": "ltsc2025", "release": "Windows Server 2025"},
}
BUILD_BY_LTSC = dict((info["ltsc"], build) for build, info in LTSC_BY_BUILD.items())
KNOWN_OTHER_BUILDS = {
    14393: "Windows Server 2016",
    25398: "Windows Server, version 23H2 (annual channel)",
}
SUPPORTED_ARCHITECTURES = ("x86_64",)

ENGINE_SOURCES = ("static", "preinstalled")
ENGINE_SERVICE = "docker"
PIPE_NAME = "docker_engine"
PIPE_ADDRESS = "npipe:////./pipe/" + PIPE_NAME
PIPE_PATH = "\\\\.\\pipe\\" + PIPE_NAME
DEFAULT_ENGINE_URL = "https://download.docker.com/win/static/stable/x86_64/docker-{version}.zip"

# daemon.json keys that exist only on Linux: dockerd on Windows refuses to start with them, so a
# typo in docker_host_daemon_options would leave the host without an engine.
LINUX_ONLY_DAEMON_KEYS = (
    "live-restore", "no-new-privileges", "userland-proxy", "userns-remap", "selinux-enabled",
    "seccomp-profile", "cgroup-parent", "default-ulimits", "icc", "iptables", "ip6tables",
    "ip-forward", "ip-masq", "default-runtime", "runtimes", "oom-score-adjust", "init",
    "default-cgroupns-mode", "cgroupdriver",
)
# Keys the role owns: set them through their variables, never through docker_host_daemon_options.
ROLE_DAEMON_KEYS = ("hosts", "group", "exec-opts")
TLS_DAEMON_KEYS = ("tls", "tlsverify", "tlscacert", "tlscert", "tlskey")

_VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}(-[0-9A-Za-z.]{1,32})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:\\[^<>\"|?*\r\n]*")
# Local group or DOMAIN\group names, without characters Windows refuses in account names.
_GROUP = re.compile(r"([A-Za-z0-9][A-Za-z0-9 ._-]{0,14}\\)?[A-Za-z0-9][A-Za-z0-9 ._-]{0,255}")
_SIZE = re.compile(r"[0-9]{1,9}[kmg]?")


class WindowsHostError(ValueError):
    """One or more reasons why the role must not change this host; the message lists them all."""

    def __init__(self, reasons):
        self.reasons = list(reasons)
        super(WindowsHostError, self).__init__("; ".join(self.reasons))


class Reasons(object):
    """Collects the reasons of several checks, so that one run reports all of them."""

    def __init__(self):
        self.items = []

    def attempt(self, check, *args):
        """``check(*args)``, or None with its reasons kept when it raises :class:`WindowsHostError`."""
        try:
            return check(*args)
        except WindowsHostError as exc:
            self.items.extend(exc.reasons)
            return None

    def raise_any(self):
        if self.items:
            raise WindowsHostError(self.items)


def to_bool(value, what):
    """A boolean from a YAML boolean or an AWX survey / ``-e k=v`` string ('true', 'no', '1'...)."""
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise WindowsHostError(["%s must be true or false, got %r" % (what, value)])


def to_int(value, what, minimum=None):
    """An integer from an integer or a string of digits (AWX surveys send strings)."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]+", text):
        raise WindowsHostError(["%s must be a whole number, got %r" % (what, value)])
    number = int(text)
    if minimum is not None and number < minimum:
        raise WindowsHostError(["%s must be at least %d, got %d" % (what, minimum, number)])
    return number


def is_windows_path(value):
    """Whether ``value`` is an absolute Windows path on a drive (``C:\\...``)."""
    return isinstance(value, str) and _WINDOWS_ABSOLUTE.fullmatch(value) is not None


# ----------------------------------------------------------------------------- the host


def os_build(facts):
    """The OS build number from ``distribution_version`` (``10.0.20348.0``), or None."""
    version = str(facts.get("distribution_version") or facts.get("kernel") or "")
    parts = version.split(".")
    if len(parts) < 3 or not parts[2].isdigit():
        return None
    return int(parts[2])


def host_platform(facts):
    """The Windows Server release of a host from its ``ansible_facts``, or :class:`WindowsHostError`.

    Refuses, with the reason: hosts that are not Windows, client editions (Windows 10/11 share build
    numbers with Server releases, so the product type decides), domain controllers, Nano Server,
    other architectures than x86_64 and builds other than the supported LTSC releases.
    """
    if not isinstance(facts, dict) or not facts:
        raise WindowsHostError(["no host facts: gather facts (ansible.windows.setup) before this task"])
    name = facts.get("distribution") or facts.get("os_name") or "this host"
    if facts.get("os_family") != "Windows":
        raise WindowsHostError(["%s is not a Windows host (os_family=%s)" % (name, facts.get("os_family"))])
    reasons = []
    product = facts.get("os_product_type")
    installation = facts.get("os_installation_type")
    if product == "workstation" or installation == "Client":
        reasons.append(
            "%s is a Windows client edition: checkpoints run on Windows Server 2019, 2022 or 2025 "
            "(Server Core or Desktop Experience), whose containers match a published base image" % name
        )
    elif product == "domain_controller":
        reasons.append(
            "%s is a domain controller: run checkpoints on a member server, so that a container host's "
            "engine and updates never share a machine with the directory" % name
        )
    elif product != "server":
        reasons.append("%s reports os_product_type=%r; a Windows Server host reports 'server'" % (name, product))
    if installation == "Nano Server":
        reasons.append("%s is Nano Server, which cannot host the Docker engine" % name)
    arch = facts.get("architecture2")
    if arch not in SUPPORTED_ARCHITECTURES:
        reasons.append("%s is %s; Docker's static Windows engine and the checkpoint image exist for %s only"
                       % (name, arch or "of unknown architecture", ", ".join(SUPPORTED_ARCHITECTURES)))
    build = os_build(facts)
    if build is None:
        reasons.append("cannot read the OS build of %s from distribution_version=%r"
                       % (name, facts.get("distribution_version")))
    elif build not in LTSC_BY_BUILD and not reasons:
        known = KNOWN_OTHER_BUILDS.get(build, "build %d" % build)
        reasons.append(
            "%s runs %s, which is not supported: supported are %s" % (
                name, known, ", ".join("%s (build %d)" % (i["release"], b) for b, i in sorted(LTSC_BY_BUILD.items())))
        )
    if reasons:
        raise WindowsHostError(reasons)
    info = LTSC_BY_BUILD[build]
    return {
        "build": build,
        "ltsc": info["ltsc"],
        "release": info["release"],
        "edition": name,
        "installation_type": installation,
    }


# ----------------------------------------------------------------------------- the engine


def engine_settings(params):
    """The validated engine settings (``docker_host_windows_*`` without the prefix).

    ``params`` keys: ``engine_source``, ``engine_version``, ``engine_sha256``, ``engine_url``,
    ``engine_src``, ``install_dir``, ``isolation``, ``pipe_group``, ``allow_reboot``,
    ``reboot_timeout``.
    """
    reasons = []
    source = params.get("engine_source") or "static"
    version = str(params.get("engine_version") or "").strip()
    sha256 = str(params.get("engine_sha256") or "").strip().lower()
    url = str(params.get("engine_url") or "").strip()
    src = str(params.get("engine_src") or "").strip()
    install_dir = str(params.get("install_dir") or "").rstrip("\\")
    pipe_group = str(params.get("pipe_group") or "").strip()
    isolation = str(params.get("isolation") or "process").strip().lower()
    try:
        allow_reboot = to_bool(params.get("allow_reboot", True), "docker_host_windows_allow_reboot")
    except WindowsHostError as exc:
        reasons.extend(exc.reasons)
        allow_reboot = False
    try:
        reboot_timeout = to_int(params.get("reboot_timeout", 1800), "docker_host_windows_reboot_timeout", minimum=60)
    except WindowsHostError as exc:
        reasons.extend(exc.reasons)
        reboot_timeout = None

    if source not in ENGINE_SOURCES:
        reasons.append("docker_host_windows_engine_source must be one of %s, got %r" % (", ".join(ENGINE_SOURCES), source))
    if source == "static":
        if not _VERSION.fullmatch(version):
            reasons.append("docker_host_windows_engine_version must be the Docker engine version to install, "
                           "such as 27.5.1 (got %r)" % version)
        if not _SHA256.fullmatch(sha256):
            reasons.append("docker_host_windows_engine_sha256 must be the SHA-256 of the engine's zip archive, "
                           "64 hex digits (got %r); see docs/windows.md for how to obtain it" % params.get("engine_sha256"))
        if not src and not url.lower().startswith("https://"):
            reasons.append("docker_host_windows_engine_url must be an https:// URL (got %r); "
                           "for an air-gapped site set docker_host_windows_engine_src to a file on the controller" % url)
        if not is_windows_path(install_dir) or install_dir.endswith(":"):
            reasons.append("docker_host_windows_install_dir must be an absolute Windows path such as "
                           "C:\\Program Files\\docker (got %r)" % params.get("install_dir"))
    if isolation == "hyperv":
        reasons.append(
            "docker_host_windows_isolation=hyperv is not supported: checkpoints run process-isolated, "
            "which is what their key-file permissions and the image-to-host build match are designed for "
            "(docs/windows.md, 'Isolation'); set it to process")
    elif isolation != "process":
        reasons.append("docker_host_windows_isolation must be process, got %r" % isolation)
    if pipe_group and not _GROUP.fullmatch(pipe_group):
        reasons.append("docker_host_windows_pipe_group must be a local group or DOMAIN\\group name, got %r" % pipe_group)
    if reasons:
        raise WindowsHostError(reasons)
    engine = {
        "source": source,
        "version": version if source == "static" else "",
        "sha256": sha256 if source == "static" else "",
        "url": url if source == "static" and not src else "",
        "src": src if source == "static" else "",
        "install_dir": install_dir,
        "service": ENGINE_SERVICE,
        "pipe": PIPE_PATH,
        "pipe_group": pipe_group,
        "isolation": "process",
        "allow_reboot": allow_reboot,
        "reboot_timeout": reboot_timeout,
    }
    if source == "static":
        engine["dockerd"] = ntpath.join(install_dir, "dockerd.exe")
        engine["docker"] = ntpath.join(install_dir, "docker.exe")
        engine["service_command"] = '"%s" --run-service' % engine["dockerd"]
    else:  # a self-managed engine: its docker.exe is found on PATH, its service command is its own
        engine["install_dir"] = ""
        engine["dockerd"] = engine["docker"] = engine["service_command"] = ""
    return engine


def daemon_config(params, engine):
    """daemon.json for a Windows engine: the named pipe only, bounded logs, process isolation.

    ``params`` holds the role's shared engine variables without the ``docker_host_`` prefix
    (``log_driver``, ``log_max_size``, ``log_max_file``, ``insecure_registries``,
    ``registry_mirrors``, ``data_root``, ``daemon_options``). Refuses anything that would open a
    TCP socket, switch isolation or keep dockerd from starting on Windows.
    """
    reasons = []
    options = params.get("daemon_options") or {}
    if not isinstance(options, dict):
        raise WindowsHostError(["docker_host_daemon_options must be a dict, got %r" % type(options).__name__])
    for key in sorted(options):
        if key in ROLE_DAEMON_KEYS:
            reasons.append("docker_host_daemon_options must not set %r on Windows: the role sets it "
                           "(named pipe only, docker_host_windows_pipe_group, process isolation)" % key)
        elif key in TLS_DAEMON_KEYS:
            reasons.append("docker_host_daemon_options must not set %r: the engine listens on its named pipe only, "
                           "never on TCP" % key)
        elif key in LINUX_ONLY_DAEMON_KEYS:
            reasons.append("docker_host_daemon_options sets %r, which exists only on Linux: dockerd on Windows "
                           "would refuse to start" % key)
    log_driver = str(params.get("log_driver") or "json-file")
    max_size = str(params.get("log_max_size") or "").strip().lower()
    try:
        max_file = to_int(params.get("log_max_file", 3), "docker_host_log_max_file", minimum=1)
    except WindowsHostError as exc:
        reasons.extend(exc.reasons)
        max_file = None
    if log_driver in ("json-file", "local") and not _SIZE.fullmatch(max_size):
        reasons.append("docker_host_log_max_size must be a size such as 10m, got %r" % params.get("log_max_size"))
    data_root = str(params.get("data_root") or "")
    if data_root and not is_windows_path(data_root):
        reasons.append("docker_host_data_root must be an absolute Windows path on a Windows host, got %r" % data_root)
    for what in ("insecure_registries", "registry_mirrors"):
        value = params.get(what) or []
        if not isinstance(value, list):
            reasons.append("docker_host_%s must be a list" % what)
    if reasons:
        raise WindowsHostError(reasons)
    config = {
        "hosts": [PIPE_ADDRESS],
        "exec-opts": ["isolation=%s" % engine["isolation"]],
        "log-driver": log_driver,
        "insecure-registries": list(params.get("insecure_registries") or []),
        "registry-mirrors": list(params.get("registry_mirrors") or []),
    }
    if log_driver in ("json-file", "local"):
        config["log-opts"] = {"max-size": max_size, "max-file": str(max_file)}
    if engine.get("pipe_group"):
        config["group"] = engine["pipe_group"]
    if data_root:
        config["data-root"] = data_root
    config.update(options)
    return config


def reboot_plan(containers_state, allow_reboot):
    """Whether the Containers feature must be installed and whether that means a reboot.

    ``containers_state`` is the DISM state the host reports for the feature (``Enabled``,
    ``EnablePending``, ``Disabled``, ``DisabledWithPayloadRemoved``...). Returns
    ``{"install": bool, "reboot": bool}``; without permission to reboot, a feature that is not
    enabled yet is refused before anything is installed.
    """
    if containers_state == "Enabled":
        return {"install": False, "reboot": False}
    if containers_state is None:
        raise WindowsHostError(["the host did not report the state of the Containers feature"])
    install = containers_state != "EnablePending"
    if not allow_reboot:
        if install:
            raise WindowsHostError([
                "the Containers feature is not installed (%s) and installing it needs a restart, which "
                "docker_host_windows_allow_reboot=false forbids: install it and restart the host in a maintenance "
                "window (Install-WindowsFeature Containers; Restart-Computer), or allow the reboot, then run again"
                % containers_state])
        raise WindowsHostError([
            "a restart is pending to finish installing the Containers feature, and docker_host_windows_allow_reboot"
            "=false forbids it: restart the host, then run again"])
    return {"install": install, "reboot": True}


# ----------------------------------------------------------------------------- the checkpoint image


def select_image(ltsc, default_image, windows_images):
    """The checkpoint image reference for a host of release ``ltsc``.

    ``checkpoint_windows_images`` maps LTSC names (``ltsc2019``, ``ltsc2022``, ``ltsc2025``) to
    pinned images; the host's entry wins over ``checkpoint_image``. Every reference must be pinned.
    """
    images = windows_images or {}
    reasons = []
    if not isinstance(images, dict):
        raise WindowsHostError(["checkpoint_windows_images must be a dict of LTSC name to pinned image"])
    for key in sorted(images):
        if key not in BUILD_BY_LTSC:
            reasons.append("checkpoint_windows_images has the key %r; the keys are %s"
                           % (key, ", ".join(sorted(BUILD_BY_LTSC))))
        elif not _contract.is_valid("pinned_image", images[key]):
            reasons.append("checkpoint_windows_images.%s must be %s, got %r"
                           % (key, _contract.RULES["pinned_image"][1], images[key]))
    image = images.get(ltsc) or default_image
    source = "checkpoint_windows_images.%s" % ltsc if images.get(ltsc) else "checkpoint_image"
    if not reasons and not _contract.is_valid("pinned_image", image):
        reasons.append("%s must be %s, got %r" % (source, _contract.RULES["pinned_image"][1], image))
    if reasons:
        raise WindowsHostError(reasons)
    return {"image": image, "source": source}


def image_os_build(os_version):
    """The build of an image's ``OsVersion`` (``10.0.20348.2762``), or None."""
    parts = str(os_version or "").split(".")
    if len(parts) < 3 or not parts[2].isdigit():
        return None
    return int(parts[2])


def check_image(inspect, reference, host, source="checkpoint_image"):
    """Refuse an image that is not the pinned one or was not built for this host's Windows build.

    ``inspect`` is one object of ``docker image inspect``; ``host`` is :func:`host_platform`'s answer.
    """
    if not isinstance(inspect, dict) or not inspect:
        raise WindowsHostError(["the engine did not describe the image %s" % reference])
    reasons = []
    digest = reference.split("@", 1)[1] if "@" in reference else None
    if digest is None:
        if inspect.get("Id") != reference:
            reasons.append("the engine's image %s has the id %s, not the pinned %s" % (reference, inspect.get("Id"), reference))
    elif not any(str(item).endswith("@" + digest) for item in inspect.get("RepoDigests") or []):
        reasons.append("the engine's image for %s does not carry the pinned digest (it has %s)"
                       % (reference, ", ".join(inspect.get("RepoDigests") or []) or "no repository digest"))
    if inspect.get("Os") != "windows":
        reasons.append("%s (%s) is a %s image; a Windows host runs Windows images" % (source, reference, inspect.get("Os")))
    else:
        build = image_os_build(inspect.get("OsVersion"))
        if build != host["build"]:
            built_for = LTSC_BY_BUILD.get(build, {}).get("ltsc", "build %s" % build)
            reasons.append(
                "%s (%s) was built for %s (OsVersion %s) but %s runs %s (build %d): a process-isolated container "
                "must match its host; set checkpoint_windows_images.%s to the image built for %s"
                % (source, reference, built_for, inspect.get("OsVersion"), host["edition"], host["release"],
                   host["build"], host["ltsc"], host["ltsc"]))
    if reasons:
        raise WindowsHostError(reasons)
    return {"id": inspect.get("Id"), "os_version": inspect.get("OsVersion")}
