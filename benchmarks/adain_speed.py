"""AdaIN latency at 512² and 1024², style cached and uncached, against this machine's sgemm peak.

    python -m benchmarks.adain_speed [--repeats 5] [--device cpu]

The FLOP floor is the convolution work (2·Cin·Cout·9·Hout·Wout per conv, counted with hooks)
divided by the sgemm rate measured in the same run (torch matmul 4096²).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from benchmarks.machine import describe_cpu
from nst_core.adain import Stylizer
from nst_core.device import resolve_device, use_all_cpu_cores


def sgemm_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def conv_gflop(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor) -> tuple[float, float]:
    """(FLOPs with the style cached, FLOPs of the style encode) in GFLOP, counted over conv layers."""
    counted = {"flops": 0.0}

    def count(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        k = module.kernel_size[0] * module.kernel_size[1]
        counted["flops"] += 2.0 * module.in_channels * module.out_channels * k * output[0, 0].numel()

    convs = [
        m for m in [*stylizer.encoder.modules(), *stylizer.decoder.modules()] if isinstance(m, nn.Conv2d)
    ]
    hooks = [m.register_forward_hook(count) for m in convs]
    try:
        stylizer._cache.clear()
        stylizer.style_stats(style)
        style_flops = counted["flops"]
        counted["flops"] = 0.0
        stylizer.stylize(content, [style])
        cached_flops = counted["flops"]
    finally:
        for hook in hooks:
            hook.remove()
    return cached_flops / 1e9, style_flops / 1e9


def median_latency(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks kernels on first use
    return statistics.median(_timed(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()
    use_all_cpu_cores()
    device = resolve_device(args.device)
    stylizer = Stylizer.load(device=str(device))
    peak = sgemm_gflops()
    print(
        f"machine: {describe_cpu()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {device}"
    )
    print(f"sgemm peak (4096² matmul): {peak:.0f} GFLOP/s\n")
    print("| size | style | latency (s) | GFLOP | GFLOP/s | FLOP floor (s) | latency / floor |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        torch.manual_seed(0)
        content, style = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
        cached_gflop, style_gflop = conv_gflop(stylizer, content, style)

        def cached(content=content, style=style) -> None:
            stylizer.stylize(content, [style])

        def uncached(content=content, style=style) -> None:
            stylizer._cache.clear()
            stylizer.stylize(content, [style])

        for label, fn, gflop in (
            ("cached", cached, cached_gflop),
            ("uncached", uncached, cached_gflop + style_gflop),
        ):
            latency = median_latency(fn, args.repeats)
            floor = gflop / peak
            print(
                f"| {size}² | {label} | {latency:.2f} | {gflop:.0f} | {gflop / latency:.0f} | {floor:.2f} "
                f"| {latency / floor:.2f}× |"
            )


if __name__ == "__main__":
    main()
