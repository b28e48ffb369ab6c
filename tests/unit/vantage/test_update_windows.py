"""The update engine on Windows hosts: its lock, its paths, its defaults and the engine's limits.

No Windows runs here. The Windows lock branch runs with ``msvcrt`` stood in by a module that locks
the same byte range the way ``LockFile`` does (``fcntl.lockf`` from the current position), in two
real processes; paths and defaults are checked as strings.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from vantage._collection._container_engine import WINDOWS_LIMITS, DockerEngine
from vantage.update import lock
from vantage.update.config import PLATFORM_DEFAULTS, UpdateConfig, join

FAKE_MSVCRT = textwrap.dedent(
    """
    import errno, fcntl, os, sys, types

    def locking(fd, mode, nbytes):
        assert mode == LK_NBLCK
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, nbytes, 0, os.SEEK_CUR)
        except OSError:
            raise OSError(errno.EACCES, "Permission denied") from None

    LK_NBLCK = 2
    sys.modules["msvcrt"] = types.SimpleNamespace(locking=locking, LK_NBLCK=LK_NBLCK)
    """
)
HOLD = FAKE_MSVCRT + textwrap.dedent(
    """
    from vantage.update.lock import acquire_lock
    held = acquire_lock(sys.argv[1], platform="win32")
    print("held" if held is not None else "busy", flush=True)
    sys.stdin.readline()
    """
)
TRY = FAKE_MSVCRT + "from vantage.update.lock import acquire_lock\nprint(acquire_lock(sys.argv[1], platform='win32') is None)\n"


def test_the_windows_lock_keeps_a_second_run_out_until_the_first_ends(tmp_path: Path) -> None:
    path = tmp_path / "lock" / "update.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = subprocess.run([sys.executable, "-c", TRY, str(path)], capture_output=True, text=True, check=True)
        assert second.stdout.strip() == "True"
    finally:
        holder.communicate("\n", timeout=30)
    third = subprocess.run([sys.executable, "-c", TRY, str(path)], capture_output=True, text=True, check=True)
    assert third.stdout.strip() == "False"


def test_a_lock_error_that_is_not_held_is_raised_not_taken_for_busy(tmp_path: Path) -> None:
    class Broken:
        LK_NBLCK = 2

        @staticmethod
        def locking(fd: int, mode: int, nbytes: int) -> None:
            raise OSError(5, "Input/output error")

    with open(tmp_path / "lock", "a+") as handle:
        try:
            lock.lock_windows(handle, Broken())
        except OSError as exc:
            assert exc.errno == 5
        else:
            raise AssertionError("an I/O error must not look like a held lock")


def windows_conf(tmp_path: Path, **extra: str) -> Path:
    lines = {
        "checkpoint": "plant", "channel": "stable-ltsc2022", "instances": "a b", "control_plane_url": "https://cp:8443",
        "api_token_file": "C:\\ProgramData\\Vantage\\checkpoints\\plant\\update-token",
        "trusted_keys": "C:\\ProgramData\\Vantage\\checkpoints\\plant\\trusted-keys.json",
        "state_dir": "C:\\ProgramData\\Vantage\\state\\plant",
        "docker_host": "npipe:////./pipe/docker_engine", "lock_file": "C:\\ProgramData\\Vantage\\lock\\update.lock",
    }
    lines.update(extra)
    conf = tmp_path / "update.conf"
    conf.write_text("[update]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items()))
    return conf


def test_a_windows_update_conf_reads_with_windows_paths(tmp_path: Path) -> None:
    config = UpdateConfig.load(str(windows_conf(tmp_path)))
    assert config.docker_host == "npipe:////./pipe/docker_engine"
    assert config.release_file == "C:\\ProgramData\\Vantage\\state\\plant\\release.json"
    assert config.status_file == "C:\\ProgramData\\Vantage\\state\\plant\\update-status.json"
    assert config.lock_file == "C:\\ProgramData\\Vantage\\lock\\update.lock"
    assert join("/var/lib/vantage/checkpoints/cp", "release.json") == "/var/lib/vantage/checkpoints/cp/release.json"


def test_the_defaults_on_windows_are_the_pipe_and_a_lock_directory() -> None:
    assert PLATFORM_DEFAULTS["win32"] == {"docker_host": "npipe:////./pipe/docker_engine",
                                          "lock_file": "C:\\ProgramData\\Vantage\\lock\\update.lock"}
    assert PLATFORM_DEFAULTS["linux"]["docker_host"] == "unix:///var/run/docker.sock"


def test_a_windows_engine_reports_the_limits_windows_containers_have() -> None:
    class Api:
        def __init__(self, answer: dict[str, Any]) -> None:
            self.answer = answer

        def info(self) -> dict[str, Any]:
            return self.answer

    engine = DockerEngine.__new__(DockerEngine)
    # docker info of a Windows engine says no limit is enforced, but Windows enforces memory and CPU
    engine.api = Api({"OSType": "windows", "MemoryLimit": False, "SwapLimit": False, "PidsLimit": False})
    assert engine.limits() == WINDOWS_LIMITS == {"memory": True, "swap": False, "pids": False}
    engine.api = Api({"OSType": "linux", "MemoryLimit": True, "SwapLimit": False, "PidsLimit": True})
    assert engine.limits() == {"memory": True, "swap": False, "pids": True}
