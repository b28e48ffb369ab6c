"""``vantage identity PATH``: the key command Windows hosts run inside the checkpoint image."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vantage.cli import main as vantage_main
from vantage.protocol import key_id, load_private_key, public_key_b64
from vantage.protocol.cli import identity_main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = identity_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_creates_then_reads_the_same_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a" / "identity.pem"
    code, out, err = run([str(path)], capsys)
    assert (code, err) == (0, "")
    key = load_private_key(path)
    assert json.loads(out) == {"public_key": public_key_b64(key), "key_id": key_id(key), "created": True}
    assert out.count("\n") == 1 and "PRIVATE" not in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    code, again, _ = run([str(path)], capsys)
    assert code == 0
    assert json.loads(again) == {"public_key": public_key_b64(key), "key_id": key_id(key), "created": False}


def test_an_existing_invalid_file_is_an_error_and_stays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "identity.pem"
    path.write_text("not a key\n")
    code, out, err = run([str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("vantage identity: error: ") and "identity.pem" in err
    assert path.read_text() == "not a key\n"


def test_a_path_that_cannot_hold_a_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    code, out, err = run([str(blocker / "identity.pem")], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("vantage identity: error: ")
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["--force", "x"]])
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert "usage: vantage identity" in err


def test_the_console_script_dispatches_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vantage_main(["identity", str(tmp_path / "k.pem")]) == 0
    assert json.loads(capsys.readouterr().out)["created"] is True
    script = Path(sys.executable).with_name("vantage")
    done = subprocess.run([str(script), "identity", str(tmp_path / "k.pem")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "public_key": public_key_b64(load_private_key(tmp_path / "k.pem")),
        "key_id": key_id(load_private_key(tmp_path / "k.pem")),
        "created": False,
    }
