"""keep_freed_memory: a large block freed and allocated again is reused, not page-faulted in anew.

The setting is process-wide and cannot be undone, so each probe runs in a fresh interpreter.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

PROBE = """
import ctypes, resource, sys, threading
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def touch_and_free(size=64 << 20):  # above glibc's largest automatic mmap threshold (32 MiB)
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)

def on_a_thread(work):  # as the bot renders
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()

on_a_thread(touch_and_free)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    on_a_thread(touch_and_free)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(setup: str) -> int:
    """Page faults of six 64 MiB blocks touched and freed in turn on threads, after ``setup`` ran."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, check=True
    )
    return int(probe.stdout.split()[-1])


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default = page_faults("")
    kept = page_faults("from nst_core.memory import keep_freed_memory\nassert keep_freed_memory()")
    assert default >= 6 * 16  # each block came back fresh from the kernel (even as 2 MiB huge pages)
    assert kept * 10 < default


def test_a_render_worker_process_keeps_freed_memory_from_its_start():
    setup = (
        "from multiprocessing import Pipe\n"
        "from bot.worker import worker_main\n"
        "(jobs, _), (control, _), (reports, events) = Pipe(), Pipe(), Pipe(duplex=False)\n"
        "worker_main(jobs, control, events, {'engine_factory': 'no.such.module:engine', 'engine': None})\n"
        "assert 'No module' in reports.recv().reason"
    )  # the worker cannot load this engine: it reports so and returns, as a pool's worker would
    assert page_faults(setup) * 10 < page_faults("")
