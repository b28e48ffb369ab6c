"""``vantage keygen PATH [--force]``."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vantage.protocol import key_id, load_private_key, public_key_b64
from vantage.protocol.cli import keygen_main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object] | None, str]:
    code = keygen_main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_keygen_creates_then_keeps_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys" / "signing.pem"
    code, first, err = run([str(path)], capsys)
    assert code == 0 and err == ""
    assert first is not None
    key = load_private_key(path)
    assert first == {
        "path": str(path),
        "keyid": key_id(key),
        "public_key": public_key_b64(key),
        "created": True,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    code, second, _ = run([str(path)], capsys)
    assert code == 0
    assert second == {**first, "created": False}


def test_keygen_force_replaces_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signing.pem"
    _, first, _ = run([str(path)], capsys)
    code, forced, _ = run([str(path), "--force"], capsys)
    assert code == 0 and forced is not None and first is not None
    assert forced["created"] is True
    assert forced["keyid"] != first["keyid"]
    assert forced["keyid"] == key_id(load_private_key(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_refuses_an_invalid_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signing.pem"
    path.write_text("not a key\n")
    code, out, err = run([str(path)], capsys)
    assert (code, out) == (1, None)
    assert "signing.pem" in err and "error" in err
    assert path.read_text() == "not a key\n"


def test_keygen_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([], capsys)
    assert (code, out) == (2, None)
    assert "usage: vantage keygen" in err
    code, out, err = run([str(tmp_path / "k"), "--bogus"], capsys)
    assert (code, out) == (2, None)


def test_vantage_keygen_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("vantage")
    assert script.exists(), "the package must be installed in the virtualenv (pip install -e .)"
    path = tmp_path / "identity.pem"
    done = subprocess.run(
        [str(script), "keygen", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["created"] is True
    assert result["keyid"] == key_id(load_private_key(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = subprocess.run(
        [str(script), "keygen", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0
    assert json.loads(again.stdout) == {**result, "created": False}
