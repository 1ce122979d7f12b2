"""Keep the memory a render frees for the next one instead of handing it back to the kernel.

Why: glibc's malloc serves large blocks (over 128 KiB, or over what it last freed, up to 32 MiB, and
on a thread's own 64 MiB arena anything larger than fits) with fresh mappings and unmaps them when
they are freed, so every layer's activations are page-faulted in and zeroed anew, in every render:
on a Xeon, 10k page faults (40 MB) per warm 512-px render of the fast model on a worker thread, 78k
(306 MB) of the full one; each fault costs more when the kernel must first reclaim page cache. ONNX
Runtime keeps an arena and pays none of this. Raised mmap and trim thresholds make freed blocks
reusable, and one arena for all threads keeps them reusable on worker threads (raising the
thresholds alone left 52k faults per full render there). A warm render then takes no faults and
runs 9 % (fast) / 5 % (full) faster, for a resident set that stays near its high-water mark (over 40
renders of mixed sizes +50 MB for the fast model, +230 MB for the full one, then flat):
``benchmarks/malloc_reuse``, ``benchmarks/RESULTS.md``. The bot's render workers use it; the one-shot
``nst`` command does not: a single full-model render came out ~6 % faster but peaked ~200 MB higher.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks smaller than this come from the heap and are reused once freed
TRIM_THRESHOLD = 2**31 - 1  # never give the heap's free top back to the kernel
ARENAS = 1  # every thread allocates from the main heap, so a worker thread's blocks are reused too


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed blocks for reuse; call it where a process that renders
    starts, before it starts threads. False where malloc is not glibc's (musl, macOS, Windows), which
    is then left as it is."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    settings = ((M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])
