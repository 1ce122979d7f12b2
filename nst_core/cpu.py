"""How many CPU cores this process may use, without importing torch (the bot process asks too)."""

from __future__ import annotations

import os


def usable_cpu_cores() -> int:
    """The cores this process may run on: the container's or taskset's share, not the host's."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1  # not Linux
