"""Choosing where the models run."""

from __future__ import annotations

import torch

from nst_core.cpu import usable_cpu_cores
from nst_core.options import DEVICE_CHOICES


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU; an unavailable explicit choice is an error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was requested but MPS is not available")
    return torch.device(name)


def use_all_cpu_cores() -> None:
    """Let intra-op parallelism use every core this process may run on (torch may count the host's)."""
    torch.set_num_threads(usable_cpu_cores())


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively (CUDA with bf16, or a CPU with AVX-512 BF16/AMX).

    Not oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``): it says yes on any
    AVX-512 CPU (Skylake-X, Cascade Lake), where bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except (AttributeError, RuntimeError):  # a torch without these probes: float32 is the safe side
            return False
    return False
