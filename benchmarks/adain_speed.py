"""AdaIN latency at 512² and 1024², style cached and uncached, against this machine's sgemm peak.

    python -m benchmarks.adain_speed [--repeats 5] [--device cpu]

The FLOP floor is the convolution work (2·Cin·Cout·9·Hout·Wout per conv, counted with hooks)
divided by the float32 sgemm rate measured in the same run (torch matmul 4096²). Where the device
runs bfloat16 natively (what the engine then uses), each model is timed in float32 and in bf16.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.machine import describe_cpu
from nst_core.device import bf16_is_fast, resolve_device, use_all_cpu_cores
from nst_core.flops import conv_gflop
from nst_core.memory import keep_freed_memory
from nst_core.options import EngineSpec
from nst_core.pipeline import Engine


def sgemm_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_latency(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks kernels on first use
    return statistics.median(_timed(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--models", nargs="+", choices=("full", "fast"), default=["full", "fast"])
    args = parser.parse_args()
    use_all_cpu_cores()
    keep_freed_memory()  # as the bot's render workers do
    device = resolve_device(args.device)
    engine = Engine.load(EngineSpec(device=str(device)))
    peak = sgemm_gflops()
    print(
        f"machine: {describe_cpu()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}"
    )
    print(f"sgemm peak (4096² matmul): {peak:.0f} GFLOP/s\n")
    labels = ("model", "precision", "size", "style")
    numbers = ("latency (s)", "GFLOP", "GFLOP/s", "FLOP floor (s)", "latency / floor")
    print(f"| {' | '.join(labels + numbers)} |")
    print("|" + " --- |" * len(labels) + " ---: |" * len(numbers))
    precisions = ("float32", "bf16") if bf16_is_fast(device) else ("float32",)
    runs = (
        (model, precision, size) for model in args.models for precision in precisions for size in args.sizes
    )
    for model, precision, size in runs:
        stylizer = engine.stylizer(model)
        stylizer.bf16 = precision == "bf16"
        torch.manual_seed(0)
        content, style = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
        cached_gflop, style_gflop = conv_gflop(stylizer, content, style)

        def cached(content=content, style=style, stylizer=stylizer) -> None:
            stylizer.stylize(content, [style])

        def uncached(content=content, style=style, stylizer=stylizer) -> None:
            stylizer._cache.clear()
            stylizer.stylize(content, [style])

        for label, fn, gflop in (
            ("cached", cached, cached_gflop),
            ("uncached", uncached, cached_gflop + style_gflop),
        ):
            latency = median_latency(fn, args.repeats)
            floor = gflop / peak
            print(
                f"| {model} | {precision} | {size}² | {label} | {latency:.2f} | {gflop:.0f} "
                f"| {gflop / latency:.0f} | {floor:.2f} | {latency / floor:.2f}× |"
            )


if __name__ == "__main__":
    main()
