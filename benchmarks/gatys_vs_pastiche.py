"""Our HQ (Gatys) mode against pastiche's CLI on the same content, style and size.

    python benchmarks/gatys_vs_pastiche.py [--style PATH] [--size 512] [--out out/gatys_bench]

Both programs get identical inputs: the content (scikit-image's astronaut) and the style, each
prepared as a ``size``×``size`` PNG. pastiche runs with its defaults (1000 L-BFGS steps, content
init) and saves its image every 100 steps; ours runs ``Engine.render(..., hq=True)`` with its
defaults. One evaluator scores every image: content distance = MSE of relu4_2 features, style
distance = the paper's E (Gram matrices at relu1_1…relu5_1, Σ(G−A)²/4N², averaged over layers).
Wall times include process start and model loading for both.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageOps

from benchmarks.datasets import DATASETS
from benchmarks.machine import describe_cpu
from nst_core.device import use_all_cpu_cores
from nst_core.gatys import GatysConfig, GatysOptimizer
from nst_core.images import load_image
from nst_core.losses import GATYS_STYLE_LAYERS
from nst_core.options import EngineSpec, RenderOptions
from nst_core.pipeline import Engine
from nst_core.tensors import to_tensor
from nst_core.vgg import get_encoder
from testkit.pictures import sample_image

DEFAULT_STYLE = DATASETS / "style" / "s01058.jpg"


def prepare_inputs(style_path: Path, size: int, out: Path) -> tuple[Path, Path]:
    content = ImageOps.fit(sample_image("astronaut"), (size, size), Image.Resampling.LANCZOS)
    style = ImageOps.fit(load_image(style_path), (size, size), Image.Resampling.LANCZOS)
    content_path, style_path_out = out / "content.png", out / "style.png"
    content.save(content_path)
    style.save(style_path_out)
    return content_path, style_path_out


Distances = Callable[[torch.Tensor], tuple[float, float]]


def paper_distances(content: torch.Tensor, style: torch.Tensor) -> Distances:
    """(content distance, style distance) of an image, by one evaluator for every run: float32 whatever
    precision a run used, and every style layer weighted equally (the mean over layers), not by our
    optimizer's per-layer factors."""
    unweighted = GatysConfig(style_layer_factors=(1 / len(GATYS_STYLE_LAYERS),) * len(GATYS_STYLE_LAYERS))
    evaluator = GatysOptimizer(get_encoder(), unweighted)
    targets = evaluator.targets(content, [style], [1.0])

    def distances(image: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            content_distance, style_distance = evaluator.losses(image, targets)
        return float(content_distance), float(style_distance)

    return distances


def run_pastiche(content: Path, style: Path, size: int, steps: int, out: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "pastiche",
        "--device",
        "cpu",
        "--seed",
        "0",
        "--size",
        str(size),
        "--num-steps",
        str(steps),
        "--info-step",
        "100",
        "--workspace",
        str(out / "pastiche_steps"),
        "--workspace-step",
        "100",
        "-c",
        str(content),
        "-s",
        str(style),
        "-o",
        str(out / "pastiche.png"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    (out / "pastiche_wall.txt").write_text(f"{wall}\n")
    return wall


def run_ours(content: Path, style: Path, size: int, steps: int | None, out: Path) -> float:
    started = time.perf_counter()
    engine = Engine.load(EngineSpec(device="cpu", model="full"))
    image = engine.render(
        load_image(content), [load_image(style)], RenderOptions(hq=True, max_side=size, steps=steps)
    ).image
    wall = time.perf_counter() - started
    image.save(out / "ours.png")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pastiche-steps", type=int, default=1000)
    parser.add_argument(
        "--steps", type=int, default=None, help="our HQ steps (default: the engine's default)"
    )
    parser.add_argument("--out", type=Path, default=Path("out/gatys_bench"))
    parser.add_argument(
        "--reuse-pastiche", action="store_true", help="score the pastiche run already in --out"
    )
    args = parser.parse_args()
    use_all_cpu_cores()
    args.out.mkdir(parents=True, exist_ok=True)
    content, style = prepare_inputs(args.style, args.size, args.out)

    if args.reuse_pastiche:
        pastiche_wall = float((args.out / "pastiche_wall.txt").read_text())
    else:
        pastiche_wall = run_pastiche(content, style, args.size, args.pastiche_steps, args.out)
    ours_wall = run_ours(content, style, args.size, args.steps, args.out)

    distances = paper_distances(to_tensor(load_image(content)), to_tensor(load_image(style)))

    def score(path: Path) -> tuple[float, float]:
        return distances(to_tensor(load_image(path)))

    print(
        f"machine: {describe_cpu()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; size {args.size}², style {args.style.name}\n"
    )
    print("| run | wall (s) | content distance | style distance |")
    print("| --- | ---: | ---: | ---: |")
    for step_image in sorted((args.out / "pastiche_steps").glob("*.png")):
        c, s = score(step_image)
        print(f"| pastiche step {int(step_image.stem)} | | {c:.4g} | {s:.4g} |")
    pastiche_c, pastiche_s = score(args.out / "pastiche.png")
    ours_c, ours_s = score(args.out / "ours.png")
    print(
        f"| **pastiche default (1000 steps)** | {pastiche_wall:.0f} | {pastiche_c:.4g} | {pastiche_s:.4g} |"
    )
    print(f"| **Atelier HQ default** | {ours_wall:.0f} | {ours_c:.4g} | {ours_s:.4g} |")
    print(
        f"\ntime ratio ours/pastiche: {ours_wall / pastiche_wall:.3f} "
        f"(speed-up {pastiche_wall / ours_wall:.1f}×); "
        f"content {ours_c / pastiche_c:.2f}×, style {ours_s / pastiche_s:.2f}× of pastiche's "
        f"(≤ 1 is no worse)"
    )


if __name__ == "__main__":
    main()
