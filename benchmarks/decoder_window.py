"""Decoding only the picture against decoding the whole mirrored canvas and cutting the margin off.

    python -m benchmarks.decoder_window [--rounds 15] [--sizes 512x512 512x341]

Why: the engine encodes a picture inside a 32-px mirrored margin (``BORDER_PAD``) and cuts the margin
off the decoding; the decoder now computes only what the picture's pixels depend on
(``nst_core.architecture.decoder_windows``). Both ways here decode the same AdaIN targets of a
scikit-image photo in one process, alternating call by call (this host's speed drifts), for both
models: median seconds, their ratio, convolution GFLOP, and the largest difference between the two
pictures.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.machine import describe_cpu
from nst_core.adain import Stylizer, confined_layers, picture_window
from nst_core.device import use_all_cpu_cores
from nst_core.flops import convolution_flops
from nst_core.memory import keep_freed_memory
from nst_core.options import EngineSpec
from nst_core.pipeline import Engine
from nst_core.tensors import to_tensor
from testkit.pictures import sample_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sizes", nargs="+", default=["512x512", "512x341"], help="WIDTHxHEIGHT")
    args = parser.parse_args()
    use_all_cpu_cores()
    keep_freed_memory()  # as the bot's render workers do
    engine = Engine.load(EngineSpec(device="cpu"))
    print(f"machine: {describe_cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| model | size | whole canvas, s | picture only, s | ratio | GFLOP whole → picture | max diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    style = to_tensor(sample_image("coffee"))
    for model in ("fast", "full"):
        for size in args.sizes:
            width, height = map(int, size.split("x"))
            content = to_tensor(sample_image("astronaut").convert("RGB").resize((width, height)))
            cells = compare(engine.stylizer(model), content, style, args.rounds)
            print(f"| {model} | {width}×{height} | {cells} |")


def compare(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor, rounds: int) -> str:
    """The table's cells for one model and picture: both ways of decoding its AdaIN targets."""
    window = picture_window(stylizer.border_pad, content)
    with torch.inference_mode():
        maps, pictures = stylizer.encode_with_margin(content, stylizer.layers)
        features, own = confined_layers(maps, pictures)
        mixed = stylizer.mixed_stats([style], None)
        targets = stylizer.adain_targets(features, mixed, 1.0, own)
        condition = stylizer.condition_stats(mixed, 1.0, own)
        ways = {
            "whole": lambda: stylizer.decode(targets, condition)[..., *window],
            "picture": lambda: stylizer.decode(targets, condition, window),
        }
        outputs = {way: decode() for way, decode in ways.items()}  # warm-up: oneDNN picks its kernels
        flops = {way: convolution_flops(decode) / 1e9 for way, decode in ways.items()}
        times: dict[str, list[float]] = {way: [] for way in ways}
        for round_index in range(rounds):
            for way in ways if round_index % 2 else reversed(ways):
                started = time.perf_counter()
                ways[way]()
                times[way].append(time.perf_counter() - started)
    whole, picture = (statistics.median(times[way]) for way in ways)
    difference = (outputs["picture"] - outputs["whole"]).abs().max().item()
    return (
        f"{whole:.3f} | {picture:.3f} | {picture / whole:.2f}× | "
        f"{flops['whole']:.1f} → {flops['picture']:.1f} | {difference:.1e}"
    )


if __name__ == "__main__":
    main()
