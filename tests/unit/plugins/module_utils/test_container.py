# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The settings model of checkpoint_container: option checks, and desired vs. observed settings."""

from __future__ import annotations

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    CheckpointSpec,
    ImageRef,
    SpecError,
    check_extra_hosts,
    config_hash,
    credentials_revision,
    differences,
    display_settings,
    engine_host_name,
    healthcheck_from_engine,
    healthcheck_settings,
    healthcheck_to_engine,
    observed_settings,
    parse_memory,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import bridge_name, container_name

DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32


def params(**overrides):
    value = dict(
        checkpoint="office-berlin",
        state="present",
        instances=[
            dict(name="a", identity_key="/etc/vantage/a/identity.pem", state_dir="/var/lib/vantage/a", env=None),
            dict(name="b", identity_key="/etc/vantage/b/identity.pem", state_dir="/var/lib/vantage/b",
                 env={"VANTAGE_LOG_LEVEL": "DEBUG"}),
        ],
        image="registry.example.com/vantage/checkpoint@" + DIGEST,
        control_plane_url="https://cp.example.com",
        trusted_keys="/etc/vantage/trusted_keys.json",
        ca_bundle=None,
        env={"VANTAGE_DP_STRIP_IPS": True},
        network=None,
        user="10001:10001",
        memory="256m",
        cpus=1.0,
        pids_limit=256,
        restart_policy="unless-stopped",
        log_max_size="10m",
        log_max_file=3,
        stop_timeout=15,
        health_timeout=120,
        healthcheck=None,
    )
    value.update(overrides)
    return value


IMAGE_CONFIG = {
    "Env": ["PATH=/usr/bin:/bin", "VANTAGE_LOG_LEVEL=INFO"],
    "Healthcheck": {"Test": ["CMD", "vantage", "agent", "healthcheck"], "Interval": 15 * 10**9,
                    "Timeout": 10 * 10**9, "Retries": 3, "StartPeriod": 30 * 10**9},
}


def inspect_of(spec, instance, image_config=None, image_id=IMAGE_ID):
    """What the engine reports for a container the module created (the image's config merged in)."""
    image_config = image_config or IMAGE_CONFIG
    env = dict(item.split("=", 1) for item in image_config["Env"])
    env.update(spec.environment(instance))
    return {
        "Id": "f" * 64,
        "Name": "/" + container_name(spec.checkpoint, instance["name"]),
        "Image": image_id,
        "Config": {
            "User": spec.user,
            "Env": ["%s=%s" % item for item in env.items()],
            "Healthcheck": image_config["Healthcheck"],
            "StopTimeout": spec.stop_timeout,
            "Labels": {},
        },
        "HostConfig": {
            "Mounts": [{"Type": "bind", "Source": s, "Target": t, "ReadOnly": ro} for s, t, ro in spec.mounts(instance)],
            "NetworkMode": spec.network,
            "PortBindings": {},
            "PublishAllPorts": False,
            "Memory": spec.memory,
            "MemorySwap": spec.memory,
            "NanoCpus": spec.nano_cpus,
            "PidsLimit": spec.pids_limit,
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
            "CapDrop": ["ALL"],
            "CapAdd": None,
            "SecurityOpt": ["no-new-privileges:true"],
            "Privileged": False,
            "Init": True,
        },
    }


@pytest.mark.parametrize(
    "text",
    ["vantage/checkpoint:1.2.3", "vantage/checkpoint", "vantage/checkpoint@sha256:abc", "sha256:ABC" + "0" * 61, ""],
)
def test_image_must_be_pinned(text):
    with pytest.raises(SpecError, match="option image must be pinned"):
        ImageRef(text)


def test_image_references():
    ref = ImageRef("registry.example.com:5000/vantage/checkpoint:1.2@" + DIGEST)
    assert (ref.repository, ref.digest, ref.pullable) == ("registry.example.com:5000/vantage/checkpoint", DIGEST, True)
    assert ref.reference == "registry.example.com:5000/vantage/checkpoint@" + DIGEST
    local = ImageRef(IMAGE_ID)
    assert (local.reference, local.digest, local.pullable) == (IMAGE_ID, IMAGE_ID, False)


def test_memory_sizes():
    assert parse_memory("256m") == 256 * 1024**2
    assert parse_memory("1G") == 1024**3
    assert parse_memory("268435456") == 268435456
    for bad in ("lots", "1m", "-5m", "1.5g"):
        with pytest.raises(SpecError, match="option memory"):
            parse_memory(bad)


def test_bridge_name_is_a_short_deterministic_interface_name():
    name = bridge_name("vantage-" + "x" * 63)
    assert len(name) <= 15 and name.startswith("vtg-")
    assert name == bridge_name("vantage-" + "x" * 63) != bridge_name("vantage-other")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(checkpoint="Office"), "option checkpoint"),
        (dict(network="host"), "option network"),
        (dict(user="root"), "option user"),
        (dict(user="0:0"), "option user"),
        (dict(env={"VANTAGE_INSTANCE": "x"}), "option env may not set VANTAGE_INSTANCE"),
        (dict(env={"VANTAGE_CREDENTIALS_FILE": "/x"}), "option env may not set VANTAGE_CREDENTIALS_FILE"),
        (dict(env={"CHECKPOINT_CREDENTIALS_REVISION": "x"}), "may not set CHECKPOINT_CREDENTIALS_REVISION"),
        (dict(env={"1BAD": "x"}), "not a valid environment variable name"),
        (dict(env={"VANTAGE_HOST_NAME": "bad host"}), "option env: VANTAGE_HOST_NAME must be 1 to 253 characters"),
        (dict(instances=[dict(name="a", identity_key="/k", state_dir="/s", env={"VANTAGE_HOST_NAME": "-x"})]),
         r"option instances\[a\]\.env: VANTAGE_HOST_NAME"),
        (dict(cpus=0.0), "option cpus"),
        (dict(pids_limit=4), "option pids_limit"),
        (dict(log_max_size="big"), "option log_max_size"),
        (dict(control_plane_url="cp.example.com"), "option control_plane_url"),
        (dict(instances=[dict(name="a", identity_key="/k", state_dir="/s", env=None)] * 2), "listed twice"),
        (dict(instances=[dict(name="a-previous", identity_key="/k", state_dir="/s", env=None)]), "-previous"),
    ],
)
def test_refused_options_name_the_option(overrides, message):
    with pytest.raises(SpecError, match=message):
        CheckpointSpec(params(**overrides))


def test_environment_of_an_instance():
    spec = CheckpointSpec(params(ca_bundle="/etc/vantage/ca.pem"))
    env = spec.environment(spec.instances[1])
    assert env["VANTAGE_CHECKPOINT"] == "office-berlin" and env["VANTAGE_INSTANCE"] == "b"
    assert env["VANTAGE_IMAGE_DIGEST"] == DIGEST
    assert env["VANTAGE_DP_STRIP_IPS"] == "true"
    assert env["VANTAGE_LOG_LEVEL"] == "DEBUG"  # the instance's env wins over the checkpoint's
    assert env["VANTAGE_CA_BUNDLE"] == "/etc/vantage/ca-bundle.pem"
    assert ("/etc/vantage/ca.pem", "/etc/vantage/ca-bundle.pem", True) in spec.mounts(spec.instances[1])


def test_the_agent_is_told_the_engine_hosts_name_unless_env_says_otherwise():
    spec = CheckpointSpec(params())
    assert "VANTAGE_HOST_NAME" not in spec.environment(spec.instances[0])  # engine not asked yet: nothing
    spec.host_name = engine_host_name("vantage-sandbox-host1")  # docker info's Name
    assert spec.environment(spec.instances[0])["VANTAGE_HOST_NAME"] == "vantage-sandbox-host1"
    spec = CheckpointSpec(params(env={"VANTAGE_HOST_NAME": "berlin-1.example.com"}))
    spec.host_name = "vantage-sandbox-host1"
    assert spec.environment(spec.instances[0])["VANTAGE_HOST_NAME"] == "berlin-1.example.com"  # env wins
    for odd in ("", None, "bad name", "x" * 254, "host\n", 5):  # never a value the agent would refuse
        assert engine_host_name(odd) is None


def test_a_container_made_from_the_settings_reads_back_equal():
    spec = CheckpointSpec(params())
    for instance in spec.instances:
        desired = spec.desired_settings(instance, IMAGE_ID, IMAGE_CONFIG)
        observed = observed_settings(inspect_of(spec, instance), IMAGE_CONFIG)
        assert differences(observed, desired) == []
        assert config_hash(desired) == config_hash(observed)


def test_differences_are_named():
    spec = CheckpointSpec(params())
    instance = spec.instances[0]
    container = inspect_of(spec, instance)
    container["HostConfig"]["Memory"] = 512 * 1024**2  # docker update --memory
    container["HostConfig"]["CapDrop"] = ["NET_RAW"]
    container["Image"] = "sha256:" + "00" * 32
    desired = spec.desired_settings(instance, IMAGE_ID, IMAGE_CONFIG)
    assert differences(observed_settings(container, IMAGE_CONFIG), desired) == ["cap_drop", "image", "memory"]
    changed = CheckpointSpec(params(env={"VANTAGE_DP_STRIP_IPS": False}))
    assert differences(
        observed_settings(container, IMAGE_CONFIG), changed.desired_settings(changed.instances[0], IMAGE_ID, IMAGE_CONFIG)
    ) == ["cap_drop", "env", "image", "memory"]


def test_a_variable_equal_to_the_images_default_is_not_a_difference():
    spec = CheckpointSpec(params(env={"VANTAGE_LOG_LEVEL": "INFO"}))
    instance = spec.instances[0]
    desired = spec.desired_settings(instance, IMAGE_ID, IMAGE_CONFIG)
    assert "VANTAGE_LOG_LEVEL" not in desired["env"]
    assert differences(observed_settings(inspect_of(spec, instance), IMAGE_CONFIG), desired) == []


def test_healthcheck_timings_without_a_command_keep_the_images_command():
    image = healthcheck_from_engine(IMAGE_CONFIG["Healthcheck"])
    settings = healthcheck_settings(dict(test=None, interval=5, timeout=None, retries=None, start_period=15), image)
    assert settings == {"test": ["CMD", "vantage", "agent", "healthcheck"], "interval": 5.0, "timeout": 10.0,
                        "retries": 3, "start_period": 15.0}
    assert healthcheck_settings(dict(test=None, interval=5), None) is None
    assert healthcheck_settings(None, image) == image
    with pytest.raises(SpecError, match="option healthcheck"):
        CheckpointSpec(params(healthcheck=dict(test=None, interval=0)))


def test_healthcheck_override_round_trip():
    settings = healthcheck_settings(dict(test=["vantage", "agent", "healthcheck"], interval=5, timeout=3,
                                         retries=2, start_period=0))
    assert settings["test"] == ["CMD", "vantage", "agent", "healthcheck"]
    engine = healthcheck_to_engine(settings)
    assert engine["interval"] == 5 * 10**9
    as_inspected = {"Test": engine["test"], "Interval": engine["interval"], "Timeout": engine["timeout"],
                    "Retries": engine["retries"]}  # a zero StartPeriod is left out by the engine
    assert healthcheck_from_engine(as_inspected) == settings
    assert healthcheck_from_engine({"Test": ["NONE"]}) is None
    assert healthcheck_from_engine(None) is None


def test_display_masks_sensitive_values():
    shown = display_settings({"env": {"HTTPS_PROXY": "http://user:pw@proxy:3128", "API_TOKEN": "t0k3n", "A": "b"}})
    assert shown["env"] == {"A": "b", "API_TOKEN": "********", "HTTPS_PROXY": "http://********@proxy:3128"}


def test_extra_hosts_become_sorted_docker_entries():
    assert check_extra_hosts({"cp.example.com": "10.0.0.5", "b": "::1"}) == ["b:::1", "cp.example.com:10.0.0.5"]
    assert check_extra_hosts(None) == []


@pytest.mark.parametrize(
    "value, message",
    [
        ({"bad name": "10.0.0.5"}, "'bad name' is not a host name"),
        ({"cp.example.com": "cp.internal"}, "the address of cp.example.com must be an IP address"),
    ],
)
def test_extra_hosts_refuse_bad_entries_by_name(value, message):
    with pytest.raises(SpecError, match=message):
        check_extra_hosts(value)


def test_the_credentials_file_is_mounted_read_only_and_named_in_the_environment():
    spec = CheckpointSpec(params(credentials_file="/etc/vantage/checkpoints/office-berlin/credentials.json"))
    spec.credentials_revisions = {"a": "0123456789abcdef0123456789abcdef"}
    for instance in spec.instances:
        assert ("/etc/vantage/checkpoints/office-berlin/credentials.json", "/etc/vantage/credentials.json",
                True) in spec.mounts(instance)
        assert spec.environment(instance)["VANTAGE_CREDENTIALS_FILE"] == "/etc/vantage/credentials.json"
        assert ("credentials_file", "/etc/vantage/checkpoints/office-berlin/credentials.json", "file") in spec.host_files()
    a, b = spec.instances
    assert spec.environment(a)["CHECKPOINT_CREDENTIALS_REVISION"] == "0123456789abcdef0123456789abcdef"
    assert "CHECKPOINT_CREDENTIALS_REVISION" not in spec.environment(b)  # no revision known (remote engine)
    desired = spec.desired_settings(a, IMAGE_ID, IMAGE_CONFIG)
    assert differences(observed_settings(inspect_of(spec, a), IMAGE_CONFIG), desired) == []
    # the revision is a sensitive-looking name: the diff masks it
    assert display_settings(desired)["env"]["CHECKPOINT_CREDENTIALS_REVISION"] == "********"


def test_without_a_credentials_file_the_settings_are_those_of_before():
    spec = CheckpointSpec(params())
    instance = spec.instances[0]
    settings = spec.desired_settings(instance, IMAGE_ID, IMAGE_CONFIG)
    assert "credentials" not in str(settings).lower()
    # so that deployments without credentials keep their fingerprint (no replacement on upgrade)
    assert sorted(settings) == sorted(observed_settings(inspect_of(spec, instance), IMAGE_CONFIG))


def test_adding_or_changing_the_credentials_file_is_a_difference():
    before = CheckpointSpec(params())
    container = inspect_of(before, before.instances[0])
    with_file = CheckpointSpec(params(credentials_file="/etc/vantage/creds.json"))
    desired = with_file.desired_settings(with_file.instances[0], IMAGE_ID, IMAGE_CONFIG)
    assert differences(observed_settings(container, IMAGE_CONFIG), desired) == ["env", "mounts"]
    with_file.credentials_revisions = {"a": credentials_revision(b"key a", b"new content")}
    deployed = inspect_of(with_file, with_file.instances[0])
    with_file.credentials_revisions = {"a": credentials_revision(b"key a", b"newer content")}
    desired = with_file.desired_settings(with_file.instances[0], IMAGE_ID, IMAGE_CONFIG)
    assert differences(observed_settings(deployed, IMAGE_CONFIG), desired) == ["env"]


def test_the_credentials_revision_is_keyed_and_tells_nothing_about_the_content():
    import hashlib

    content = b'{"credentials": {"db": {"password": "hunter2"}}}'
    revision = credentials_revision(b"identity key of a", content)
    assert revision == credentials_revision(b"identity key of a", content)
    assert len(revision) == 32 and int(revision, 16) >= 0
    assert revision != credentials_revision(b"identity key of b", content)
    assert revision != credentials_revision(b"identity key of a", content + b" ")
    assert revision not in hashlib.sha256(content).hexdigest()
