"""Atomic, durable file writes shared by the protocol (keys, trust store, replay cache) and the agent."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int, overwrite: bool = True, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``.

    The temporary file is created in the target directory with ``mode`` already applied
    (``O_CREAT | O_EXCL`` then ``fchmod``), so its content is never readable by anybody the
    final file would not be readable by, not even for an instant. It is fsync'ed, then moved
    into place, and the directory is fsync'ed. With ``overwrite=False`` an existing ``path``
    raises :class:`FileExistsError` (checked atomically with ``link`` where the file system
    supports hard links). ``sync_dir=False`` skips the directory fsync, for files rewritten so
    often that losing the last rename in a power cut does not matter (the agent's status file).
    """
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits; it never adds any
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_directory(directory)


def _move_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
    except OSError as exc:  # no hard links here (some FUSE/overlay/SMB mounts)
        if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS}:
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)
