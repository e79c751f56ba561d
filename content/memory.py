"""Keeping the Q&A index out of the garbage collector's way, and its old versions out of memory.

A loaded index is tens of thousands of container objects (sets, lists, dicts) that live until the next
reload, beside the rest of the service's hundred thousand. Left in the collector's generations, every full
collection walks all of them (a pause of the event loop, since the
collector holds the interpreter lock); gc.freeze() moves everything alive into a permanent generation that
collections skip. Frozen objects are still freed when their last reference goes (the index has no reference
cycles, so the old one goes the moment the holder and the last search using it let go), but frozen cyclic
garbage would never be collected: before each freeze after the first, everything is unfrozen and collected
once. That one full collection per reload is the price (some 30 ms in `zhibu serve`); reloads are rare.

glibc keeps memory that Python freed in its heap for reuse instead of returning it; malloc_trim(0) gives the
free pages back, so that after a reload the process is about its size after the first load. Elsewhere (no
glibc) that step is skipped.
"""

from __future__ import annotations

import gc
import sys


def settle() -> None:
    """After an index was put in place (and the previous one let go): collect, freeze, return freed memory."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    else:
        # The first load, with nothing frozen yet: a start-up leaves next to no cyclic garbage (`zhibu serve`
        # none at all), and a full collection of everything it built would add some 50 ms to it. The young
        # generations are collected; the next reload looks at the rest.
        gc.collect(1)
    gc.freeze()
    trim_heap()


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, say): nothing to trim
        return None


_TRIM = _malloc_trim()


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc only)."""
    if _TRIM is not None:
        _TRIM(0)
