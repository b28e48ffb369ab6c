"""The agent's two places where Windows differs: no PID probe, and no event-loop signal handlers.

Windows cannot run here; these tests pin the branch each platform takes (docs/windows.md says what
has run on a real Windows host).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vantage.agent import cli, health
from vantage.agent.health import CONNECTED, Status, healthcheck


def test_on_windows_the_healthcheck_never_probes_the_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True,
                          text=True)
    Status(state=CONNECTED, heartbeat_interval=15, last_heartbeat_at=time.time(), pid=int(gone.stdout)).write(tmp_path)
    assert healthcheck(tmp_path)[0] is False  # here: the process is gone

    def kill(pid: int, sig: int) -> None:  # on Windows os.kill(pid, 0) would terminate the agent
        raise AssertionError("os.kill must not be called on Windows")

    assert health._CAN_PROBE_PID is (os.name != "nt")
    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(health, "_CAN_PROBE_PID", False)  # what os.name == "nt" sets
    healthy, reason = healthcheck(tmp_path)
    assert healthy and reason.startswith("connected, last heartbeat")


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_without_loop_signal_handlers_a_signal_still_stops_the_agent(
    monkeypatch: pytest.MonkeyPatch, restore_signals: None
) -> None:
    def no_handlers(self: Any, signum: int, callback: Any, *args: Any) -> None:
        raise NotImplementedError  # what Windows' proactor event loop does

    monkeypatch.setattr(asyncio.SelectorEventLoop, "add_signal_handler", no_handlers)

    class FakeAgent:
        def __init__(self) -> None:
            self.stopped = asyncio.Event()

        @classmethod
        def from_config(cls, config: object) -> FakeAgent:
            return cls()

        def stop(self) -> None:
            self.stopped.set()

        async def run(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(self.stopped.wait(), timeout=10)

    monkeypatch.setattr("vantage.agent.session.Agent", FakeAgent)
    assert cli._run(object()) == 0  # type: ignore[arg-type]
