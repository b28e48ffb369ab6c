"""Signing keys (creation, rotation, crash recovery) and the CLI's option handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from vantage.control_plane import cli
from vantage.control_plane.keys import SigningKeys
from vantage.control_plane.store import Store
from vantage.protocol import TrustStore, generate_key, key_id, load_private_key, write_private_key


async def _keys(tmp_path: Path) -> SigningKeys:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.create_schema()
    return SigningKeys(tmp_path / "keys" / "signing.pem", store)


async def test_key_created_0600_and_published(tmp_path: Path) -> None:
    keys = await _keys(tmp_path)
    assert (await keys.load()) is True
    assert (keys.path.stat().st_mode & 0o777) == 0o600
    assert keys.keyid == key_id(load_private_key(keys.path))
    store = TrustStore.from_json(await keys.trust_json())
    assert store.is_trusted(keys.keyid)
    again = SigningKeys(keys.path, keys.store)
    assert (await again.load()) is False and again.keyid == keys.keyid
    assert again.pending_rotation() is None


async def test_rotation_persists_and_survives_restart(tmp_path: Path) -> None:
    keys = await _keys(tmp_path)
    await keys.load()
    old = keys.keyid
    rotation = await keys.rotate(grace_s=3600)
    assert key_id(rotation.old) == old and keys.keyid == key_id(rotation.new) != old
    assert rotation.body()["retire_keyid"] == old and rotation.body()["key"]["keyid"] == keys.keyid
    assert (keys.prev_path.stat().st_mode & 0o777) == 0o600 and not keys.next_path.exists()
    statuses = {k["keyid"]: (k["status"], k["not_after"]) for k in (await keys.trust_json())["keys"]}
    assert statuses == {old: ("active", rotation.retire_at), keys.keyid: ("active", None)}
    restarted = SigningKeys(keys.path, keys.store)
    await restarted.load()
    assert restarted.keyid == keys.keyid
    pending = restarted.pending_rotation()
    assert pending is not None and key_id(pending.old) == old


async def test_rotation_with_zero_grace_retires_old_key(tmp_path: Path) -> None:
    keys = await _keys(tmp_path)
    await keys.load()
    old = keys.keyid
    await keys.rotate(grace_s=0)
    statuses = {k["keyid"]: k["status"] for k in (await keys.trust_json())["keys"]}
    assert statuses[old] == "retired"
    assert keys.pending_rotation() is None


async def test_interrupted_rotation_is_completed_or_discarded(tmp_path: Path) -> None:
    keys = await _keys(tmp_path)
    await keys.load()
    # crash after writing .next but before the database knew: discarded
    write_private_key(keys.next_path, generate_key())
    again = SigningKeys(keys.path, keys.store)
    await again.load()
    assert again.keyid == keys.keyid and not keys.next_path.exists()
    # crash after the database commit but before the files were renamed: completed
    rotation = await keys.rotate(grace_s=60)
    import os

    os.replace(keys.path, keys.next_path)  # put the files back as they were mid-rotation
    os.replace(keys.prev_path, keys.path)
    third = SigningKeys(keys.path, keys.store)
    await third.load()
    assert third.keyid == key_id(rotation.new) and not keys.next_path.exists()


async def test_replaced_key_file_retires_the_old_key(tmp_path: Path) -> None:
    keys = await _keys(tmp_path)
    await keys.load()
    old = keys.keyid
    write_private_key(keys.path, generate_key(), overwrite=True)
    again = SigningKeys(keys.path, keys.store)
    await again.load()
    statuses = {k["keyid"]: k["status"] for k in (await again.trust_json())["keys"]}
    assert statuses[old] == "retired" and statuses[again.keyid] == "active"


async def test_a_replica_with_another_key_refuses_to_start(tmp_path: Path) -> None:
    keys = await _keys(tmp_path)
    await keys.load()
    other = SigningKeys(tmp_path / "other" / "signing.pem", keys.store)
    with pytest.raises(RuntimeError, match="give every replica the same key file"):
        await other.load(shared=True)
    assert {k["keyid"] for k in (await keys.trust_json())["keys"]} == {keys.keyid}


# --- CLI -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:0", ("127.0.0.1", 0)), ("0.0.0.0:8443", ("0.0.0.0", 8443)), ("[::1]:9", ("::1", 9)),
     ("localhost:80", ("localhost", 80))],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert cli.parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8443", ":8443", "host:", "host:x", "host:70000", "::1:80"])
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(cli.UsageError):
        cli.parse_listen(value)


def _base(tmp_path: Path) -> list[str]:
    (tmp_path / "token").write_text("cli-admin-token-0123456789")
    return ["--db", f"sqlite:///{tmp_path / 'db'}", "--signing-key", str(tmp_path / "k.pem"),
            "--admin-token-file", str(tmp_path / "token")]


def test_options_and_env_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = cli.parse_options(["--listen", "127.0.0.1:0", "--heartbeat-interval", "2", *_base(tmp_path)])
    assert options.settings.heartbeat_interval == 2.0 and options.settings.admin_token == "cli-admin-token-0123456789"
    assert options.ssl_context is None and options.port == 0
    monkeypatch.setenv("VANTAGE_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("VANTAGE_DB_URL", "sqlite:///x.db")
    monkeypatch.setenv("VANTAGE_SIGNING_KEY", str(tmp_path / "env.pem"))
    monkeypatch.setenv("VANTAGE_UNAVAILABLE_GRACE", "7")
    monkeypatch.setenv("VANTAGE_PUBLIC_URL", "https://CP.example.com/")
    options = cli.parse_options([])
    assert options.settings.db_url == "sqlite:///x.db" and options.settings.unavailable_grace == 7.0
    assert options.settings.public_url == "https://cp.example.com:443"
    assert (options.host, options.port) == ("0.0.0.0", 8443)
    assert (options.settings.message_rate, options.settings.message_burst) == (1000.0, 2000.0)
    monkeypatch.setenv("VANTAGE_SESSION_MESSAGE_RATE", "300")
    assert cli.parse_options([]).settings.message_rate == 300.0
    options = cli.parse_options(["--session-message-rate", "250"])
    assert (options.settings.message_rate, options.settings.message_burst) == (250.0, 500.0)
    options = cli.parse_options(["--replica-timeout", "4", "--hello-timeout", "3", "--max-unauthenticated", "10",
                                 "--max-unauthenticated-per-address", "2"])
    settings = options.settings
    assert (settings.replica_timeout, settings.hello_timeout) == (4.0, 3.0)
    assert (settings.max_unauthenticated, settings.max_unauthenticated_per_address) == (10, 2)
    defaults = cli.parse_options([]).settings
    assert (defaults.replica_timeout, defaults.hello_timeout, defaults.max_unauthenticated,
            defaults.max_unauthenticated_per_address) == (10.0, 10.0, 1024, 64)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--heartbeat-interval", "0"], "--heartbeat-interval must be at least"),
        (["--scheduler-tick", "nan"], "--scheduler-tick must be at least"),
        (["--unavailable-grace", "soon"], "--unavailable-grace must be a number"),
        (["--session-message-rate", "0.5"], "--session-message-rate must be at least 1"),
        (["--session-message-rate", "many"], "--session-message-rate must be a number"),
        (["--public-url", "ftp://x"], "--public-url"),
        (["--max-unauthenticated", "0"], "--max-unauthenticated must be a whole number of at least 1"),
        (["--max-unauthenticated-per-address", "lots"], "--max-unauthenticated-per-address must be a whole"),
        (["--hello-timeout", "0"], "--hello-timeout must be at least"),
        (["--replica-timeout", "0.2"], "--replica-timeout must be at least"),
        (["--webhook-url", "file:///etc/passwd"], "--webhook-url"),
        (["--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"], "cannot load TLS certificate"),
    ],
)
def test_bad_options(tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", *_base(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "cli-admin-token-0123456789" not in err


def test_missing_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("VANTAGE_DB_URL", "VANTAGE_SIGNING_KEY", "VANTAGE_ADMIN_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve", "--db", "sqlite:///x"]) == 2
    assert "--signing-key is required" in capsys.readouterr().err
    assert cli.main(["bogus"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
