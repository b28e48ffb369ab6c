"""Small file helpers: durable atomic replacement of a file in the state directory."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Replace ``path`` by ``data`` so that readers see the old or the new content, never half.

    The data goes to a hidden temporary file next to ``path`` (created with ``mode``), is
    flushed to disk, then renamed over ``path``; ``sync_dir`` also makes the rename durable.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sync_dir:
        sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory so renames and unlinks in it survive a crash (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a leftover temporary file of :func:`write_atomic`."""
    return path.name.startswith(".") and path.name.endswith(".tmp")
