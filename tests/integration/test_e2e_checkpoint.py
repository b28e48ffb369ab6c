"""End to end: the control plane and checkpoint agents as real processes on loopback with TLS.

One control plane serves two checkpoints of two agent instances each: ``site-a`` (no data
protection) and ``site-dp`` (all data-protection switches on).  A local HTTP target, flipped
by the tests, plays the monitored system.  Intervals are short (heartbeat 1 s, grace 2.5 s,
monitor interval 1 s) and every wait is a poll with a deadline.

The tests run in file order and share the site; each one creates its own monitors, deletes
them at the end and leaves every agent running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Helpers come from conftest.py through the ``e2e``, ``pki`` and ``target`` fixtures.
ControlPlane = AgentProcess = Pki = Target = Any

HEARTBEAT = 1.0
SITE, DP_SITE = "site-a", "site-dp"


@dataclass
class Site:
    cp: ControlPlane
    agents: dict[str, AgentProcess]
    target: Target
    e2e: Any

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        """Poll ``predicate`` until truthy (its value is returned), failing after ``timeout``."""
        return self.e2e.wait_until(predicate, timeout, what)

    def agent(self, name: str) -> AgentProcess:
        return self.agents[name]

    def logs(self) -> str:
        parts = [f"--- control plane\n{self.cp.log_path.read_text(errors='replace')[-4000:]}"]
        parts += [f"--- agent {name}\n{agent.log_tail()}" for name, agent in self.agents.items()]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pki: Pki, target: Target, e2e: Any) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("e2e")
    cp = e2e.ControlPlane(root / "cp", pki, heartbeat_interval=HEARTBEAT)
    cp.start()
    agents: dict[str, AgentProcess] = {}
    try:
        for checkpoint, names, extra in (
            (SITE, ("a1", "a2"), {}),
            (
                DP_SITE,
                ("d1", "d2"),
                {
                    "VANTAGE_DP_STRIP_CONTENT": "true",
                    "VANTAGE_DP_STRIP_HEADERS": "true",
                    "VANTAGE_DP_STRIP_IPS": "true",
                },
            ),
        ):
            cp.api("PUT", f"/api/v1/checkpoints/{checkpoint}", {})
            for name in names:
                agents[name] = e2e.AgentProcess(root / name, cp, checkpoint, name, env_extra=extra)
                agents[name].start()
        result = Site(cp, agents, target, e2e)
        for agent in agents.values():
            result.wait(
                lambda a=agent: cp.instance_connected(a.checkpoint, a.instance),
                20,
                f"{agent.instance} connected",
            )
        yield result
    finally:
        for agent in agents.values():
            agent.stop()
        cp.stop()


@pytest.fixture
def monitors(site: Site) -> Iterator[list[str]]:
    """Monitor ids created by a test; deleted afterwards."""
    created: list[str] = []
    yield created
    for monitor_id in created:
        site.cp.api("DELETE", f"/api/v1/monitors/{monitor_id}")


def _ensure_running(site: Site, *names: str) -> None:
    for name in names:
        agent = site.agent(name)
        if not agent.alive():
            agent.start()
    for name in names:
        agent = site.agent(name)
        site.wait(
            lambda a=agent: site.cp.instance_connected(a.checkpoint, a.instance), 20, f"{name} reconnected"
        )


# ----------------------------------------------------------------------------- (1) and (2)


def test_check_failing_once_is_retried_at_once_on_the_other_instance(site: Site, monitors: list[str]) -> None:
    site.target.set("flaky", "fail_once")
    monitor_id = site.cp.create_monitor(SITE, "flaky", site.target.url("flaky"), interval_s=3600)
    monitors.append(monitor_id)
    results = site.wait(lambda: len(site.cp.results(monitor_id)) >= 2 and site.cp.results(monitor_id), 15,
                         "the first attempt and its retry")  # fmt: skip
    first, retry = results[0], results[1]
    assert (first["attempt"], first["ok"]) == (1, False), site.logs()
    assert (retry["attempt"], retry["ok"]) == (2, True), site.logs()
    assert {first["instance"], retry["instance"]} == {"a1", "a2"}
    assert retry["received_at"] - first["received_at"] < 3, "the retry should follow at once"
    assert site.target.hit_count("flaky") == 2
    assert site.cp.alerts("monitor_down", monitor_id) == []


def test_check_that_keeps_failing_opens_monitor_down_until_it_recovers(
    site: Site, monitors: list[str]
) -> None:
    site.target.set("down", "fail")
    monitor_id = site.cp.create_monitor(SITE, "down", site.target.url("down"), interval_s=1)
    monitors.append(monitor_id)
    alert = site.wait(lambda: site.cp.open_alert("monitor_down", monitor_id), 15, "monitor_down to open")
    results = site.cp.results(monitor_id)
    first, retry = results[0], results[1]
    assert (first["attempt"], first["ok"], retry["attempt"], retry["ok"]) == (1, False, 2, False)
    assert first["instance"] != retry["instance"], "the retry must run on the other instance"
    assert "500" in (retry["error"] or ""), retry
    assert alert["opened_at"] >= first["received_at"] - 1
    site.target.set("down", "ok")
    site.wait(lambda: site.cp.open_alert("monitor_down", monitor_id) is None, 15, "monitor_down to close")
    (closed,) = site.cp.alerts("monitor_down", monitor_id)
    assert closed["closed_at"] is not None


# ----------------------------------------------------------------------------- (3) and (4)


def test_killed_agent_is_disconnected_within_three_heartbeats_and_checks_go_on(
    site: Site, monitors: list[str]
) -> None:
    monitor_id = site.cp.create_monitor(SITE, "steady", site.target.url("steady"), interval_s=1)
    monitors.append(monitor_id)
    site.wait(lambda: {r["instance"] for r in site.cp.results(monitor_id)} == {"a1", "a2"}, 15,
               "checks on both instances")  # fmt: skip
    assert site.agent("a1").healthcheck().returncode == 0
    victim = site.agent("a2")
    victim.kill()
    killed_at = time.monotonic()
    site.wait(lambda: not site.cp.instance_connected(SITE, "a2"), 3 * HEARTBEAT + 2, "a2 marked disconnected")
    assert time.monotonic() - killed_at <= 3 * HEARTBEAT + 0.5
    health = site.cp.health(SITE)
    assert health["state"] == "active" and not health["healthy"]
    assert victim.healthcheck().returncode == 1  # the status file outlives the process; the pid does not
    seen = {r["id"] for r in site.cp.results(monitor_id)}
    fresh = site.wait(
        lambda: [r for r in site.cp.results(monitor_id) if r["id"] not in seen and r["ok"]][:3]
        if len([r for r in site.cp.results(monitor_id) if r["id"] not in seen and r["ok"]]) >= 3 else None,
        10, "three more results",
    )  # fmt: skip
    assert {r["instance"] for r in fresh} == {"a1"}
    assert site.cp.open_alert("checkpoint_unavailable", SITE) is None
    _ensure_running(site, "a2")


def test_killing_both_agents_opens_checkpoint_unavailable(site: Site) -> None:
    site.agent("a1").kill()
    site.agent("a2").kill()
    alert = site.wait(
        lambda: site.cp.open_alert("checkpoint_unavailable", SITE), 2.5 + 5, "checkpoint_unavailable"
    )
    assert SITE in alert["message"]
    assert site.cp.health(SITE)["state"] == "unavailable"
    assert site.cp.open_alert("checkpoint_unavailable", DP_SITE) is None  # the other checkpoint is fine
    _ensure_running(site, "a1", "a2")
    site.wait(lambda: site.cp.open_alert("checkpoint_unavailable", SITE) is None, 10, "the alert to close")
    health = site.cp.health(SITE)
    assert health["state"] == "active" and health["healthy"], health


# ----------------------------------------------------------------------------- (5)


def test_data_protection_keeps_content_headers_and_ips_on_site(site: Site, monitors: list[str]) -> None:
    protected = site.cp.create_monitor(DP_SITE, "dp", site.target.url("dp", host="localhost"), interval_s=1)
    control = site.cp.create_monitor(SITE, "no-dp", site.target.url("no-dp", host="localhost"), interval_s=1)
    monitors.extend([protected, control])
    for monitor_id in (protected, control):
        site.wait(lambda m=monitor_id: sum(r["ok"] for r in site.cp.results(m)) >= 3, 15, "three ok results")

    body, header = site.e2e.canary_body, site.e2e.canary_header
    # Without data protection the canaries do travel: the greps below can see them.
    unprotected = site.cp.raw(f"/api/v1/monitors/{control}/results?limit=500")
    assert f"{body}:no-dp" in unprotected and f"{header}:no-dp" in unprotected and "127.0.0.1" in unprotected

    answers = [
        site.cp.raw(f"/api/v1/monitors/{protected}/results?limit=500"),
        site.cp.raw(f"/api/v1/checkpoints/{DP_SITE}/health"),
        site.cp.raw(f"/api/v1/monitors/{protected}"),
    ]
    for text in answers:
        assert body not in text and header not in text and "127.0.0.1" not in text, text[:2000]
    results = json.loads(answers[0])["results"]
    assert all(r["ok"] for r in results) and {r["instance"] for r in results} <= {"d1", "d2"}
    for instance in json.loads(answers[1])["instances"]:
        assert instance["data_protection"] == {
            "strip_content": True,
            "strip_headers": True,
            "strip_ips": True,
        }

    # Nothing stored either: not in the control plane's database files, not in the agents' outboxes.
    stored = b"".join(p.read_bytes() for p in site.cp.db_path.parent.glob(f"{site.cp.db_path.name}*"))
    assert f"{body}:no-dp".encode() in stored  # the unprotected checkpoint's data is there: the grep works
    assert f"{body}:dp".encode() not in stored and f"{header}:dp".encode() not in stored
    for name in ("d1", "d2"):
        for path in site.agent(name).journal_files():
            blob = path.read_bytes()
            assert body.encode() not in blob and header.encode() not in blob and b"127.0.0.1" not in blob


# ----------------------------------------------------------------------------- key rotation


def test_signing_key_rotation_reaches_the_agents_and_survives_their_restart(
    site: Site, monitors: list[str]
) -> None:
    cp = site.cp
    monitor_id = cp.create_monitor(SITE, "rotation", site.target.url("rotation"), interval_s=1)
    monitors.append(monitor_id)
    site.wait(lambda: cp.results(monitor_id), 10, "a first result")
    answer = cp.api("POST", "/api/v1/signing-keys/rotate", {"grace_s": 0})  # the old key retires now
    new_keyid = answer["keyid"]
    assert {f"{SITE}/a1", f"{SITE}/a2"} <= set(answer["announced_to"]), answer

    def persisted(agent: AgentProcess) -> dict[str, Any]:
        path = agent.state_dir / "trusted_keys.json"
        keys = json.loads(path.read_text())["keys"] if path.exists() else []
        return {k["keyid"]: k for k in keys}

    for name in ("a1", "a2"):
        agent = site.agent(name)
        site.wait(lambda a=agent: new_keyid in persisted(a), 5, f"{name} to persist the new key")
        old = persisted(agent)[answer["previous_keyid"]]
        assert old["not_after"] is not None and old["not_after"] <= time.time() + 1
    seen = {r["id"] for r in cp.results(monitor_id)}
    site.wait(
        lambda: sum(r["ok"] for r in cp.results(monitor_id) if r["id"] not in seen) >= 3,
        10,
        "checks signed by the new key",
    )
    # The mounted trusted-keys file still holds only the old key: a restarted agent relies on the
    # store it persisted, and keeps the old key retired.
    restarted = site.agent("a2")
    restarted.stop()
    restarted.start()
    site.wait(lambda: cp.instance_connected(SITE, "a2"), 15, "a2 back after its restart")
    since = time.time()
    site.wait(
        lambda: any(
            r["instance"] == "a2" and r["ok"] and r["received_at"] > since for r in cp.results(monitor_id)
        ),
        10,
        "a check run by the restarted a2",
    )
    assert "unknown_key" not in restarted.log_path.read_text(errors="replace")


# ----------------------------------------------------------------------------- liveness


def test_frozen_control_plane_is_noticed_and_agents_come_back(site: Site) -> None:
    """SIGSTOP keeps the control plane's sockets open but silent: the hanging-"connected" case."""
    import signal

    agent = site.agent("a1")
    assert agent.healthcheck().returncode == 0
    assert site.cp.proc is not None
    site.cp.proc.send_signal(signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        site.wait(lambda: agent.healthcheck().returncode == 1, 4 * HEARTBEAT + 3, "a1 to notice the silence")
        assert time.monotonic() - frozen_at <= 4 * HEARTBEAT + 3
        status = json.loads((agent.state_dir / "status.json").read_text())
        assert status["state"] in {"disconnected", "connecting"}
    finally:
        site.cp.proc.send_signal(signal.SIGCONT)
    for name in site.agents:
        member = site.agent(name)
        site.wait(
            lambda a=member: site.cp.instance_connected(a.checkpoint, a.instance), 25, f"{name} reconnected"
        )
    site.wait(lambda: agent.healthcheck().returncode == 0, 10, "a1 healthy again")
    assert "no pong within" in agent.log_path.read_text(errors="replace")


# ----------------------------------------------------------------------------- (6)


def _outbox_has(agent: AgentProcess, monitor_id: str) -> bool:
    return any(result.get("monitor_id") == monitor_id for result in agent.outbox_results())


def test_result_finished_while_disconnected_arrives_after_control_plane_restart(
    site: Site, monitors: list[str]
) -> None:
    cp = site.cp
    fast = cp.create_monitor(SITE, "fast", site.target.url("fast"), interval_s=1)
    monitors.append(fast)
    site.wait(lambda: len(cp.results(fast)) >= 3, 15, "a few results before the restart")
    site.target.set("slow", "slow:3")
    slow = cp.create_monitor(SITE, "slow", site.target.url("slow"), interval_s=3600, timeout_s=10)
    monitors.append(slow)
    site.wait(lambda: site.target.hit_count("slow") >= 1, 10, "the slow check to reach the target")

    before = {r["id"] for r in cp.results(fast)}
    monitor_list = cp.api("GET", "/api/v1/monitors")["monitors"]
    cp.stop()
    holder = site.wait(
        lambda: next((a for a in (site.agent("a1"), site.agent("a2")) if _outbox_has(a, slow)), None),
        10, "the slow result to wait in an outbox",
    )  # fmt: skip
    site.wait(lambda: holder.healthcheck().returncode == 1, 5, "the disconnected agent to report unhealthy")
    cp.start()  # same port, same database

    for agent in site.agents.values():
        site.wait(
            lambda a=agent: cp.instance_connected(a.checkpoint, a.instance), 25, f"{agent.instance} back"
        )
    delivered = site.wait(lambda: cp.results(slow), 15, "the slow result after the restart")
    site.wait(lambda: not _outbox_has(holder, slow), 10, "the slow result to be acknowledged")
    # A redelivery, if any, would arrive within a heartbeat: give it the chance to be stored twice.
    time.sleep(HEARTBEAT)
    delivered = cp.results(slow)
    assert len(delivered) == 1, delivered
    (result,) = delivered
    assert result["ok"] is True and result["attempt"] == 1 and not result["id"].endswith(":timeout")

    after = [r["id"] for r in cp.results(fast)]
    assert before <= set(after), "results stored before the restart were lost"
    assert len(after) == len(set(after)), "a result was stored twice"
    assert {m["id"] for m in cp.api("GET", "/api/v1/monitors")["monitors"]} >= {m["id"] for m in monitor_list}
    assert {i["name"] for i in cp.health(SITE)["instances"]} == {"a1", "a2"}
    site.wait(lambda: holder.healthcheck().returncode == 0, 5, "the agent healthy again")


def test_agents_never_exited_and_stay_small(site: Site) -> None:
    """Restarts and outages are handled inside the agents: none crashed; memory stays in budget."""
    for agent in site.agents.values():
        assert agent.alive(), agent.log_tail()
        text = Path(agent.log_path).read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
        status = Path(f"/proc/{agent.proc.pid}/status").read_text()
        rss_kib = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        assert rss_kib <= 60 * 1024, f"{agent.instance}: RSS {rss_kib} KiB over the 60 MiB budget"
