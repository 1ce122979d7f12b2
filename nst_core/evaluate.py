"""``nst eval``: stylize every content × style pair, save a grid, report the training losses.

    nst eval --content-dir DIR --style-dir DIR -o grid.png [--size 256] [--limit 6]
    nst eval --content-dir DIR --style-dir DIR --split val -o grid.png   # their held-out 3%

Rows are contents, columns are styles; the first row and column show the inputs. Printed numbers
are the training objective's content loss L_c and style loss L_s (see ``nst_core.losses``),
averaged over all pairs, for alpha = 1 and alpha = 0.5; the self-reconstruction PSNR: each
content stylized with itself as the style should come back close to itself; and the border step
(``border_step``) of the results at alpha = 1, beside that of the photos themselves: a decoder that
paints a frame around its pictures shows a larger one. Coarse texture steps too; ``frame_offset``, the
step's signed part, and the step measured inside the picture tell the two apart.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import torch
from PIL import Image, ImageOps
from torch.nn import functional as F

from nst_core.adain import Stylizer, adain, feature_stats
from nst_core.architecture import BORDER_PAD, ENCODER_LAYER
from nst_core.images import IMAGE_SUFFIXES, fit_max_side, load_image
from nst_core.losses import (
    ADAIN_STYLE_LAYERS,
    adain_content_loss,
    adain_style_loss,
    normalized_stats,
)
from nst_core.options import RenderOptions
from nst_core.tensors import to_pil, to_tensor
from nst_core.train import list_images
from nst_core.vgg import VGGEncoder, get_encoder

ALPHAS = (1.0, 0.5)
BAND, INSIDE, SEGMENT = 6, 12, 32  # border_step: the outermost band, the strip inside it, and the
# stretches of edge compared at a time (long enough to average out texture, short enough to see a
# stripe along part of an edge), in pixels
FRAMELESS = 9.0  # a photo whose own border_step is at most this has no frame (the photos: 6.9)
INTERIOR = 48  # border_step's control: the same measurement this many pixels inside the picture


@dataclass(frozen=True)
class EvalResult:
    content_loss: dict[float, float]  # alpha -> mean L_c
    style_loss: dict[float, float]  # alpha -> mean L_s
    pairs: int
    self_psnr_db: float  # mean PSNR of each content stylized with itself as the style
    border_steps: list[float]  # border_step of each result at alpha = 1
    photo_border_steps: list[float]  # border_step of each content photo, for reference
    border_excess: list[float]  # each result's border_step minus its photo's (photos may have frames)
    frameless_border_steps: list[float]  # border_step of the results of photos without a frame
    frameless_interior_steps: list[float]  # the same results measured ``INTERIOR`` px inside
    frameless_frame_offsets: list[float]  # the same results' ``frame_offset``: the frame in their step


def _quantize(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 1) * 255).round() / 255


def psnr_db(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1], after 8-bit quantization as a user would receive them."""
    mse = float(F.mse_loss(_quantize(output), _quantize(reference)))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def edge_differences(image: torch.Tensor, inset: int = 0) -> list[torch.Tensor]:
    """For each edge (top, bottom, left, right), the outermost ``BAND`` pixels' colour minus that of the
    ``INSIDE`` pixels next to them, column by column along the edge: (3, edge length), 0-255.

    ``inset``: the same strips that many pixels inside the picture (as far in as fits)."""
    pixels = image[0].float() * 255  # (3, H, W)
    differences = []
    for edge in (pixels, pixels.flip(1), pixels.transpose(1, 2), pixels.transpose(1, 2).flip(1)):
        depth = min(inset, max(0, edge.shape[1] - BAND - INSIDE))  # each turned: its edge is the first rows
        band, inside = edge[:, depth : depth + BAND], edge[:, depth + BAND : depth + BAND + INSIDE]
        differences.append(band.mean(1) - inside.mean(1))
    return differences


def border_step(image: torch.Tensor, inset: int = 0) -> float:
    """How much a picture's edge stands out: for each of the four edges, the mean absolute RGB
    difference (0-255) between the outermost ``BAND`` pixels and the ``INSIDE`` pixels next to them,
    compared stretch by stretch (``SEGMENT`` pixels, half overlapping) along the edge; the largest of
    the four. A painted frame is a step there that the photo does not have; so is coarse texture.

    ``inset`` takes the same measurement that many pixels inside the picture: its control, what
    the picture's own texture and objects score where no frame can be."""
    steps = []
    for difference in edge_differences(image, inset):
        segment = min(SEGMENT, difference.shape[-1])
        stretches = F.avg_pool1d(difference.unsqueeze(0), segment, stride=max(1, segment // 2))
        steps.append(float(stretches.abs().mean()))
    return max(steps)


def frame_offset(image: torch.Tensor, inset: int = 0) -> float:
    """The part of ``border_step`` that is a frame: per edge, the band's colour offset from the strip
    inside it averaged along the whole edge with its sign, so that texture (steps up and down) cancels
    and a band painted in one colour does not; mean absolute over RGB, the largest of the four edges.
    ``inset``: as for ``border_step`` (objects along an edge, a horizon, offset there too)."""
    return max(float(difference.mean(-1).abs().mean()) for difference in edge_differences(image, inset))


class PairJudge:
    """One content × style pair as the full VGG-19 ``judge`` sees it, encoded once for every output
    judged against it (each decoder, each alpha)."""

    @torch.inference_mode()
    def __init__(self, judge: VGGEncoder, content: torch.Tensor, style: torch.Tensor):
        self.judge = judge
        self.content_features = judge(content)[ENCODER_LAYER]
        style_features = judge(style, ADAIN_STYLE_LAYERS)
        self.stylized_features = adain(self.content_features, feature_stats(style_features[ENCODER_LAYER]))
        self.style_stats = normalized_stats(style_features)

    @torch.inference_mode()
    def distances(self, output: torch.Tensor, alpha: float = 1.0) -> tuple[float, float]:
        """(L_c, L_s) of ``output``, whatever network painted it.

        L_c: relu4_1 of the output against (1-a)·f(c) + a·AdaIN(f(c), f(s)) in the judge's features;
        L_s: channel means and stds at relu1_1…relu4_1 against the style's (``nst_core.losses``).
        """
        target = alpha * self.stylized_features + (1.0 - alpha) * self.content_features
        output_features = self.judge(output, ADAIN_STYLE_LAYERS)
        content_loss = adain_content_loss(output_features[ENCODER_LAYER], target)
        return float(content_loss), float(adain_style_loss(output_features, self.style_stats))


def images_in(folder: Path, split: str | None, limit: int) -> list[Path]:
    if split is not None:
        return list_images(folder, validation=split == "val")[:limit]
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]


def evaluate(
    stylizer: Stylizer,
    contents: list[Path],
    styles: list[Path],
    size: int,
    grid_path: Path,
    judge: VGGEncoder | None = None,
) -> EvalResult:
    """Score every pair by ``judge`` (the full VGG-19; default: the stylizer's encoder, which is it for
    the full model) and write the grid (cells ``size``×``size``)."""
    judge = judge or stylizer.encoder
    if not contents or not styles:
        raise ValueError("need at least one content image and one style image")
    cell = (size, size)
    grid = Image.new("RGB", (size * (len(styles) + 1), size * (len(contents) + 1)), "white")
    style_images = [fit_max_side(load_image(p), size) for p in styles]
    for col, style in enumerate(style_images, start=1):
        grid.paste(ImageOps.fit(style, cell), (col * size, 0))
    sums = {alpha: [0.0, 0.0] for alpha in ALPHAS}
    psnrs, borders, photo_borders, excess, frameless, interior, offsets = [], [], [], [], [], [], []
    for row, content_path in enumerate(contents, start=1):
        content_image = fit_max_side(load_image(content_path), size)
        grid.paste(ImageOps.fit(content_image, cell), (0, row * size))
        content = to_tensor(content_image)
        photo_borders.append(border_step(content))
        psnrs.append(psnr_db(stylizer.stylize(content, [content]), content))
        for col, style_image in enumerate(style_images, start=1):
            style = to_tensor(style_image)
            pair = PairJudge(judge, content, style)
            for alpha in ALPHAS:
                output = stylizer.stylize(content, [style], RenderOptions(alpha=alpha))
                content_loss, style_loss = pair.distances(output, alpha)
                sums[alpha][0] += content_loss
                sums[alpha][1] += style_loss
                if alpha == 1.0:
                    borders.append(border_step(output))
                    excess.append(borders[-1] - photo_borders[-1])
                    if photo_borders[-1] <= FRAMELESS:
                        frameless.append(borders[-1])
                        interior.append(border_step(output, INTERIOR))
                        offsets.append(frame_offset(output))
                    grid.paste(ImageOps.fit(to_pil(output), cell), (col * size, row * size))
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(grid_path)
    pairs = len(contents) * len(styles)
    return EvalResult(
        {a: v[0] / pairs for a, v in sums.items()},
        {a: v[1] / pairs for a, v in sums.items()},
        pairs,
        sum(psnrs) / len(psnrs),
        borders,
        photo_borders,
        excess,
        frameless,
        interior,
        offsets,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nst eval", description=__doc__.splitlines()[0])
    parser.add_argument("--content-dir", type=Path, required=True)
    parser.add_argument("--style-dir", type=Path, required=True)
    parser.add_argument(
        "--split", choices=("val", "train"), default=None, help="use the training split's files"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="grid PNG")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=6, help="at most this many images per folder")
    parser.add_argument("--model", choices=("full", "fast"), default="full", help="fast: the student")
    parser.add_argument("--decoder", default=None)
    parser.add_argument("--student", default=None, help="fast model weights (default weights/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--border-pad", type=int, default=BORDER_PAD, help="pixels mirrored around the content (0: none)"
    )
    args = parser.parse_args(argv)
    for folder in (args.content_dir, args.style_dir):
        if not folder.is_dir():
            print(f"error: folder not found: {folder}")
            return 2
    # In float32 on every machine, so that numbers from CPUs with and without bf16 compare.
    if args.model == "fast":
        stylizer = Stylizer.load_fast(args.device, args.student, bf16=False)
    else:
        stylizer = Stylizer.load(args.device, decoder_path=args.decoder, bf16=False)
    stylizer.border_pad = args.border_pad
    contents = images_in(args.content_dir, args.split, args.limit)
    styles = images_in(args.style_dir, args.split, args.limit)
    judge = get_encoder(None, "cpu").to(stylizer.device)
    result = evaluate(stylizer, contents, styles, args.size, args.output, judge)
    print(f"{result.pairs} pairs, grid written to {args.output}")
    print(f"self-reconstruction (each photo as its own style): PSNR {result.self_psnr_db:.2f} dB")
    steps, excess = result.border_steps, result.border_excess
    print(
        f"border step: results mean {mean(steps):.1f}, max {max(steps):.1f}; "
        f"the photos themselves mean {mean(result.photo_border_steps):.1f}; "
        f"results over their photo mean {mean(excess):+.1f}, max {max(excess):+.1f}"
    )
    if frameless := result.frameless_border_steps:
        interior, offsets = result.frameless_interior_steps, result.frameless_frame_offsets
        print(
            f"results of photos without a frame of their own (photo step <= {FRAMELESS:g}): "
            f"{len(frameless)} results, mean {mean(frameless):.1f}, max {max(frameless):.1f}; "
            f"the same step {INTERIOR} px inside them (no frame there): "
            f"mean {mean(interior):.1f}, max {max(interior):.1f}; "
            f"their frame offset (texture cancelled): mean {mean(offsets):.1f}, max {max(offsets):.1f}"
        )
    for alpha in ALPHAS:
        print(
            f"alpha={alpha}: content loss {result.content_loss[alpha]:.4f}, "
            f"style loss {result.style_loss[alpha]:.4f}"
        )
    return 0
