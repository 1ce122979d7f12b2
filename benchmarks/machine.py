"""Which CPU a benchmark ran on, in words: results are only comparable on the same kind."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_cpu() -> str:
    """e.g. "AMD EPYC, AVX2 (no AVX-512 BF16), 2 cores"."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    if "avx512_bf16" in flags:
        vector = "AVX-512 BF16"
    elif "avx512f" in flags:
        vector = "AVX-512 (no BF16)"
    elif "avx2" in flags:
        vector = "AVX2 (no AVX-512 BF16)"
    else:
        vector = "no AVX2"
    return f"{name}, {vector}, {len(os.sched_getaffinity(0))} cores"
