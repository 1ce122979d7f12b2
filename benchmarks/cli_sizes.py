"""The fast model's whole CLI call at several sizes and alphas, this tree against another commit's.

    python -m benchmarks.cli_sizes [--baseline HEAD~1] [--sizes 512 1024 2048] [--alphas 1 0.5]

Why: ``fast_vs_peer`` measures the CLI at 512 px, but users pass phone photos and ask for more, and
a change to the torch-free path (``nst_core.lite``) can move memory and time differently at other
sizes. The pictures are the first held-out photo and artwork enlarged to 2048 px on their long side,
so that every ``--size`` is a downscale of both. Both trees render with this tree's weights file (or
``$NST_STUDENT_PATH``): only the code differs. The calls alternate between the trees, so both see
the same machine; the baseline is a git worktree of ``--baseline``, removed afterwards. Printed per
size and alpha: median wall time and largest peak RSS of ``--repeats`` calls each, their ratios, and
the largest difference between the two trees' pictures in 8-bit levels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.datasets import held_out_files
from benchmarks.fast_vs_peer import whole_process
from benchmarks.machine import describe_cpu
from nst_core.architecture import STUDENT_PATH_ENV, student_path
from nst_core.images import load_image

ROOT = Path(__file__).resolve().parent.parent
SOURCE_SIDE = 2048


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A checkout of ``ref`` beside this one, for the length of the run."""
    with tempfile.TemporaryDirectory() as parent:
        path = Path(parent) / "baseline"
        add = ["git", "worktree", "add", "--detach", "--quiet", str(path), ref]
        subprocess.run(add, cwd=ROOT, check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True)


def enlarged(source: Path, target: Path) -> Path:
    image = load_image(source)
    scale = SOURCE_SIDE / max(image.size)
    image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS).save(target)
    return target


def stylize_command(content: Path, style: Path, output: Path, size: int, alpha: float) -> list[str]:
    return [sys.executable, "-m", "nst_core", "stylize", str(content), str(style), "-o", str(output),
            "--size", str(size), "--alpha", str(alpha), "--model", "fast", "--device", "cpu"]  # fmt: skip


def largest_difference(first: Path, second: Path) -> int:
    first_levels, second_levels = (np.asarray(Image.open(path), np.int16) for path in (first, second))
    return int(np.abs(first_levels - second_levels).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="the commit to compare with")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "cli_sizes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ[STUDENT_PATH_ENV] = str(student_path().resolve())
    content = enlarged(held_out_files("content", 1)[0], args.out / "content.png")
    style = enlarged(held_out_files("style", 1)[0], args.out / "style.png")
    print(f"machine: {describe_cpu()}; baseline {args.baseline}; pictures at {SOURCE_SIDE} px\n")
    print("| size | alpha | wall, s: baseline / this | ratio | peak RSS, MiB: baseline / this | ratio "
          "| max pixel difference |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with worktree(args.baseline) as baseline:
        for size in args.sizes:
            for alpha in args.alphas:
                runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "this": []}
                outputs = {tree: args.out / f"{tree}_{size}_{alpha}.png" for tree in runs}
                for _ in range(args.repeats):
                    for tree, cwd in (("baseline", baseline), ("this", ROOT)):
                        command = stylize_command(content, style, outputs[tree], size, alpha)
                        runs[tree].append(whole_process(command, cwd))
                old_wall, new_wall = (statistics.median(wall for wall, _ in runs[tree]) for tree in runs)
                old_rss, new_rss = (max(rss for _, rss in runs[tree]) for tree in runs)
                difference = largest_difference(*outputs.values())
                print(f"| {size} | {alpha:g} | {old_wall:.2f} / {new_wall:.2f} | {new_wall / old_wall:.2f}× "
                      f"| {old_rss:.0f} / {new_rss:.0f} | {new_rss / old_rss:.2f}× "
                      f"| {difference} |")  # fmt: skip


if __name__ == "__main__":
    main()
