"""How the agent's process runs: its event loop, and the settings it takes once it is started.

Both only change how fast and how lean the agent runs, never what it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def event_loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop's event loop where it is installed (less CPU per connection and per message), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def settle_after_start() -> None:
    """Once connected for the first time: set start-up's objects aside, give its garbage back.

    Everything alive now (modules, configuration, keys) lives as long as the process: it is
    frozen out of the cyclic garbage collector, and the youngest generation is collected after
    10 000 allocations instead of 700 (each check allocates hundreds of short-lived objects:
    the collector took about 4 % of the agent's CPU under load, 0.1 % after).  Then the C
    heap's free pages go back to the system (glibc's ``malloc_trim``; elsewhere nothing): glibc
    keeps memory freed in the middle of its heap, and start-up (imports, the journal's
    recovery) freed about 1.5 MB of it; and glibc's allocator is set for the agent's traffic.
    """
    import ctypes
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        libc = ctypes.CDLL(None)
        trim, mallopt = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has neither)
        return
    trim(0)
    # Blocks up to 1 MiB from the heap rather than from mmap: every read of the TLS connection
    # allocates a 256 KiB buffer and shrinks it, which glibc's default threshold turned into
    # mmap, mremap and munmap calls (about 4 % of the agent's CPU); the top of the heap is kept
    # up to 2 MiB so that those buffers do not move the break back and forth either.
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    mallopt(_M_TRIM_THRESHOLD, 2 << 20)
