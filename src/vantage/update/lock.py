"""The host-wide lock of ``vantage update``: two update runs on one host never overlap.

A run holds an exclusive lock on ``lock_file`` for as long as it lasts; the operating system releases
it when the process ends, however it ends. On Linux that is ``flock``; on Windows, where ``fcntl``
does not exist, a byte-range lock on the file's first byte (``msvcrt.locking``, which is
``LockFile``). The file is the host's, bind-mounted into every update container (on Windows its
directory, since Windows bind mounts are directories), so runs of different checkpoints exclude each
other too.
"""

from __future__ import annotations

import errno
import importlib
import sys
from pathlib import Path
from typing import IO, Any

#: errno values that mean "somebody else holds it" (flock: EAGAIN/EWOULDBLOCK; Windows' _locking: EACCES/EDEADLK)
HELD = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK}


def lock_posix(handle: IO[str], fcntl: Any) -> bool:
    """``flock(LOCK_EX | LOCK_NB)``; False when another process holds it."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in HELD:
            return False
        raise
    return True


def lock_windows(handle: IO[str], msvcrt: Any) -> bool:
    """A non-blocking lock on byte 0 (``msvcrt.locking`` locks from the current position); False when held."""
    handle.seek(0)
    try:
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in HELD:
            return False
        raise
    return True


def acquire_lock(path: str, platform: str = sys.platform) -> IO[str] | None:
    """The lock on ``path``, held while the returned file is open; None when another run holds it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        if platform == "win32":
            held = lock_windows(handle, importlib.import_module("msvcrt"))
        else:
            held = lock_posix(handle, importlib.import_module("fcntl"))
    except BaseException:
        handle.close()
        raise
    if not held:
        handle.close()
        return None
    return handle
