"""The outbox (bounds, ack, restart), group commit (one flush per round) and the reconnect back-off."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from vantage.agent.backoff import Backoff
from vantage.agent.commit import DurableState, GroupCommit, open_state


def result(result_id: str, size: int = 0) -> bytes:
    return json.dumps({"id": result_id, "ok": True, "details": {"pad": "x" * size}}).encode()


def committed(state: DurableState) -> GroupCommit:
    return GroupCommit(state.journal, state.outbox, state.replay)


async def test_add_get_ack_and_restart(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    commit = committed(state)
    for name in ("a", "b", "c"):
        state.outbox.add(name, result(name))
    await commit.durable()
    assert state.outbox.get("b") == result("b") and len(state.outbox) == 3
    assert state.outbox.ack("b") is True and state.outbox.ack("b") is False
    assert state.outbox.get("b") is None and "b" not in state.outbox
    await commit.close()
    again = open_state(tmp_path)
    assert again.outbox.ids() == ["a", "c"]  # in order, the acknowledged one gone


async def test_same_id_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    state.outbox.add("a", result("a"))
    state.outbox.add("a", result("a", 5))
    assert len(state.outbox) == 1 and state.outbox.get("a") == result("a", 5)
    assert state.outbox.size_bytes == len(result("a", 5))
    await committed(state).close()
    assert open_state(tmp_path).outbox.get("a") == result("a", 5)


def test_count_bound_drops_oldest_with_a_logged_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = open_state(tmp_path, max_results=3)
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            state.outbox.add(f"r{i}", result(f"r{i}"))
    assert state.outbox.ids() == ["r2", "r3", "r4"]
    assert state.outbox.dropped_total == 2
    assert "dropped 1 oldest" in caplog.text


async def test_dropped_results_stay_dropped_after_a_restart(tmp_path: Path) -> None:
    state = open_state(tmp_path, max_results=2)
    for i in range(4):
        state.outbox.add(f"r{i}", result(f"r{i}"))
    await committed(state).close()
    assert open_state(tmp_path, max_results=10).outbox.ids() == ["r2", "r3"]


def test_byte_bound_keeps_the_newest_even_if_it_alone_is_too_large(tmp_path: Path) -> None:
    state = open_state(tmp_path, max_bytes=300)
    state.outbox.add("a", result("a", 100))
    state.outbox.add("b", result("b", 100))
    assert state.outbox.ids() == ["a", "b"]
    state.outbox.add("c", result("c", 100))
    assert state.outbox.ids() == ["b", "c"]
    state.outbox.add("huge", result("huge", 1000))
    assert state.outbox.ids() == ["huge"]


async def test_bounds_apply_to_leftovers_on_start(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    for i in range(5):
        state.outbox.add(f"r{i}", result(f"r{i}"))
    await committed(state).close()
    assert open_state(tmp_path, max_results=2).outbox.ids() == ["r3", "r4"]


def test_result_without_id_or_on_several_lines_is_refused(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    with pytest.raises(ValueError, match="string id"):
        state.outbox.add("", result("x"))
    with pytest.raises(ValueError, match="one line"):
        state.outbox.add("x", b'{"id": "x",\n"ok": true}')
    assert len(state.outbox) == 0 and state.journal.pending == 0


async def test_nothing_is_offered_for_sending_before_it_is_durable(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    commit = committed(state)
    state.outbox.add("a", result("a"))
    assert list(state.outbox.ready()) == []
    await commit.durable()
    assert list(state.outbox.ready()) == ["a"]
    state.outbox.add("b", result("b"))
    assert list(state.outbox.ready()) == ["a"]
    state.outbox.changed.clear()
    await commit.durable()
    assert list(state.outbox.ready()) == ["a", "b"] and state.outbox.changed.is_set()


async def test_one_flush_serves_every_caller_of_a_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = open_state(tmp_path)
    commit = committed(state)
    flushes: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushes.append(fd), real_fsync(fd))[1])
    for index in range(50):
        state.outbox.add(f"r{index}", result(f"r{index}"))
        state.replay.check_and_add(f"{index:032x}", 4_000_000_000)
    await asyncio.gather(*(commit.durable() for _ in range(50)))
    assert commit.rounds == 1 and len(flushes) == 1
    assert list(state.outbox.ready()) == [f"r{index}" for index in range(50)]
    state.outbox.ack("r0")
    commit.request()  # no waiter: the ack is recorded soon all the same
    await asyncio.sleep(0.2)
    assert commit.rounds == 2
    await commit.durable()  # nothing new: returns at once
    assert commit.rounds == 2
    await commit.close()
    again = open_state(tmp_path)
    assert len(again.outbox) == 49 and len(again.replay) == 50


async def test_records_queued_during_a_round_go_with_the_next_one(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    commit = committed(state)
    state.outbox.add("a", result("a"))
    first = asyncio.ensure_future(commit.durable())
    while state.journal.pending:  # until the round has taken "a"  # noqa: ASYNC110 - polls the round, no event to wait on
        await asyncio.sleep(0)
    state.outbox.add("b", result("b"))
    second = asyncio.ensure_future(commit.durable())
    await asyncio.gather(first, second)
    assert commit.rounds == 2 and list(state.outbox.ready()) == ["a", "b"]
    await commit.close()


async def test_a_failed_round_fails_its_callers_and_the_next_one_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = open_state(tmp_path)
    commit = committed(state)
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    state.outbox.add("a", result("a"))
    with pytest.raises(OSError, match="No space"):
        await commit.durable()
    assert list(state.outbox.ready()) == []  # still pending: retried by the next round
    monkeypatch.setattr(os, "fsync", real_fsync)
    await commit.durable()
    assert list(state.outbox.ready()) == ["a"]
    await commit.close()
    assert open_state(tmp_path).outbox.ids() == ["a"]


# ----------------------------------------------------------------------------- back-off


def test_backoff_doubles_to_the_cap_with_full_jitter() -> None:
    ceilings: list[float] = []
    backoff = Backoff(base=0.5, cap=30, rand=lambda low, high: ceilings.append(high) or high)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert backoff.failures == 10
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_is_random_within_bounds() -> None:
    backoff = Backoff(base=0.5, cap=30)
    for _ in range(200):
        ceiling = backoff.ceiling()
        delay = backoff.next_delay()
        assert 0 <= delay <= ceiling <= 30
    assert backoff.ceiling() == 30  # no overflow after many failures


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff(base=5, cap=1)
