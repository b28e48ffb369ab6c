"""The ``vantage.checkpoint.checkpoint_health`` module, run by ``ansible-playbook`` against the real
control plane (``vantage control-plane serve`` over TLS on loopback) with real agents
(``vantage agent run``) connected to it.

The agents are stopped and started to make the checkpoint degraded, unavailable (with its
``checkpoint_unavailable`` alert) and healthy again; the module's report and failure messages are
read from Ansible's JSON output. A last test runs the module with ``local_engine`` against this
machine's Docker engine, on containers made by ``checkpoint_container``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOP = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
MODULE = "vantage.checkpoint.checkpoint_health"


@pytest.fixture(scope="module")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ANSIBLE_COLLECTIONS_PATH where the repository is vantage.checkpoint."""
    root = tmp_path_factory.mktemp("collections")
    link = root / "ansible_collections" / "vantage" / "checkpoint"
    link.parent.mkdir(parents=True)
    link.symlink_to(TOP)
    return root


@dataclass
class Run:
    rc: int
    result: dict[str, Any]
    output: str

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = self.result["report"]
        return report

    def instance(self, name: str) -> dict[str, Any]:
        return next(i for i in self.report["instances"] if i["name"] == name)


class Ansible:
    """Runs the module once per call, as a task of a playbook on localhost."""

    def __init__(self, collections: Path, workdir: Path) -> None:
        self.collections = collections
        self.workdir = workdir
        self.runs = 0

    def run(self, args: dict[str, Any], *, check: bool = False, module: str = MODULE) -> Run:
        self.runs += 1
        playbook = self.workdir / f"play-{self.runs}.yml"
        play = {"hosts": "localhost", "gather_facts": False, "tasks": [{module: args, "ignore_errors": True}]}
        playbook.write_text(json.dumps([play], indent=2))
        env = {k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_RETRY_FILES_ENABLED="False",
            NO_PROXY="127.0.0.1,localhost",
        )
        command = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                   "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]  # fmt: skip
        if check:
            command.append("--check")
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        output = proc.stdout + proc.stderr
        try:
            document = json.loads(proc.stdout[proc.stdout.find("{") :])
            result = document["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError) as exc:
            raise AssertionError(f"cannot read the module's result ({exc}):\n{output}") from None
        return Run(proc.returncode, result, output)


@pytest.fixture
def ansible(collections_path: Path, tmp_path: Path) -> Ansible:
    return Ansible(collections_path, tmp_path)


@dataclass
class Site:
    """A control plane with checkpoint ``office`` and its two agents ``a`` and ``b``."""

    cp: Any
    agents: dict[str, Any]
    wait_until: Any
    ca: str

    def args(self, **extra: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "control_plane_url": self.cp.url,
            "api_token": self.cp.admin_token,
            "ca_path": self.ca,
            "checkpoint": "office",
            "wait_timeout": 20,
        }
        args.update(extra)
        return args

    def connected(self) -> set[str]:
        return {i["name"] for i in self.cp.health("office")["instances"] if i["connected"] and i["healthy"]}

    def start(self, *names: str) -> None:
        for name in names:
            if not self.agents[name].alive():
                self.agents[name].start()
        self.wait_until(lambda: set(names) <= self.connected(), 30, f"agents {names} to connect")

    def stop(self, *names: str) -> None:
        for name in names:
            self.agents[name].stop()
        self.wait_until(lambda: not (set(names) & self.connected()), 30, f"agents {names} to disconnect")


@pytest.fixture(scope="module")
def site(e2e: Any, pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("health")
    cp = e2e.ControlPlane(workdir / "cp", pki, heartbeat_interval=1.0, unavailable_grace=2.0)
    cp.start()
    agents = {}
    try:
        cp.api("PUT", "/api/v1/checkpoints/office", {})
        for name in ("a", "b"):
            agents[name] = e2e.AgentProcess(workdir / name, cp, "office", name)
        result = Site(cp, agents, e2e.wait_until, str(pki.ca))
        result.start("a", "b")
        yield result
    finally:
        for agent in agents.values():
            agent.stop()
        cp.stop()


def assert_no_token(run: Run, *tokens: str) -> None:
    for token in tokens:
        assert token not in run.output


# ----------------------------------------------------------------------------- the control plane's view


def test_healthy_pair_reports_every_instance_and_changes_nothing(site: Site, ansible: Ansible) -> None:
    site.start("a", "b")
    run = ansible.run(site.args(instances=["a", "b"]))
    assert run.rc == 0 and not run.failed, run.output
    assert run.result["changed"] is False
    assert (run.result["healthy"], run.result["state"], run.result["reasons"]) == (True, "active", [])
    report = run.report
    assert report["checkpoint"] == "office" and report["control_plane_url"] == site.cp.url
    assert (report["healthy_instances"], report["min_healthy"], report["degraded"]) == (2, 2, False)
    assert report["alerts"] == []
    assert abs(report["clock_offset_s"]) < 2  # same machine, same clock
    assert time.time() - time.mktime(time.strptime(report["checked_at"], "%Y-%m-%dT%H:%M:%SZ")) + time.timezone < 60
    for name in ("a", "b"):
        item = run.instance(name)
        assert item["connected"] is True and item["healthy"] is True and item["reasons"] == []
        assert item["version"] and item["local"] is None
        assert 0 <= item["last_heartbeat_age_s"] < 10
    assert_no_token(run, site.cp.admin_token)

    # the default expected instances are every instance the control plane knows; check mode is the same
    checked = ansible.run(site.args(), check=True)
    assert checked.rc == 0 and checked.result["healthy"] is True and checked.result["changed"] is False
    assert [i["name"] for i in checked.report["instances"]] == ["a", "b"]


def test_one_instance_down_is_degraded_but_active_and_names_it(site: Site, ansible: Ansible) -> None:
    site.start("a", "b")
    site.stop("b")
    try:
        run = ansible.run(site.args())
        assert run.failed  # (ignore_errors: the play goes on)
        assert run.result["state"] == "active" and run.result["healthy"] is False
        assert run.report["degraded"] is True and run.report["healthy_instances"] == 1
        assert run.instance("b")["connected"] is False and run.instance("a")["healthy"] is True
        assert "instance b is not connected" in run.result["msg"]
        assert "checkpoint office has 1 healthy instance of 2 expected, at least 2 required" in run.result["msg"]
        assert run.result["msg"].startswith("checkpoint office is not healthy (state active): ")

        # one healthy instance is enough with min_healthy=1: healthy, still reported as degraded
        tolerant = ansible.run(site.args(min_healthy=1))
        assert not tolerant.failed and tolerant.result["healthy"] is True
        assert tolerant.report["degraded"] is True
        assert any("instance b is not connected" in r for r in tolerant.result["reasons"])

        # fail_on_unhealthy=false returns the same verdict without failing
        collected = ansible.run(site.args(fail_on_unhealthy=False))
        assert collected.rc == 0 and not collected.failed and collected.result["healthy"] is False
        assert len(collected.result["reasons"]) == len(run.result["reasons"])
        assert any("instance b is not connected" in r for r in collected.result["reasons"])
    finally:
        site.start("b")


def test_both_down_names_checkpoint_unavailable_then_wait_succeeds_after_restart(site: Site, ansible: Ansible) -> None:
    site.start("a", "b")
    site.stop("a", "b")
    try:
        site.wait_until(lambda: site.cp.open_alert("checkpoint_unavailable", "office"), 20, "the alert")
        run = ansible.run(site.args())
        assert run.failed and run.result["state"] == "unavailable"
        assert run.report["degraded"] is False and run.report["healthy_instances"] == 0
        assert [a["kind"] for a in run.report["alerts"]] == ["checkpoint_unavailable"]
        assert "checkpoint office has an open checkpoint_unavailable alert" in run.result["msg"]
        assert "checkpoint office is unavailable at the control plane" in run.result["msg"]
        # every reason is listed, not only the first
        assert "instance a is not connected" in run.result["msg"] and "instance b is not connected" in run.result["msg"]
        assert len(run.result["reasons"]) >= 5

        # with wait it succeeds once the agents are back: they start while the module waits
        def restart() -> None:
            for agent in site.agents.values():
                agent.start()

        timer = threading.Timer(4.0, restart)
        started = time.monotonic()
        timer.start()
        try:
            waited = ansible.run(site.args(wait=True, wait_timeout=60, poll_interval=0.5))
        finally:
            timer.join()
        assert waited.rc == 0 and waited.result["healthy"] is True, waited.output
        assert waited.result["attempts"] > 1
        assert waited.report["alerts"] == []
        assert time.monotonic() - started < 60
    finally:
        site.start("a", "b")


def test_wait_gives_up_after_timeout_with_every_reason(site: Site, ansible: Ansible) -> None:
    site.start("a", "b")
    site.stop("b")
    try:
        started = time.monotonic()
        run = ansible.run(site.args(wait=True, wait_timeout=4, poll_interval=1))
        elapsed = time.monotonic() - started
        assert run.failed and "after waiting 4 s" in run.result["msg"] and "instance b is not connected" in run.result["msg"]
        assert run.result["attempts"] >= 3
        assert elapsed < 30
    finally:
        site.start("b")


def test_expected_instance_unknown_and_image_digest_mismatch_are_reasons(site: Site, ansible: Ansible) -> None:
    site.start("a", "b")
    run = ansible.run(site.args(instances=["a", "b", "c"], min_healthy=2, image_digest="sha256:" + "ab" * 32))
    assert run.failed
    assert "instance c is not enrolled at the control plane" in run.result["reasons"]
    reported = run.instance("a")["image_digest"]
    assert f"instance a runs image {reported or '(not reported)'}, expected sha256:{'ab' * 32}" in run.result["msg"]
    assert run.report["healthy_instances"] == 0


# ----------------------------------------------------------------------------- bad input


def test_unknown_checkpoint_is_named_with_the_url(site: Site, ansible: Ansible) -> None:
    run = ansible.run(site.args(checkpoint="nowhere"))
    assert run.failed
    assert run.result["msg"] == f"checkpoint nowhere is not known to the control plane at {site.cp.url}"
    assert run.result["state"] == "unknown" and run.report["reasons"] == [run.result["msg"]]


def test_wrong_token_is_an_authentication_error_that_never_shows_the_token(site: Site, ansible: Ansible) -> None:
    wrong = "vt_wrong-" + secrets.token_hex(16)
    run = ansible.run(site.args(api_token=wrong, wait=True, wait_timeout=30))
    assert run.failed
    assert run.result["msg"].startswith(f"authentication failed: the control plane at {site.cp.url} rejected the API token")
    assert run.result["attempts"] == 1  # waiting cannot fix a token
    assert_no_token(run, wrong, site.cp.admin_token)


def test_unreachable_control_plane_is_reported_as_such(site: Site, ansible: Ansible) -> None:
    import socket

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    run = ansible.run(site.args(control_plane_url=url))
    assert run.failed and run.result["msg"].startswith(f"cannot reach the control plane at {url}: ")
    assert "not healthy" not in run.result["msg"] and run.result["state"] == "unknown"

    started = time.monotonic()
    waited = ansible.run(site.args(control_plane_url=url, wait=True, wait_timeout=3, poll_interval=0.5))
    assert waited.failed and waited.result["msg"].startswith(f"cannot reach the control plane at {url}: ")
    assert waited.result["attempts"] > 1 and time.monotonic() - started < 30
    assert_no_token(waited, site.cp.admin_token)


# ----------------------------------------------------------------------------- the health role


def run_role(ansible: Ansible, site: Site, report: Path, **variables: Any) -> subprocess.CompletedProcess[str]:
    """playbooks/verify.yml's role on localhost (no local engine), with the stock callback."""
    ansible.runs += 1
    inventory = ansible.workdir / f"inventory-{ansible.runs}.json"
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "checkpoint_name": "office",
        "checkpoint_instances": ["a", "b"],
        "checkpoint_control_plane_url": site.cp.url,
        "checkpoint_api_token": site.cp.admin_token,
        "health_ca_path": site.ca,
        "health_local_engine": False,
        "health_report_path": str(report),
        "health_timeout": 20,
        "health_poll_interval": 0.5,
    }
    host_vars.update(variables)
    inventory.write_text(json.dumps({"vantage_checkpoints": {"hosts": {"localhost": host_vars}}}))
    playbook = ansible.workdir / f"verify-{ansible.runs}.yml"
    playbook.write_text(json.dumps([{
        "hosts": "vantage_checkpoints", "gather_facts": False,
        "roles": [{"role": "vantage.checkpoint.health"}],
    }]))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(ansible.collections), ANSIBLE_NOCOLOR="1", NO_PROXY="127.0.0.1,localhost",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_RETRY_FILES_ENABLED="False")  # fmt: skip
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_role_prints_a_table_writes_one_report_and_fails_naming_the_instance(
    site: Site, ansible: Ansible, tmp_path: Path
) -> None:
    site.start("a", "b")
    report_path = tmp_path / "report.json"
    good = run_role(ansible, site, report_path)
    output = good.stdout + good.stderr
    assert good.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report["healthy"] is True and [c["checkpoint"] for c in report["checkpoints"]] == ["office"]
    office = report["checkpoints"][0]
    assert office["state"] == "active" and [i["name"] for i in office["instances"]] == ["a", "b"]
    assert office["hosts"] == [{"host": "localhost", "healthy": True, "clock_offset_s": office["hosts"][0]["clock_offset_s"], "error": ""}]
    assert f"checkpoint office at {site.cp.url}: active - HEALTHY (2 of 2 instances healthy, 2 required)" in output
    assert site.cp.admin_token not in output and site.cp.admin_token not in report_path.read_text()
    assert "changed=0" in output

    site.stop("b")
    try:
        bad = run_role(ansible, site, report_path, health_wait=False)
        output = bad.stdout + bad.stderr
        assert bad.returncode != 0
        report = json.loads(report_path.read_text())
        office = report["checkpoints"][0]
        assert report["healthy"] is False and office["healthy"] is False
        assert (office["state"], office["degraded"], office["healthy_instances"]) == ("active", True, 1)
        b = next(i for i in office["instances"] if i["name"] == "b")
        assert b["connected"] is False and any("instance b is not connected" in r for r in b["reasons"])
        # the table: one aligned row per instance, the failing one with its reason
        lines = [line.strip().strip('",') for line in output.splitlines()]
        header = next(line for line in lines if line.startswith("instance "))
        row_b = next(line for line in lines if line.startswith("b ") and "NO" in line)
        assert row_b.index("NO") == header.index("connected") and "instance b is not connected" in row_b
        assert "active, DEGRADED - NOT HEALTHY (1 of 2 instances healthy, 2 required)" in output
        # the failure names the checkpoint, the instance and the reason
        assert "checkpoint office is not healthy (state active, 1 of 2 instances healthy)" in output
        assert site.cp.admin_token not in output
    finally:
        site.start("b")


def test_role_reports_an_unreachable_control_plane_as_such(site: Site, ansible: Ansible, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = run_role(ansible, site, report_path, checkpoint_control_plane_url="https://127.0.0.1:9", health_wait=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    office = json.loads(report_path.read_text())["checkpoints"][0]
    assert office["state"] == "unknown" and office["hosts"][0]["error"].startswith("cannot reach the control plane at https://127.0.0.1:9")
    assert "cannot reach the control plane at https://127.0.0.1:9" in output


def test_role_names_bad_settings_before_asking_anything(site: Site, ansible: Ansible, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = run_role(ansible, site, report_path, checkpoint_name="", checkpoint_api_token="", health_report_path="rel.json")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Invalid health settings for localhost" in output
    assert "health_checkpoint_name (default: checkpoint_name) must be 1 to 63 characters" in output
    assert "health_api_token (default: checkpoint_api_token) is empty" in output
    assert "health_report_path must be an absolute path or empty (got 'rel.json')" in output
    assert not report_path.exists()
