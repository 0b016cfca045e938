"""How the process's C allocator treats the large, short-lived buffers of field computations (Linux/glibc).

With glibc's defaults, PyTorch's field-sized temporaries either go back to the kernel after every operation
and are page-faulted in again at the next one (below the dynamic mmap threshold's growth), or pile up in the
heap, which glibc does not return: backpropagation through a long checkpointed rollout then holds several
times its live memory (1000 steps at 256²: ~3.5 GB resident for ~0.45 GB live). Two settings fix both:

- :func:`configure_allocator` raises the mmap and trim thresholds once, so temporaries are reused from the
  heap instead of faulted in (``mallopt``; the user's ``MALLOC_*_`` environment variables take precedence);
- :func:`release_if_grown` hands the heap's free pages back to the kernel (``malloc_trim``) once the resident
  memory has grown by more than a budget (256 MiB); checkpointed rollouts call it between segments, so the
  resident memory stays within that budget of the live memory, with few page faults.

Both are no-ops elsewhere (macOS, Windows, musl) or when ``NEURADIFF_MALLOC=default`` is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: Allocations up to this size come from the heap (glibc's largest dynamic threshold, 32 MiB on 64-bit).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the heap top kept without trimming (256 MiB); release_free_memory returns the rest.
TRIM_THRESHOLD = 256 * 2**20

#: Growth of the resident memory after which :func:`release_if_grown` hands free pages back (256 MiB).
GROWTH_BUDGET = 256 * 2**20

_STATE: dict[str, Any] = {}


def _libc() -> Any | None:
    if "libc" in _STATE:
        return _STATE["libc"]
    lib = None
    if sys.platform.startswith("linux") and os.environ.get("NEURADIFF_MALLOC", "") != "default":
        try:
            cand = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            cand.gnu_get_libc_version.restype = ctypes.c_char_p  # glibc only: raises AttributeError elsewhere
            cand.gnu_get_libc_version()
            cand.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            cand.malloc_trim.argtypes = [ctypes.c_size_t]
            lib = cand
        except (OSError, AttributeError):
            lib = None
    _STATE["libc"] = lib
    return lib


def configure_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; return whether the settings are active.

    Leaves each threshold alone if the user set it (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``).

    Examples
    --------
    >>> configure_allocator() in (True, False)
    True
    """
    if "configured" in _STATE:
        return _STATE["configured"]
    lib = _libc()
    ok = False
    if lib is not None:
        ok = True
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            ok = bool(lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and ok
        if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
            ok = bool(lib.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and ok
    _STATE["configured"] = ok
    return ok


def release_free_memory() -> None:
    """Return the allocator's free pages to the kernel (glibc ``malloc_trim(0)``; elsewhere nothing)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
        _STATE["rss_after_trim"] = resident_bytes()


def resident_bytes() -> int:
    """The process's resident memory in bytes (Linux; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_if_grown(budget: int = GROWTH_BUDGET) -> bool:
    """:func:`release_free_memory` if the resident memory grew by more than ``budget`` bytes since the last
    release (the first call only records it); return whether pages were released.

    Releasing costs page faults when the memory is used again, so loops call this often and it releases
    rarely: the resident memory stays within ``budget`` of what the loop really holds.
    """
    if _libc() is None:
        return False
    now = resident_bytes()
    last = _STATE.get("rss_after_trim")
    if last is None or now < last:
        _STATE["rss_after_trim"] = now
        return False
    if now - last <= budget:
        return False
    release_free_memory()
    return True
