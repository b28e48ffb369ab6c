"""The replay cache: expiry, the size bound, atomic groups, the persistence sink and seeding."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from vantage.protocol import ReplayCache, VerificationError

NOW = 1_800_000_000.0


def nonce(i: int) -> str:
    return f"{i:032x}"


def reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(VerificationError) as excinfo:
        call()
    return excinfo.value.reason


def test_a_nonce_is_accepted_once() -> None:
    cache = ReplayCache()
    cache.check_and_add(nonce(1), NOW + 60, NOW)
    with pytest.raises(VerificationError) as excinfo:
        cache.check_and_add(nonce(1), NOW + 60, NOW + 1)
    assert excinfo.value.reason == "replayed" and excinfo.value.nonce == nonce(1)
    cache.check_and_add(nonce(2), NOW + 60, NOW + 1)
    assert nonce(1) in cache and len(cache) == 2


def test_nonces_are_kept_until_their_expiry_has_passed() -> None:
    cache = ReplayCache()
    cache.check_and_add(nonce(1), NOW + 60, NOW)
    with pytest.raises(VerificationError):
        cache.check_and_add(nonce(1), NOW + 200, NOW + 60)  # at expires_at: still kept
    assert cache.prune(NOW + 61) == 1
    assert nonce(1) not in cache
    cache.check_and_add(nonce(1), NOW + 200, NOW + 61)


def test_when_full_new_nonces_are_refused_rather_than_old_ones_forgotten() -> None:
    cache = ReplayCache(max_entries=3)
    for i in range(3):
        cache.check_and_add(nonce(i), NOW + 60, NOW)
    assert reason(lambda: cache.check_and_add(nonce(9), NOW + 60, NOW)) == "replay_cache_full"
    assert all(nonce(i) in cache for i in range(3))
    cache.check_and_add(nonce(9), NOW + 200, NOW + 61)  # room again once the others expired


def test_a_group_is_recorded_whole_or_not_at_all() -> None:
    cache = ReplayCache(max_entries=5)
    cache.check_and_add(nonce(1), NOW + 60, NOW)
    # one seen nonce refuses the group, and none of the new ones is recorded
    assert reason(lambda: cache.check_and_add_many([(nonce(2), NOW + 60), (nonce(1), NOW + 60)], NOW)) == (
        "replayed"
    )
    assert nonce(2) not in cache
    # a nonce twice in the group
    with pytest.raises(VerificationError) as excinfo:
        cache.check_and_add_many([(nonce(3), NOW + 60), (nonce(4), NOW + 60), (nonce(3), NOW + 60)], NOW)
    assert excinfo.value.reason == "replayed" and excinfo.value.nonce == nonce(3)
    assert nonce(3) not in cache and nonce(4) not in cache
    # a group that does not fit whole
    group = [(nonce(i), NOW + 60) for i in range(10, 15)]
    assert reason(lambda: cache.check_and_add_many(group, NOW)) == "replay_cache_full"
    assert len(cache) == 1
    cache.check_and_add_many(group[:4], NOW)
    assert len(cache) == 5


def test_the_sink_sees_each_group_before_it_is_accepted_and_can_refuse_it() -> None:
    persisted: list[list[tuple[str, float]]] = []
    fail = False

    def sink(entries: Sequence[tuple[str, float]]) -> None:
        if fail:
            raise OSError(28, "No space left on device")
        persisted.append(list(entries))

    cache = ReplayCache(sink=sink)
    cache.check_and_add_many([(nonce(1), NOW + 60), (nonce(2), NOW + 61)], NOW)
    assert persisted == [[(nonce(1), NOW + 60), (nonce(2), NOW + 61)]]
    # a refused group never reaches the sink
    assert reason(lambda: cache.check_and_add(nonce(1), NOW + 60, NOW)) == "replayed"
    assert len(persisted) == 1
    fail = True
    assert reason(lambda: cache.check_and_add(nonce(3), NOW + 60, NOW)) == "replay_cache_error"
    assert nonce(3) not in cache


def test_load_seeds_the_cache_and_expired_entries_go_by_the_callers_clock() -> None:
    cache = ReplayCache()
    cache.load([(nonce(1), NOW + 10), (nonce(2), NOW + 100), (nonce(2), NOW + 50)])  # the later expiry wins
    assert reason(lambda: cache.check_and_add(nonce(2), NOW + 60, NOW + 60)) == "replayed"
    cache.check_and_add(nonce(1), NOW + 60, NOW + 20)  # expired by then: accepted again
    assert sorted(cache.entries(NOW + 20)) == [(nonce(1), NOW + 60), (nonce(2), NOW + 100)]
    assert cache.entries(NOW + 101) == []


@pytest.mark.parametrize("bad", ["", "a b", "a\nb", "x" * 129, "é" * 4])
def test_nonces_that_would_break_the_record_format_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ReplayCache().check_and_add(bad, NOW + 60, NOW)
    with pytest.raises(ValueError):
        ReplayCache().check_and_add_many([(nonce(1), NOW + 60), (bad, NOW + 60)], NOW)


def test_expiry_must_be_finite() -> None:
    with pytest.raises(ValueError):
        ReplayCache().check_and_add(nonce(1), float("nan"), NOW)
