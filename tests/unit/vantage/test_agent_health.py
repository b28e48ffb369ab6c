"""Status file, ``vantage agent healthcheck`` and the host facts of heartbeats."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vantage.agent import cli
from vantage.agent.health import CONNECTED, DISCONNECTED, Status, evaluate, healthcheck, read_status
from vantage.agent.hostinfo import dns_servers, host_facts, memory_total_bytes, os_description, timezone_name


def connected_status(tmp_path: Path, *, beat_age: float = 0.0, interval: float = 15.0) -> None:
    status = Status(state=CONNECTED, heartbeat_interval=interval, last_heartbeat_at=time.time() - beat_age)
    status.write(tmp_path)


def test_status_file_round_trip_and_mode(tmp_path: Path) -> None:
    connected_status(tmp_path)
    data = read_status(tmp_path)
    assert data["state"] == "connected" and data["pid"] == os.getpid()
    assert (tmp_path / "status.json").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_healthy_when_connected_with_a_recent_heartbeat(tmp_path: Path) -> None:
    connected_status(tmp_path, beat_age=20)
    healthy, reason = healthcheck(tmp_path)
    assert healthy and reason.startswith("connected")


def test_unhealthy_when_heartbeats_stop(tmp_path: Path) -> None:
    connected_status(tmp_path, beat_age=60, interval=15)  # > 3 * 15 + 10
    healthy, reason = healthcheck(tmp_path)
    assert not healthy and "last heartbeat 60s ago" in reason
    assert healthcheck(tmp_path, max_age=120)[0]


def test_unhealthy_when_disconnected(tmp_path: Path) -> None:
    Status(state=DISCONNECTED, last_error="refused: unknown_instance").write(tmp_path)
    healthy, reason = healthcheck(tmp_path)
    assert not healthy and "unknown_instance" in reason


def test_unhealthy_without_a_status_file_or_with_garbage(tmp_path: Path) -> None:
    assert healthcheck(tmp_path) == (
        False,
        f"no status file {tmp_path / 'status.json'} (agent not started yet?)",
    )
    (tmp_path / "status.json").write_text("[]")
    assert not healthcheck(tmp_path)[0]
    (tmp_path / "status.json").write_text("{")
    assert not healthcheck(tmp_path)[0]


def test_unhealthy_when_the_agent_process_is_gone(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    status = Status(
        state=CONNECTED, heartbeat_interval=15, last_heartbeat_at=time.time(), pid=int(proc.stdout)
    )
    status.write(tmp_path)
    healthy, reason = healthcheck(tmp_path)
    assert not healthy and "is gone" in reason


def test_connected_without_heartbeat_yet() -> None:
    assert evaluate({"state": "connected", "heartbeat_interval": 1}) == (
        False,
        "connected but no heartbeat sent yet",
    )


def test_self_check_reasons_are_shown_but_do_not_fail(tmp_path: Path) -> None:
    now = time.time()
    healthy, reason = evaluate(
        {"state": "connected", "heartbeat_interval": 1, "last_heartbeat_at": now, "reasons": ["clock_skew"]},
        now=now,
    )
    assert healthy and "clock_skew" in reason


def test_healthcheck_cli_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VANTAGE_STATE_DIR", str(tmp_path))
    assert cli.main(["healthcheck"]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: no status file")
    connected_status(tmp_path)
    assert cli.main(["healthcheck"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("healthy: connected") and out.count("\n") == 1
    connected_status(tmp_path, beat_age=5)
    assert cli.main(["healthcheck", "--max-age", "1"]) == 1


def test_healthcheck_needs_only_the_state_dir(tmp_path: Path) -> None:
    """Docker runs it with the container's environment; nothing but the state dir is read."""
    connected_status(tmp_path)
    env = {"PATH": os.environ.get("PATH", ""), "VANTAGE_STATE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "vantage", "agent", "healthcheck"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- host facts


def test_dns_servers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver  fd00::53 # x\nnameserver\n"
    )
    assert dns_servers(conf) == ["10.0.0.2", "fd00::53"]
    assert dns_servers(tmp_path / "missing") == []


def test_memory_total(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384 kB\nMemFree: 1 kB\n")
    assert memory_total_bytes(meminfo) == 16384 * 1024
    assert memory_total_bytes(tmp_path / "missing") is None


def test_timezone(tmp_path: Path) -> None:
    assert timezone_name({"TZ": ":Europe/Paris"}, tmp_path) == "Europe/Paris"
    (tmp_path / "localtime").symlink_to("/usr/share/zoneinfo/America/New_York")
    assert timezone_name({}, tmp_path) == "America/New_York"
    (tmp_path / "timezone").write_text("Asia/Tokyo\n")
    assert timezone_name({}, tmp_path) == "Asia/Tokyo"


def test_os_description(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert os_description(release).startswith("Debian GNU/Linux 12 (bookworm); ")


def test_host_facts_shape() -> None:
    facts = host_facts()
    assert set(facts) == {"hostname", "os", "cpu_count", "memory_total_bytes", "dns_servers", "timezone"}
    json.dumps(facts)
    assert isinstance(facts["cpu_count"], int) and facts["cpu_count"] >= 1
    assert facts["hostname"] == socket.gethostname()  # the container's own, when no host name is set


def test_host_facts_name_the_host_the_deployment_gave() -> None:
    assert host_facts("vantage-sandbox-host1")["hostname"] == "vantage-sandbox-host1"
