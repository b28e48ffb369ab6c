"""The replay cache: persistence across restarts, expiry, the size bound, cheap appends."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from vantage.protocol import ReplayCache, VerificationError
from vantage.protocol import replay as replay_module

NOW = 1_800_000_000.0


def nonce(i: int) -> str:
    return f"{i:032x}"


def test_a_nonce_is_accepted_once(tmp_path: Path) -> None:
    with ReplayCache(tmp_path / "replay") as cache:
        cache.check_and_add(nonce(1), NOW + 60, NOW)
        with pytest.raises(VerificationError) as excinfo:
            cache.check_and_add(nonce(1), NOW + 60, NOW + 1)
        assert excinfo.value.reason == "replayed"
        cache.check_and_add(nonce(2), NOW + 60, NOW + 1)
        assert nonce(1) in cache and len(cache) == 2


def test_nonces_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    first = ReplayCache(path)
    first.check_and_add(nonce(1), NOW + 60, NOW)
    # no close(): a crash must not lose the nonce
    second = ReplayCache(path)
    with pytest.raises(VerificationError, match="replayed"):
        second.check_and_add(nonce(1), NOW + 60, NOW + 5)
    first.close()
    second.close()


def test_the_state_file_is_private(tmp_path: Path) -> None:
    with ReplayCache(tmp_path / "replay") as cache:
        cache.check_and_add(nonce(1), NOW + 60, NOW)
    assert stat.S_IMODE((tmp_path / "replay").stat().st_mode) == 0o600


def test_nonces_are_kept_until_their_expiry_has_passed(tmp_path: Path) -> None:
    with ReplayCache(tmp_path / "replay") as cache:
        cache.check_and_add(nonce(1), NOW + 60, NOW)
        with pytest.raises(VerificationError):
            cache.check_and_add(nonce(1), NOW + 200, NOW + 60)  # at expires_at: still kept
        assert cache.prune(NOW + 61) == 1
        assert nonce(1) not in cache
        cache.check_and_add(nonce(1), NOW + 200, NOW + 61)


def test_compaction_drops_expired_entries_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    with ReplayCache(path) as cache:
        cache.check_and_add(nonce(1), NOW + 10, NOW)
        cache.check_and_add(nonce(2), NOW + 1000, NOW)
        cache.check_and_add(nonce(3), NOW + 1000, NOW + 20)  # prunes nonce 1
    with ReplayCache(path) as cache:
        # expiry is judged by the caller's clock, so loading keeps everything until told the time
        assert cache.prune(NOW + 20) == 1
        assert len(cache) == 2
        cache.compact()
    assert nonce(1) not in path.read_text()
    assert nonce(2) in path.read_text()


def test_when_full_new_nonces_are_refused_rather_than_old_ones_forgotten(tmp_path: Path) -> None:
    with ReplayCache(tmp_path / "replay", max_entries=3) as cache:
        for i in range(3):
            cache.check_and_add(nonce(i), NOW + 60, NOW)
        with pytest.raises(VerificationError) as excinfo:
            cache.check_and_add(nonce(9), NOW + 60, NOW)
        assert excinfo.value.reason == "replay_cache_full"
        assert all(nonce(i) in cache for i in range(3))
        cache.check_and_add(nonce(9), NOW + 200, NOW + 61)  # room again once the others expired


def test_appends_are_cheap_and_the_file_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rewrites: list[Path] = []
    real_atomic_write = replay_module.atomic_write

    def counting_atomic_write(path: Path, data: bytes, **kwargs: object) -> None:
        rewrites.append(path)
        real_atomic_write(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(replay_module, "atomic_write", counting_atomic_write)
    path = tmp_path / "replay"
    count = 20_000
    started = time.perf_counter()
    with ReplayCache(path) as cache:
        for i in range(count):
            # each nonce lives 2 "seconds" at 100 instructions per "second": ~200 live at a time
            now = NOW + i / 100
            cache.check_and_add(nonce(i), now + 2, now)
        elapsed = time.perf_counter() - started
        assert len(cache) <= 201
    assert elapsed < 10  # thousands per second in practice; generous for slow CI
    assert 1 < len(rewrites) <= 10  # compacted now and then, never rewritten per nonce
    lines = path.read_text().splitlines()
    assert lines[0] == replay_module.HEADER
    assert len(lines) <= 1 + replay_module.COMPACT_MIN_LINES + 1
    # the newest nonces are still remembered after a restart
    with ReplayCache(path) as restarted, pytest.raises(VerificationError, match="replayed"):
        restarted.check_and_add(nonce(count - 1), NOW + count / 100 + 2, NOW + count / 100)


def test_a_foreign_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    path.write_text("important data\n")
    with pytest.raises(ValueError, match="not a Vantage replay cache"):
        ReplayCache(path)
    assert path.read_text() == "important data\n"


def test_corrupt_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    torn = nonce(3)[:20]
    path.write_text(f"{replay_module.HEADER}\n{nonce(1)} {NOW + 60}\ngarbage\n{nonce(2)} nan\n{torn}")
    with ReplayCache(path) as cache:
        assert len(cache) == 1
        with pytest.raises(VerificationError):
            cache.check_and_add(nonce(1), NOW + 60, NOW)


def test_in_memory_cache(tmp_path: Path) -> None:
    cache = ReplayCache(None)
    cache.check_and_add(nonce(1), NOW + 60, NOW)
    with pytest.raises(VerificationError):
        cache.check_and_add(nonce(1), NOW + 60, NOW)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "a b", "a\nb", "x" * 129])
def test_nonces_that_would_break_the_file_format_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ReplayCache(None).check_and_add(bad, NOW + 60, NOW)


def test_a_failed_append_is_refused_and_does_not_corrupt_later_entries(tmp_path: Path) -> None:
    path = tmp_path / "replay"
    cache = ReplayCache(path)
    real_file = cache._open()

    class HalfWrite:
        def write(self, data: memoryview) -> int:
            real_file.write(data[:10])
            raise OSError(28, "No space left on device")

    cache._file = HalfWrite()  # type: ignore[assignment]
    with pytest.raises(VerificationError) as excinfo:
        cache.check_and_add(nonce(1), NOW + 60, NOW)
    assert excinfo.value.reason == "replay_cache_error"
    assert nonce(1) not in cache
    cache._file = real_file
    cache.check_and_add(nonce(2), NOW + 60, NOW)
    cache.close()
    with ReplayCache(path) as restarted:
        assert nonce(2) in restarted
        assert len(restarted) == 1


def test_sync_flushes_new_appends_once_and_may_run_in_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    flushes: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushes.append(fd), real_fsync(fd))[1])
    path = tmp_path / "replay"
    with ReplayCache(path) as cache:  # no fsync per nonce
        flushes.clear()
        cache.check_and_add("a" * 32, NOW + 60, NOW)
        assert flushes == []
        worker = threading.Thread(target=cache.sync)
        worker.start()
        cache.check_and_add("b" * 32, NOW + 60, NOW)
        worker.join()
        cache.sync()
        count = len(flushes)
        assert 1 <= count <= 2
        cache.sync()  # nothing new: no flush
        assert len(flushes) == count
    with ReplayCache(path) as restarted:
        for nonce in ("a" * 32, "b" * 32):
            with pytest.raises(VerificationError, match="replayed"):
                restarted.check_and_add(nonce, NOW + 60, NOW)
