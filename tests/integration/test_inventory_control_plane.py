"""The inventory plugin ``vantage.checkpoint.control_plane`` against the real control plane.

``vantage control-plane serve`` runs over TLS on loopback with checkpoint ``office`` (agent ``a``
connected and reporting its host, ``b`` enrolled but stopped), ``lab`` (one agent that never
connected) and ``retired`` (disabled). ``ansible-inventory`` reads it with a ``read``-scope token
from the environment, as the AWX credential type injects it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

TOP = Path(__file__).resolve().parents[2]
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


@dataclass
class Site:
    cp: Any
    read_token: str
    ca: Path
    workdir: Path
    collections: Path

    def inventory(self, config: dict[str, Any], *extra: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        path = self.workdir / "control_plane.yml"
        path.write_text(yaml.safe_dump({"plugin": "vantage.checkpoint.control_plane", **config}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_") and "proxy" not in k.lower()}
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCAL_TEMP=str(self.workdir / "tmp"),
            VANTAGE_CONTROL_PLANE_URL=self.cp.url,
            VANTAGE_CONTROL_PLANE_TOKEN=self.read_token if token is None else token,
            VANTAGE_CONTROL_PLANE_CA_PATH=str(self.ca),
        )
        return subprocess.run(
            [str(ANSIBLE_INVENTORY), "-i", str(path), "--list", *extra],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    def listing(self, config: dict[str, Any] | None = None, *extra: str) -> dict[str, Any]:
        result = self.inventory(config or {}, *extra)
        assert result.returncode == 0 and "[WARNING]" not in result.stderr, result.stdout + result.stderr
        # strings from the control plane are untrusted (never templated): ansible-core 2.19 lists them
        # as {"__ansible_unsafe": ...}
        data: dict[str, Any] = json.loads(result.stdout, object_hook=lambda o: o.get("__ansible_unsafe", o))
        return data


def hosts_of(listing: dict[str, Any], group: str) -> list[str]:
    return sorted(listing.get(group, {}).get("hosts", []))


@pytest.fixture(scope="module")
def site(e2e: Any, pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("inventory")
    collections = workdir / "collections"
    (collections / "ansible_collections" / "vantage").mkdir(parents=True)
    (collections / "ansible_collections" / "vantage" / "checkpoint").symlink_to(TOP)
    cp = e2e.ControlPlane(workdir / "cp", pki, heartbeat_interval=1.0, unavailable_grace=2.0)
    cp.start()
    agents = []
    try:
        for name in ("office", "lab", "retired"):
            cp.api("PUT", f"/api/v1/checkpoints/{name}", {})
        agents = [e2e.AgentProcess(workdir / f"office-{n}", cp, "office", n) for n in ("a", "b")]
        agents.append(e2e.AgentProcess(workdir / "lab-x", cp, "lab", "x"))
        cp.api("POST", "/api/v1/checkpoints/retired/state", {"state": "disabled", "reason": "moved to lab"})
        agents[0].start()

        def reported() -> bool:
            office = cp.health("office")["instances"]
            return any(i["name"] == "a" and i["connected"] and i["host"].get("hostname") for i in office)

        e2e.wait_until(reported, 30, "agent office/a to connect and report its host")
        read_token = cp.api("POST", "/api/v1/tokens", {"name": "inventory", "scopes": ["read"]})["token"]
        yield Site(cp, read_token, pki.ca, workdir, collections)
    finally:
        for agent in agents:
            agent.stop()
        cp.stop()


def test_hosts_groups_and_variables(site: Site) -> None:
    listing = site.listing()
    me = socket.gethostname()
    # a reports this machine's name; b and x never reported one, so they are named <checkpoint>-<instance>
    assert hosts_of(listing, "vantage_checkpoints") == sorted([me, "office-b", "lab-x"])
    assert hosts_of(listing, "vantage_checkpoint_office") == sorted([me, "office-b"])
    assert hosts_of(listing, "vantage_checkpoint_lab") == ["lab-x"]
    groups = listing["all"]["children"]
    assert "vantage_checkpoint_retired" in groups and hosts_of(listing, "vantage_checkpoint_retired") == []
    assert hosts_of(listing, "vantage_state_active") == sorted([me, "office-b"])
    assert hosts_of(listing, "vantage_state_unavailable") == ["lab-x"]
    assert "vantage_state_disabled" in groups

    hostvars = listing["_meta"]["hostvars"]
    mine = hostvars[me]
    (a,) = mine["vantage_instances"]
    assert (a["checkpoint"], a["instance"], a["state"], a["connected"], a["healthy"]) == ("office", "a", "active", True, True)
    assert a["version"] and a["keyid"] and a["last_heartbeat"] and a["checkpoint_healthy"] is False
    assert mine["vantage_host"]["hostname"] == me and mine["vantage_host"]["cpu_count"] >= 1
    assert mine["vantage_control_plane_url"] == site.cp.url
    # one checkpoint per host: the collection's playbooks run against it as they are
    assert (mine["checkpoint_name"], mine["checkpoint_instances"]) == ("office", ["a"])
    (b,) = hostvars["office-b"]["vantage_instances"]
    assert (b["connected"], b["healthy"]) == (False, False)
    assert b["reasons"] == [r for r in b["reasons"] if "instance b is not connected" in r] and b["reasons"]


def test_constructed_options_and_filters(site: Site) -> None:
    listing = site.listing({
        "checkpoints": ["office"],
        "hostnames": ["instance"],
        "group_prefix": "vtg_",
        "compose": {"ansible_host": "vtg_host.hostname | default(inventory_hostname)"},
        "groups": {"degraded": "vtg_instances | rejectattr('healthy') | list | length > 0"},
        "keyed_groups": [{"key": "checkpoint_name", "prefix": "site"}],
    })  # fmt: skip
    assert hosts_of(listing, "vtg_checkpoints") == ["office-a", "office-b"]
    assert hosts_of(listing, "degraded") == ["office-b"]
    assert hosts_of(listing, "site_office") == ["office-a", "office-b"]
    hostvars = listing["_meta"]["hostvars"]
    assert hostvars["office-a"]["ansible_host"] == socket.gethostname()
    assert hostvars["office-b"]["ansible_host"] == "office-b"


def test_cache_answers_until_flushed(site: Site) -> None:
    config = {
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(site.workdir / "cache"),
        "cache_timeout": 3600,
        "checkpoints": ["lab"],
    }
    assert hosts_of(site.listing(config), "vantage_state_unavailable") == ["lab-x"]
    cached = list((site.workdir / "cache").iterdir())
    assert cached and all(site.read_token not in path.read_text() for path in cached)
    site.cp.api("POST", "/api/v1/checkpoints/lab/state", {"state": "disabled", "reason": "inventory cache test"})
    try:
        # the cache answers: still unavailable
        assert hosts_of(site.listing(config), "vantage_state_unavailable") == ["lab-x"]
        # a refresh asks the control plane again (and refreshes the cache)
        assert hosts_of(site.listing(config, "--flush-cache"), "vantage_state_disabled") == ["lab-x"]
        assert hosts_of(site.listing(config), "vantage_state_disabled") == ["lab-x"]
    finally:
        site.cp.api("POST", "/api/v1/checkpoints/lab/state", {"state": "active"})


def test_errors_name_the_problem_and_never_the_token(site: Site) -> None:
    refused = site.inventory({}, token="not-a-valid-token-0123456789")
    assert refused.returncode != 0 or "vantage_checkpoints" not in refused.stdout
    assert "authentication failed" in refused.stderr and "not-a-valid-token-0123456789" not in refused.stderr
    missing = site.inventory({}, token="")
    assert "no API token; set VANTAGE_CONTROL_PLANE_TOKEN" in missing.stderr
    unknown = site.inventory({"checkpoints": ["nowhere"]})
    assert "has no checkpoint nowhere" in unknown.stderr and site.read_token not in unknown.stderr


def test_an_empty_ca_file_means_the_system_trust_store(site: Site, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    result = site.inventory({"ca_path": str(empty)})
    # the control plane's certificate comes from the test's private CA, which the system does not trust
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "certificate verify failed" in result.stderr, result.stderr
