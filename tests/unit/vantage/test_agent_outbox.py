"""The persistent outbox (bound, ack, restart) and the reconnect back-off."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from vantage.agent.backoff import Backoff
from vantage.agent.outbox import Outbox, write_batch


def result(result_id: str, size: int = 0) -> dict[str, object]:
    return {"id": result_id, "ok": True, "details": {"pad": "x" * size}}


def test_add_get_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.add(result("a"))
    box.add(result("b"))
    assert box.ids() == ["a", "b"] and len(box) == 2
    assert box.get("a") == result("a")
    assert box.ack("a") is True
    assert box.ack("a") is False  # a second ack of the same id is harmless
    assert box.ids() == ["b"]
    box.flush()
    assert len(list((tmp_path / "outbox").iterdir())) == 1


def test_survives_a_restart_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    for name in ("r1", "r2", "r3"):
        box.add(result(name))
    box.flush()
    box.ack("r2")
    box.flush()
    again = Outbox(tmp_path / "outbox")
    assert again.ids() == ["r1", "r3"]
    assert dict(again.items())["r3"] == result("r3")
    again.add(result("r4"))
    again.flush()
    assert Outbox(tmp_path / "outbox").ids() == ["r1", "r3", "r4"]


def test_same_id_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.add(result("a"))
    box.add({"id": "a", "ok": False})
    assert box.ids() == ["a"] and box.get("a") == {"id": "a", "ok": False}
    box.flush()
    assert len(list((tmp_path / "outbox").iterdir())) == 1


def test_count_bound_drops_oldest_with_a_logged_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox", max_results=10)
    with caplog.at_level(logging.WARNING):
        for index in range(13):
            box.add(result(f"r{index}"))
    assert box.ids() == [f"r{index}" for index in range(3, 13)]
    assert box.dropped_total == 3
    assert "dropped 1 oldest" in caplog.text
    box.flush()
    assert len(list((tmp_path / "outbox").iterdir())) == 10


def test_byte_bound(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox", max_bytes=65_536)
    for index in range(10):
        box.add(result(f"r{index}", size=10_000))
    assert box.size_bytes <= 65_536
    assert box.ids()[-1] == "r9" and len(box) == 6
    huge = Outbox(tmp_path / "other", max_bytes=65_536)
    huge.add(result("big", size=100_000))  # the newest result is kept even if alone it is too big
    assert huge.ids() == ["big"]


def test_bounds_apply_to_leftovers_on_start(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    for index in range(20):
        box.add(result(f"r{index}"))
    box.flush()
    smaller = Outbox(tmp_path / "outbox", max_results=10)
    assert smaller.ids() == [f"r{index}" for index in range(10, 20)]


def test_debris_and_corrupt_files_are_discarded(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    box = Outbox(directory)
    box.add(result("good"))
    box.flush()
    (directory / "00000000000000000001-bad.json").write_text("{not json")
    (directory / ".00000000000000000002-x.json.1234.tmp").write_text("half")
    (directory / "00000000000000000003-weird.json").write_text('{"id": 5, "result": {}}')
    again = Outbox(directory)
    assert again.ids() == ["good"]
    names = [p.name for p in directory.iterdir()]
    assert len(names) == 1 and names[0].endswith("-good.json")


def test_unsafe_ids_become_safe_file_names(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.add(result("../../etc/passwd"))
    box.flush()
    (name,) = [p.name for p in (tmp_path / "outbox").iterdir()]
    assert "/" not in name and ".." not in name
    assert Outbox(tmp_path / "outbox").ids() == ["../../etc/passwd"]


def test_result_without_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="id"):
        Outbox(tmp_path / "outbox").add({"ok": True})


# ----------------------------------------------------------------------------- group commit


def test_nothing_is_offered_for_sending_before_it_is_durable(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.add(result("a"))
    assert list(box.ready()) == [] and box.get("a") == result("a")
    assert not list((tmp_path / "outbox").glob("*.json"))  # nothing written yet
    assert Outbox(tmp_path / "other").ids() == []
    box.flush()
    assert list(box.ready()) == ["a"] and box.changed.is_set()
    assert Outbox(tmp_path / "outbox").ids() == ["a"]


def test_a_result_acknowledged_or_dropped_during_its_round_leaves_no_file(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    box = Outbox(directory, max_results=2)
    box.add(result("a"))
    box.add(result("b"))
    batch = box.begin_commit()
    box.add(result("c"))  # drops "a", which is being written
    box.add(result("b"))  # replaces "b", which is being written
    write_batch(directory, batch)
    box.end_commit(batch, ok=True)
    assert list(box.ready()) == []  # the current "b" and "c" are not written yet
    box.flush()
    assert box.ids() == ["c", "b"] and list(box.ready()) == ["c", "b"]
    assert len(list(directory.glob("*.json"))) == 2
    assert Outbox(directory).ids() == ["c", "b"]


def test_a_failed_round_is_retried_by_the_next(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    box = Outbox(directory)
    box.add(result("a"))
    batch = box.begin_commit()
    box.end_commit(batch, ok=False)  # as if write_batch had raised
    assert list(box.ready()) == []
    box.flush()
    assert list(box.ready()) == ["a"] and Outbox(directory).ids() == ["a"]


def test_acknowledged_files_go_with_the_next_round(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    box = Outbox(directory)
    for name in ("a", "b"):
        box.add(result(name))
    box.flush()
    box.ack("a")
    assert len(list(directory.glob("*.json"))) == 2  # lazily: a crash now resends "a" (deduplicated)
    box.flush()
    assert Outbox(directory).ids() == ["b"]


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


async def test_group_commit_serves_many_callers_per_round(tmp_path: Path) -> None:
    from vantage.agent.commit import GroupCommit
    from vantage.protocol import ReplayCache

    box = Outbox(tmp_path / "outbox")
    replay = ReplayCache(tmp_path / "replay")
    commit = GroupCommit(box, replay)
    for index in range(50):
        box.add(result(f"r{index}"))
        replay.check_and_add(f"{index:032x}", 4_000_000_000)
    await asyncio.gather(*(commit.results() for _ in range(25)), *(commit.nonces() for _ in range(25)))
    assert commit.rounds == 1
    assert list(box.ready()) == [f"r{index}" for index in range(50)]
    assert Outbox(tmp_path / "outbox").ids() == box.ids()
    box.ack("r0")
    commit.request()  # no waiter: the acknowledged file still goes soon
    await asyncio.sleep(0.2)
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 49
    await commit.close()
    replay.close()


async def test_group_commit_reports_an_outbox_failure_to_result_waiters_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vantage.agent import commit as commit_module

    def broken(directory: Path, batch: object) -> None:
        raise OSError(28, "No space left on device")

    box = Outbox(tmp_path / "outbox")
    commit = commit_module.GroupCommit(box, None)
    monkeypatch.setattr(commit_module, "write_batch", broken)
    box.add(result("a"))
    with pytest.raises(OSError, match="No space"):
        await commit.results()
    await commit.nonces()  # the replay cache is fine
    assert list(box.ready()) == []  # still pending: retried by the next round
    monkeypatch.undo()
    await commit.results()
    assert list(box.ready()) == ["a"]
