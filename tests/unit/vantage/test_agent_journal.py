"""The journal: records, recovery after crashes (torn and corrupt records), compaction, older formats."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vantage.agent import journal as journal_module
from vantage.agent.commit import open_state
from vantage.agent.journal import (
    Journal,
    JournalBusy,
    Snapshot,
    ack_record,
    nonce_record,
    read_journal,
    result_record,
)

NOW = 1_800_000_000.0


def nonce(i: int) -> str:
    return f"{i:032x}"


def result(result_id: str, pad: int = 0) -> bytes:
    return json.dumps({"id": result_id, "ok": True, "details": {"pad": "x" * pad}}).encode()


def files(state: Path) -> list[Path]:
    return sorted((state / "journal").glob("*.log"))


def test_records_survive_a_restart_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write(
        [
            nonce_record([(nonce(1), NOW + 60)]),
            result_record(result("a")),
            result_record(result("b")),
            result_record(result("c")),
            ack_record("b"),
            nonce_record([(nonce(1), NOW + 90)]),  # the later expiry wins
            result_record(result("a", pad=3)),  # the same id again: replaced, and now the newest
        ]
    )
    # no close(): a crash must not lose anything that was written and flushed
    recovered = read_journal(tmp_path)
    assert recovered.nonces == {nonce(1): NOW + 90}
    assert list(recovered.results) == ["c", "a"]
    assert recovered.results["a"] == result("a", pad=3)
    assert recovered.skipped == 0


def test_the_files_are_private(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write([result_record(result("a"))])
    assert stat.S_IMODE((tmp_path / "journal").stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in files(tmp_path)] == [0o600]


def test_a_torn_last_record_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write([nonce_record([(nonce(1), NOW + 60)]), result_record(result("a"))])
    journal.close()
    with files(tmp_path)[0].open("ab") as handle:  # a crash in the middle of a write
        handle.write(result_record(result("b"))[:25])
    state = open_state(tmp_path)  # never crashes on it
    assert nonce(1) in state.replay and state.outbox.ids() == ["a"]
    # and the fresh generation written at start no longer holds the torn bytes
    assert [p.name for p in files(tmp_path)] == ["00000000000000000002.log"]
    assert read_journal(tmp_path).skipped == 0


def test_corrupt_records_are_skipped_without_stopping(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = [nonce_record([(nonce(1), NOW + 60)]), result_record(result("a")), result_record(result("b"))]
    flipped = bytearray(result_record(result("x")))
    flipped[-3] ^= 0x01  # a bit flipped on disk: the checksum no longer matches
    garbage = [bytes(flipped), b"not a record\n", b"0000zzzz N x 1\n", nonce_record([("bad nonce", NOW)])]
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "00000000000000000001.log").write_bytes(
        journal_module.HEADER + good[0] + garbage[0] + garbage[1] + good[1] + garbage[2] + garbage[3] + good[2]
    )
    recovered = Journal(tmp_path).recover()
    assert recovered.nonces == {nonce(1): NOW + 60}
    assert list(recovered.results) == ["a", "b"]
    assert recovered.skipped == 4
    assert "skipped 4 torn or corrupt record(s)" in caplog.text


def test_a_foreign_file_in_the_directory_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "00000000000000000007.log").write_bytes(b"something else\n")
    recovered = read_journal(tmp_path)
    assert recovered.results == {} and recovered.nonces == {}


def test_start_writes_the_live_state_as_one_new_generation(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    first.write([nonce_record([(nonce(1), NOW + 60)]), result_record(result("a"))])
    first.write([result_record(result("b")), ack_record("a")])  # same file
    first.close()
    again = Journal(tmp_path)
    again.recover()
    again.start(Snapshot([(nonce(1), NOW + 60)], [result("b")]))
    assert [p.name for p in files(tmp_path)] == ["00000000000000000002.log"]
    lines = files(tmp_path)[0].read_bytes().splitlines()
    assert lines[0] + b"\n" == journal_module.HEADER and len(lines) == 3


def test_compaction_keeps_the_files_bounded(tmp_path: Path) -> None:
    """Under a steady load of short-lived nonces and acknowledged results, the files stay small."""
    import asyncio

    from vantage.agent.commit import GroupCommit

    async def run() -> tuple[int, int, int]:
        state = open_state(tmp_path, compact_min_bytes=64 * 1024)
        commit = GroupCommit(state.journal, state.outbox, state.replay)
        largest = 0
        for step in range(3000):
            now = NOW + step / 10  # 10 checks per "second", nonces live 30 "seconds"
            state.replay.check_and_add(nonce(step), now + 30, now)
            state.outbox.add(f"r{step}", result(f"r{step}", pad=200))
            if step >= 5:
                state.outbox.ack(f"r{step - 5}")  # a few unacknowledged at any time
            if step % 10 == 0:
                await commit.durable()
                largest = max(largest, sum(p.stat().st_size for p in files(tmp_path)))
        await commit.close()
        return largest, commit.compactions, len(files(tmp_path))

    largest, compactions, count = asyncio.run(run())
    # ~280 bytes per check, 3000 checks: ~840 KB written in all; the files never held much of it
    assert compactions >= 5
    assert largest < 4 * 64 * 1024
    assert count == 1
    recovered = read_journal(tmp_path)
    assert list(recovered.results) == [f"r{i}" for i in range(2995, 3000)]
    assert nonce(2999) in recovered.nonces and nonce(0) not in recovered.nonces


def test_a_failed_write_moves_on_to_a_new_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    journal.write([result_record(result("a"))])
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        journal.write([result_record(result("b"))])
    monkeypatch.setattr(os, "fsync", real_fsync)
    journal.write([result_record(result("b")), result_record(result("c"))])  # the round retried
    assert len(files(tmp_path)) == 2
    assert list(read_journal(tmp_path).results) == ["a", "b", "c"]


def test_older_formats_are_imported_once_then_removed(tmp_path: Path) -> None:
    """The replay-cache file and the one-file-per-result outbox of earlier versions."""
    (tmp_path / "replay_cache").write_text(f"vantage-replay v1\n{nonce(1)} {NOW + 60}\n{nonce(2)} {NOW + 90}\n")
    (tmp_path / "outbox").mkdir()
    for seq, result_id in enumerate(("old-1", "old-2")):
        record = {"id": result_id, "result": {"id": result_id, "ok": True}}
        (tmp_path / "outbox" / f"{seq:020d}-{result_id}.json").write_text(json.dumps(record))
    (tmp_path / "outbox" / ".debris.tmp").write_text("half")
    state = open_state(tmp_path)
    assert nonce(1) in state.replay and nonce(2) in state.replay
    assert state.outbox.ids() == ["old-1", "old-2"]
    assert json.loads(state.outbox.get("old-1") or b"") == {"id": "old-1", "ok": True}
    assert not (tmp_path / "replay_cache").exists() and not (tmp_path / "outbox").exists()
    state.journal.close()
    again = open_state(tmp_path)  # from the journal alone now
    assert again.outbox.ids() == ["old-1", "old-2"] and nonce(2) in again.replay


def test_a_crash_in_the_middle_of_a_compaction_loses_nothing(tmp_path: Path) -> None:
    """Killed while writing the new generation, or before removing the old ones."""
    first = Journal(tmp_path)
    first.write([nonce_record([(nonce(1), NOW + 60)]), result_record(result("a")), result_record(result("b"))])
    first.write([ack_record("a"), result_record(result("c"))])
    first.close()
    old = files(tmp_path)[0].read_bytes()
    snapshot = journal_module.HEADER + nonce_record([(nonce(1), NOW + 60)]) + result_record(result("b"))
    snapshot += result_record(result("c"))
    expected = ({nonce(1): NOW + 60}, ["b", "c"])
    # 1. the new generation was cut short in the middle of a record
    (tmp_path / "journal" / "00000000000000000002.log").write_bytes(snapshot[:-7])
    recovered = read_journal(tmp_path)
    assert (recovered.nonces, list(recovered.results)) == expected
    # 2. the new generation was complete, the old one not removed yet
    (tmp_path / "journal" / "00000000000000000002.log").write_bytes(snapshot)
    recovered = read_journal(tmp_path)
    assert (recovered.nonces, list(recovered.results)) == expected
    assert files(tmp_path)[0].read_bytes() == old
    # and the next start leaves one generation holding the same state
    state = open_state(tmp_path)
    assert state.outbox.ids() == ["b", "c"] and nonce(1) in state.replay
    assert [p.name for p in files(tmp_path)] == ["00000000000000000003.log"]


def test_one_process_at_a_time_holds_a_state_directory(tmp_path: Path) -> None:
    """A second agent on the same directory fails at start; a dead holder lets go, however it died."""
    import signal
    import subprocess
    import sys

    holder = open_state(tmp_path)
    with pytest.raises(JournalBusy, match="in use by another agent process"):
        open_state(tmp_path)
    assert read_journal(tmp_path).results == {}  # reading is always possible
    holder.journal.close()
    open_state(tmp_path).journal.close()
    code = (
        "import sys, time; from pathlib import Path; from vantage.agent.commit import open_state; "
        "open_state(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        with pytest.raises(JournalBusy):
            open_state(tmp_path)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        open_state(tmp_path).journal.close()
    finally:
        process.kill()
        process.wait(10)


def test_nonces_accepted_together_are_one_record_recovered_whole_or_not_at_all(tmp_path: Path) -> None:
    """A batch's nonces: one record, one checksum; a torn one is lost whole (it was never acted on)."""
    together = [(nonce(i), NOW + 60 + i) for i in range(1, 4)]
    journal = Journal(tmp_path)
    journal.write([nonce_record(together)])
    journal.close()
    assert sorted(read_journal(tmp_path).nonces.items()) == together
    data = files(tmp_path)[0].read_bytes()
    files(tmp_path)[0].write_bytes(data[:-10])  # torn in the middle of the third nonce
    recovered = read_journal(tmp_path)
    assert recovered.nonces == {} and recovered.skipped == 1
    with pytest.raises(ValueError):
        nonce_record([])


def test_a_snapshot_of_many_nonces_is_cheap_to_write(tmp_path: Path) -> None:
    """Compaction formats nonces a few thousand to a record, not one record each."""
    many = [(nonce(i), NOW + i) for i in range(10_000)]
    records = list(Snapshot(many, []).records())
    assert len(records) == -(-len(many) // journal_module.SNAPSHOT_NONCES_PER_RECORD)
    journal = Journal(tmp_path)
    journal.write([], Snapshot(many, []))
    journal.close()
    assert len(read_journal(tmp_path).nonces) == 10_000
