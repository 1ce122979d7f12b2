"""Two or more decoders side by side on the same held-out pairs at several sizes (decoder v2's check).

    python -m benchmarks.decoder_compare --decoder weights/decoder.safetensors \
        --decoder runs/decoder/decoder.safetensors [--pairs 4] [--sizes 512 1024] [--photos 20] -o cmp.jpg

A decoder trained on small crops paints the style's texture at the scale it learned, so at 1024 px it
looks finer than the artwork's own: the style distance at 1024 px (output and artwork at the same
size; the held-out images are scaled up to it) is the number for that, the figure the picture.
Pair i is the i-th held-out photo with the i-th held-out artwork. Also printed per decoder: the
content distance, the self-reconstruction PSNR over ``--photos`` held-out photos at 512 px and the
border step over each result's photo (``nst_core.evaluate``), and a border check over the whole
validation split (``--border-photos``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

import torch
from PIL import Image, ImageDraw, ImageOps

from benchmarks.datasets import held_out_files
from benchmarks.machine import describe_cpu
from nst_core.adain import Stylizer
from nst_core.device import use_all_cpu_cores
from nst_core.evaluate import FRAMELESS, INTERIOR, PairJudge, border_step, frame_offset, psnr_db
from nst_core.images import fit_max_side, load_image
from nst_core.tensors import to_pil, to_tensor
from nst_core.vgg import get_encoder

CELL = 384
RECONSTRUCTION_SIZE = 512


def held_out(folder: str, count: int) -> list[Image.Image]:
    """The first ``count`` images of the validation split."""
    return [load_image(p) for p in held_out_files(folder, count)]


def at_long_side(image: Image.Image, size: int) -> torch.Tensor:
    """Scaled up or down to a long side of ``size``: the held-out images are only ~384-512 px, and a
    user's 1024-px photo and painting both reach the engine at 1024 px."""
    return to_tensor(ImageOps.contain(image, (size, size), Image.Resampling.LANCZOS))


def labelled(image: Image.Image, label: str) -> Image.Image:
    cell = ImageOps.pad(image, (CELL, CELL), color="white")
    ImageDraw.Draw(cell).text((4, 4), label, fill="black", stroke_width=2, stroke_fill="white")
    return cell


def border_check(stylizers: list[Stylizer], photos: list[torch.Tensor]) -> None:
    """Photo i of the validation split with artwork i (cycling), at <= 512 px as users send them: the
    results' border step over their photo's, and on its own for photos without a frame of their own."""
    if not photos:
        return
    artworks = [to_tensor(fit_max_side(a, RECONSTRUCTION_SIZE)) for a in held_out("style", len(photos))]
    pairs = [(photo, artworks[i % len(artworks)]) for i, photo in enumerate(photos)]
    photo_steps = [border_step(photo) for photo in photos]
    for number, stylizer in enumerate(stylizers, start=1):
        results = [stylizer.stylize(photo, [artwork]) for photo, artwork in pairs]
        steps = [border_step(result) for result in results]
        excess = [step - own for step, own in zip(steps, photo_steps, strict=True)]
        frameless = [i for i, own in enumerate(photo_steps) if own <= FRAMELESS]
        print(
            f"#{number} border over {len(pairs)} held-out photos: "
            f"over its photo {mean_and_max(excess, '+')}; "
            f"the {len(frameless)} photos without a frame (step <= {FRAMELESS:g}): results "
            f"{mean_and_max([steps[i] for i in frameless])}, {INTERIOR} px inside them "
            f"{mean_and_max([border_step(results[i], INTERIOR) for i in frameless])}, "
            f"their frame offset {mean_and_max([frame_offset(results[i]) for i in frameless])}",
            flush=True,
        )


def mean_and_max(values: list[float], sign: str = "") -> str:
    return f"mean {mean(values):{sign}.1f}, max {max(values):{sign}.1f}" if values else "none"


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="decoder_compare", description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", action="append", required=True, help="safetensors; repeat")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--photos", type=int, default=20, help="held-out photos for the PSNR (0: skip)")
    parser.add_argument(
        "--border-photos", type=int, default=1000, help="held-out photos for the border check (0: skip)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="figure (rows: pairs)")
    args = parser.parse_args(argv)
    use_all_cpu_cores()
    print(describe_cpu())
    for number, path in enumerate(args.decoder, start=1):
        print(f"#{number}: {path}")
    pairs = list(zip(held_out("content", args.pairs), held_out("style", args.pairs), strict=False))
    judge = get_encoder(None, "cpu")
    rows = [[labelled(c, "photo"), labelled(s, "artwork")] for c, s in pairs]
    # float32 on every CPU, so that rows measured on machines with and without bf16 compare
    stylizers = [Stylizer.load("cpu", decoder_path=path, bf16=False) for path in args.decoder]
    for size in args.sizes:
        scores: list[list[tuple[float, float, float]]] = [[] for _ in stylizers]  # per decoder, per pair
        for row, (content_image, style_image) in zip(rows, pairs, strict=True):
            content, style = at_long_side(content_image, size), at_long_side(style_image, size)
            photo_border = border_step(content)
            pair = PairJudge(judge, content, style)
            for number, (stylizer, score) in enumerate(zip(stylizers, scores, strict=True), start=1):
                output = stylizer.stylize(content, [style])
                score.append((*pair.distances(output), border_step(output) - photo_border))
                row.append(labelled(to_pil(output), f"#{number} at {size} px"))
        for number, score in enumerate(scores, start=1):
            content_losses, style_losses, borders = zip(*score, strict=True)
            print(
                f"#{number} at {size} px: content {mean(content_losses):.3f}, "
                f"style {mean(style_losses):.3f}, border over photo mean {mean(borders):+.1f}, "
                f"max {max(borders):+.1f}",
                flush=True,
            )
    held_out_photos = [
        to_tensor(fit_max_side(p, RECONSTRUCTION_SIZE))
        for p in held_out("content", max(args.photos, args.border_photos))
    ]
    photos = held_out_photos[: args.photos]
    for number, stylizer in enumerate(stylizers if photos else [], start=1):
        psnr = mean(psnr_db(stylizer.stylize(photo, [photo]), photo) for photo in photos)
        print(f"#{number} self-reconstruction PSNR {psnr:.2f} dB over {len(photos)} photos", flush=True)
    border_check(stylizers, held_out_photos[: args.border_photos])
    figure = Image.new("RGB", (CELL * len(rows[0]), CELL * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, cell in enumerate(row):
            figure.paste(cell, (x * CELL, y * CELL))
    figure.save(args.output, quality=85)
    print(f"figure written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
