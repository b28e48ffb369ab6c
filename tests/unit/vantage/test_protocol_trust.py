"""Trust stores: validation, the trust rule, stricter-wins merging and atomic persistence."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vantage.protocol import TrustedKey, TrustStore, generate_key, key_id, public_key_b64

NOW = 1_800_000_000.0


def entry(status: str = "active", not_after: float | None = None) -> TrustedKey:
    key = generate_key()
    return TrustedKey(key_id(key), public_key_b64(key), status, not_after)


def test_json_round_trip_has_the_documented_shape() -> None:
    a, b = entry(), entry("next", NOW)
    store = TrustStore.from_json({"keys": [a.to_json(), b.to_json()]})
    doc = store.to_json()
    assert set(doc) == {"keys"}
    assert sorted(doc["keys"], key=lambda k: k["keyid"]) == sorted(
        [
            {"keyid": a.keyid, "public_key": a.public_key, "status": "active", "not_after": None},
            {"keyid": b.keyid, "public_key": b.public_key, "status": "next", "not_after": NOW},
        ],
        key=lambda k: k["keyid"],
    )
    assert TrustStore.from_json(doc) == store


def test_a_keyid_not_matching_its_public_key_invalidates_the_file() -> None:
    good, other = entry(), entry()
    bad = {"keyid": other.keyid, "public_key": good.public_key, "status": "active", "not_after": None}
    with pytest.raises(ValueError, match=rf"#1 \('{other.keyid}'\).*does not match"):
        TrustStore.from_json({"keys": [good.to_json(), bad]})


@pytest.mark.parametrize(
    "patch",
    [
        {"status": "revoked"},
        {"not_after": "tomorrow"},
        {"not_after": True},
        {"public_key": "xx"},
    ],
)
def test_invalid_entries_are_refused(patch: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="#0"):
        TrustStore.from_json({"keys": [{**entry().to_json(), **patch}]})


@pytest.mark.parametrize("doc", [[], {"keys": {}}, {"keys": ["x"]}, "keys"])
def test_invalid_documents_are_refused(doc: object) -> None:
    with pytest.raises(ValueError):
        TrustStore.from_json(doc)


def test_trust_rule() -> None:
    active, nxt, retired, limited = entry(), entry("next"), entry("retired"), entry("active", NOW)
    store = TrustStore([active, nxt, retired, limited])
    assert store.is_trusted(active.keyid, NOW)
    assert store.is_trusted(nxt.keyid, NOW)
    assert not store.is_trusted(retired.keyid, NOW)
    assert store.is_trusted(limited.keyid, NOW - 0.001)
    assert not store.is_trusted(limited.keyid, NOW)
    assert not store.is_trusted("0123456789abcdef", NOW)
    assert store.get("0123456789abcdef") is None
    assert key_id(store.public_key(active.keyid)) == active.keyid
    with pytest.raises(KeyError):
        store.public_key("0123456789abcdef")


def test_merge_keeps_the_stricter_entry() -> None:
    a, b, c = entry(), entry(), entry()
    mounted = TrustStore([a, b, c])
    persisted = TrustStore(
        [
            TrustedKey(a.keyid, a.public_key, "retired"),
            TrustedKey(b.keyid, b.public_key, "active", NOW + 100),
            entry("next"),
        ]
    )
    later = TrustStore([TrustedKey(b.keyid, b.public_key, "active", NOW + 500)])
    merged = mounted.merge(persisted).merge(later)
    assert len(merged) == 4
    assert merged.get(a.keyid).status == "retired"  # type: ignore[union-attr]
    assert merged.get(b.keyid).not_after == NOW + 100  # type: ignore[union-attr]
    assert merged.get(c.keyid) == c
    assert len(mounted) == 3  # merge returns a new store
    # and the other way round gives the same result
    assert persisted.merge(later).merge(mounted) == merged


def test_add_never_revives_a_retired_key_and_retire_keeps_the_earlier_limit() -> None:
    k = entry("retired")
    store = TrustStore([k])
    store.add(TrustedKey(k.keyid, k.public_key, "active"))
    assert not store.is_trusted(k.keyid, NOW)
    other = entry()
    store.add(other)
    store.retire(other.keyid, NOW + 10)
    store.retire(other.keyid, NOW + 1000)
    assert store.get(other.keyid).not_after == NOW + 10  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        store.retire("0123456789abcdef", NOW)


def test_entries_handed_out_are_copies() -> None:
    k = entry()
    store = TrustStore([k])
    k.status = "retired"
    store.keys[0].status = "retired"
    store.get(k.keyid).status = "retired"  # type: ignore[union-attr]
    assert store.is_trusted(k.keyid, NOW)


def test_save_and_load(tmp_path: Path) -> None:
    store = TrustStore([entry(), entry("next", NOW)])
    path = tmp_path / "trusted_keys.json"
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert TrustStore.load(path) == store
    assert json.loads(path.read_text()) == store.to_json()
    store.add(entry())
    store.save(path)  # overwrites
    assert len(TrustStore.load(path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["trusted_keys.json"]


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nothing\.json"):
        TrustStore.load(tmp_path / "nothing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json"):
        TrustStore.load(broken)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"keys": [{**entry().to_json(), "keyid": "0123456789abcdef"}]}))
    with pytest.raises(ValueError, match=r"invalid\.json.*#0"):
        TrustStore.load(invalid)


def test_single_key() -> None:
    key = generate_key()
    for form in (key, key.public_key(), public_key_b64(key)):
        store = TrustStore.single_key(form)
        assert [k.keyid for k in store.keys] == [key_id(key)]
        assert store.is_trusted(key_id(key), NOW)


def test_save_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        TrustStore([entry()]).save(tmp_path / "trusted_keys.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "trusted_keys.json").stat().st_mode) == 0o644


def test_extra_fields_are_ignored_and_defaults_apply() -> None:
    k = entry()
    store = TrustStore.from_json({"keys": [{"keyid": k.keyid, "public_key": k.public_key, "created_at": 1}]})
    assert store.keys == [TrustedKey(k.keyid, k.public_key, "active", None)]
