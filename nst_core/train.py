"""Train the AdaIN decoder (Huang & Belongie 2017, sec. 6), readable top to bottom.

    nst train --content-dir PHOTOS --style-dir ART --out runs/decoder            # start
    nst train --content-dir PHOTOS --style-dir ART --out runs/decoder --resume   # continue from ckpt.pt
    nst train ... --resume --init weights/decoder.safetensors   # or, with no ckpt.pt, from the export

Loss: L = L_c + λ·L_s (``nst_core.losses``: the AdaIN content loss at relu4_1 against the AdaIN target,
and channel means and stds at relu1_1…relu4_1, on a per-layer normalised scale).

Identity samples: the last ``--identity-samples`` of every batch are photos stylized with
themselves, whose AdaIN target is their own relu4_1, with a pixel loss on the output (as in SANet's
identity loss, Park & Lee 2019). Users do this (low alpha, a photo as the style), and it is how we
measure fidelity (self-reconstruction PSNR); without it the decoder drifts into grid-like texture
that relu4_1 and the style statistics do not see.

An optional first phase (``--pretrain-steps``) makes every sample an identity sample, with no style
loss: cheap signal that gets the decoder to produce sharp images before the style objective starts.
With ``--pretrain-loss pixels`` it is judged by the pixels alone, skipping the loss network.

With ``--margin`` (the full model) each crop is encoded as the Stylizer encodes a picture: mirrored
outwards, the margin's features kept within the crop's range, AdaIN by the crop's own statistics; the
decoder paints the margin too, and only the crop is judged, encoded the same way (as are the style
crops). A crop's edge then looks to the decoder as a picture's edge does at inference, and nothing the
losses compare sees the encoder's zero padding. (Tried in short forks; not in ``make train`` yet.)

With ``--average-decay`` what is validated and exported is an exponential moving average of the
decoder's weights: the run's checkpoint-to-checkpoint noise, averaged out.

The fast model (``--model fast``, ``nst_core.student``) trains with the same objective and data, after
a first phase of its own (``--distill-steps``): the student encoder, pruned from VGG-19, learns to
describe photos and artworks as VGG-19 does at relu4_1 through a learned 1x1 embedding (collaborative
distillation, Wang et al. 2020). Then it is frozen, the decoder sees AdaIN in the student's space,
and VGG-19 stays the loss network: the targets are the teacher's, as for the full model.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from nst_core.adain import (
    StyleStats,
    adain,
    confined_to_picture,
    feature_stats,
    joined_layer_stats,
    padded_for_encoding,
    slice_stats,
    without_margin,
)
from nst_core.architecture import ENCODER_LAYER, STUDENT_WIDTH, layer_stride, picture_slices
from nst_core.decoder import Decoder, load_decoder, save_decoder, saved_step
from nst_core.device import bf16_is_fast, resolve_device, use_all_cpu_cores
from nst_core.images import IMAGE_SUFFIXES
from nst_core.losses import (
    ADAIN_STYLE_LAYERS,
    LAYER_SCALE,
    adain_content_loss,
    adain_style_loss,
    adain_target,
    normalized_stats,
)
from nst_core.student import load_student, save_student, untrained_student
from nst_core.tensors import to_tensor
from nst_core.vgg import get_encoder

LOG_COLUMNS = ["step", "split", "content", "style", "total", "lr", "images_seen", "wall", "distill"]


# ----------------------------------------------------------------------------- data
def is_validation(name: str, percent: int = 3) -> bool:
    """A fixed, name-hash-chosen ``percent``% of files is held out (stable as folders grow)."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100 < percent


def list_images(folder: Path, validation: bool) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p for p in files if is_validation(p.name) == validation]


def open_with_short_side(path: Path, short: int) -> Image.Image:
    """RGB image resized so its shorter side is ``short`` (aspect ratio kept)."""
    image = Image.open(path).convert("RGB")
    scale = short / min(image.size)
    size = (max(short, round(image.width * scale)), max(short, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def random_square(path: Path, crop: int, rng: random.Random) -> torch.Tensor:
    """uint8 (3, crop, crop): the short side resized to a random length in [crop, 1.5·crop], then cut."""
    image = open_with_short_side(path, rng.randint(crop, round(crop * 1.5)))
    left, top = rng.randint(0, image.width - crop), rng.randint(0, image.height - crop)
    square = np.asarray(image.crop((left, top, left + crop, top + crop)))
    return torch.from_numpy(square.copy()).permute(2, 0, 1)


def center_crops(files: list[Path], crop: int) -> torch.Tensor:
    """Deterministic validation batch: short side to ``crop``, centre square."""
    tensors = []
    for path in files:
        image = open_with_short_side(path, crop)
        left, top = (image.width - crop) // 2, (image.height - crop) // 2
        tensors.append(to_tensor(image.crop((left, top, left + crop, top + crop)))[0])
    return torch.stack(tensors)


@torch.no_grad()
def build_bank(
    files: list[Path], crop: int, per_image: int, encoder, keep_features: bool, seed: int, amp: bool
) -> dict[str, torch.Tensor]:
    """Random crops of ``files`` with what the frozen encoder says of them, computed once.

    The encoder never changes, so its view of the training crops is computed up front (like nanoGPT's
    prepare step): uint8 pixels, relu4_1 in bf16 (content only) and the normalised statistics of every
    style layer. Each step then costs only the decoder and the encoder pass over its output, and no
    image decoding competes with the training for the CPU.
    """
    rng = random.Random(seed)
    pixels = torch.stack([random_square(path, crop, rng) for path in files for _ in range(per_image)])
    bank = {"pixels": pixels}
    for start in range(0, len(pixels), 16):
        batch = pixels[start : start + 16]
        with torch.autocast(encoder.bgr_mean.device.type, dtype=torch.bfloat16, enabled=amp):
            features = encoder(batch.float().div(255).to(encoder.bgr_mean.device), ADAIN_STYLE_LAYERS)
        parts = {
            f"{part}/{layer}": value
            for layer, stats in normalized_stats(features).items()
            for part, value in (("mean", stats.mean), ("std", stats.std))
        }
        if keep_features:
            parts[ENCODER_LAYER] = features[ENCODER_LAYER].to(torch.bfloat16)
        for key, value in parts.items():  # written in place: gathering chunks to concatenate took 2x
            if key not in bank:
                bank[key] = torch.empty((len(pixels), *value.shape[1:]), dtype=value.dtype)
            bank[key][start : start + len(batch)] = value.cpu()
    return bank


def load_or_build_bank(
    folder: Path, out: Path, args: argparse.Namespace, encoder, keep_features: bool, amp: bool
):
    """The bank of ``folder``'s training files, cached in ``out`` under a name that pins its inputs."""
    files = list_images(folder, validation=False)
    if not files:
        raise ValueError(f"no training images in {folder}")
    per_image = args.crops_per_image
    key = f"{[f.name for f in files]}|{args.crop}|{per_image}|{args.seed}|{keep_features}"
    key = hashlib.sha1(key.encode()).hexdigest()
    path = out / f"bank-{folder.name}-{key[:12]}.pt"
    if not path.exists():
        print(f"encoding {len(files)} × {per_image} crops of {folder} (once; cached in {path.name})")
        bank = build_bank(files, args.crop, per_image, encoder, keep_features, args.seed, amp)
        torch.save(bank, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        del bank  # read back from disk like a cached one: both banks in memory at once outgrew 24 GiB
    # Memory-mapped: pages load on first use and runs on one machine share them.
    return torch.load(path, weights_only=True, mmap=True)


def batch_style(styles, style_index, contents, identity_index, device) -> dict[str, StyleStats]:
    """Statistics to match: the artworks', then the identity samples' own."""
    joined = joined_layer_stats([bank_stats(styles, style_index), bank_stats(contents, identity_index)])
    return {layer: StyleStats(stats.mean.to(device), stats.std.to(device)) for layer, stats in joined.items()}


def bank_stats(bank: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, StyleStats]:
    return {
        layer: StyleStats(bank[f"mean/{layer}"][index], bank[f"std/{layer}"][index])
        for layer in ADAIN_STYLE_LAYERS
    }


def picture_features(
    encoder, pixels: torch.Tensor, margin: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every style layer's cells that see the picture, with ``pixels`` encoded behind a mirrored margin as
    the Stylizer encodes (no zero padding next to the picture), and relu4_1's whole map."""
    height, width = pixels.shape[-2:]
    features = encoder(padded_for_encoding(pixels, margin), ADAIN_STYLE_LAYERS)
    cells = {
        layer: value[..., *picture_slices(margin, height, width, layer_stride(layer))].float()
        for layer, value in features.items()
    }
    return cells, features[ENCODER_LAYER].float()


@torch.no_grad()
def margin_batch(
    encoder, content_pixels: torch.Tensor, style_pixels: torch.Tensor | None, margin: int, amp: bool
) -> tuple[torch.Tensor, torch.Tensor, dict[str, StyleStats] | None]:
    """Decoder input, relu4_1 target and style statistics of a batch whose crops are all encoded as
    inference encodes a picture: the first ``len(style_pixels)`` contents take those styles, the rest
    are identity samples (None: all, with no style loss).

    Nothing the losses compare then sees the encoder's zero padding: with it, the style statistics of an
    output depend on how its edge contrasts with black, and the decoder learns to paint a frame.
    """
    styled = 0 if style_pixels is None else len(style_pixels)
    with torch.autocast(content_pixels.device.type, dtype=torch.bfloat16, enabled=amp):
        content_cells, content_map = picture_features(encoder, content_pixels, margin)
        style_cells = picture_features(encoder, style_pixels, margin)[0] if styled else None
    features, own = confined_to_picture(content_map, content_cells[ENCODER_LAYER])
    style = None
    if style_pixels is not None:
        style = slice_stats(normalized_stats(content_cells), slice(styled, None))  # identity samples'
        if style_cells is not None:
            style = joined_layer_stats([normalized_stats(style_cells), style])
    decoder_input = teacher_targets(features, style, len(content_pixels) - styled, own)
    return decoder_input, decoder_input[..., *picture_slices(margin, *content_pixels.shape[-2:])], style


# ----------------------------------------------------------------------------- loss
def teacher_targets(
    content_features, style: dict[str, StyleStats] | None, identity: int, own: StyleStats | None = None
) -> torch.Tensor:
    """What the loss network should see in relu4_1 of the outputs: AdaIN targets, then the identity
    samples' own features. ``style`` holds every sample's style statistics (None: all identity);
    ``own``: the contents' statistics when their maps include a margin (``margin_batch``)."""
    content_features = content_features.float()
    styled = len(content_features) - identity
    if not styled:
        return content_features
    if style is None:
        raise ValueError("styled samples need style statistics")
    own = None if own is None else StyleStats(own.mean[:styled], own.std[:styled])
    styled_target = adain_target(content_features[:styled], slice_stats(style, slice(0, styled)), own)
    return torch.cat([styled_target, content_features[styled:]])


def student_features(student, decoder, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The student's layers of ``pixels`` that its decoder reads (relu4_1 and the skip layers) or is
    conditioned on."""
    layers = dict.fromkeys((ENCODER_LAYER, *decoder.skip_layers, *decoder.condition_layers))
    return student(pixels, tuple(layers))


def student_inputs(
    student, decoder, features: dict[str, torch.Tensor], style_pixels: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, StyleStats] | None]:
    """The student decoder's input, AdaIN in the student's own feature space at every layer it reads,
    and the statistics it is conditioned on (None: it is not), as at inference.

    ``features``: ``student_features`` of the contents. The first ``len(style_pixels)`` contents take
    those styles; the rest are identity samples, conditioned on their own statistics. Differentiable:
    with ``--tune-encoder`` the decoder's losses reach the encoder through it.
    """
    styled = len(style_pixels)
    style_features = student(style_pixels, tuple(features)) if styled else {}
    style = {layer: feature_stats(value) for layer, value in style_features.items()}
    inputs = {
        layer: torch.cat([adain(features[layer][:styled], style[layer]), features[layer][styled:]])
        if styled
        else features[layer]
        for layer in (ENCODER_LAYER, *decoder.skip_layers)
    }
    if decoder.condition is None:
        return inputs, None
    own = {layer: feature_stats(features[layer][styled:]) for layer in decoder.condition_layers}
    return inputs, joined_layer_stats([style, own], decoder.condition_layers) if styled else own


def compute_losses(
    encoder,
    decoder,
    decoder_input,
    target,
    content_pixels,
    style: dict[str, StyleStats] | None,
    identity: int,
    margin: int = 0,
    condition: dict[str, StyleStats] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Losses of one batch and the decoded images.

    ``target`` is the teacher's relu4_1 target of every sample (``teacher_targets``); the decoder sees
    ``decoder_input`` (the same for the full model, the student's AdaIN for the fast one). The last
    ``identity`` samples get a pixel loss against their photo; ``style`` None skips the style loss.
    ``margin``: the batch was encoded with one (``margin_batch``); the decoder paints it too, and the
    picture is cropped out and judged encoded as inference would encode it. ``condition``: the
    statistics a conditioned decoder is given (``student_inputs``).
    """
    styled = len(target) - identity
    output = without_margin(decoder(decoder_input, condition), margin, content_pixels)
    if margin:
        output_features = picture_features(encoder, output, margin)[0]
    else:
        output_features = {k: v.float() for k, v in encoder(output, ADAIN_STYLE_LAYERS).items()}
    zero = output.new_zeros((), dtype=torch.float32)
    losses = {
        "content": adain_content_loss(output_features[ENCODER_LAYER], target),
        "style": adain_style_loss(output_features, style) if style is not None else zero,
        "pixel": F.mse_loss(output[styled:].float(), content_pixels[styled:]) if identity else zero,
    }
    return losses, output


def distill_loss(embedding, features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Collaborative distillation's feature loss: the student's relu4_1 ``features``, linearly
    embedded, against the teacher's, on relu4_1's normalised scale."""
    scale = LAYER_SCALE[ENCODER_LAYER]
    embedded = embedding(features)
    return F.mse_loss(embedded / scale, teacher_features.float() / scale)


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, modules: dict[str, torch.nn.Module], optimizer, step: int, images_seen: int):
    state = {name: module.state_dict() for name, module in modules.items()} | {
        "optimizer": optimizer.state_dict(),
        "step": step,
        "images_seen": images_seen,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never leaves a broken checkpoint


AVERAGE_OF = {"average": "decoder", "student_average": "student"}  # moving averages and what they follow


def load_checkpoint(path: Path, modules: dict[str, torch.nn.Module], optimizer) -> tuple[int, int]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    for name, module in modules.items():  # a run that starts averaging starts from what it averages
        module.load_state_dict(state[name] if name in state else state[AVERAGE_OF[name]])
    if "optimizer" in state:  # a slimmed checkpoint (decoder only) restarts Adam's moments
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["step"], state["images_seen"]


def start_from_weights(path: Path, modules: dict[str, torch.nn.Module], banks) -> int:
    """Load exported weights into ``modules`` and return the step they were saved at.

    What a run falls back on when its checkpoint is gone (a new machine): the committed weights.
    Adam's moments restart; the student's distillation embedding, which is not exported, is refit.
    """
    step = saved_step(path)
    if "student" in modules:
        student, decoder = load_student(path)
        modules["student"].load_state_dict(student.state_dict())
        fit_embedding(modules["embedding"], modules["student"], banks)
    else:
        decoder, _ = load_decoder(path)
    # Skip inputs the file lacks (it predates them) stay at zero: the same decoder.
    modules["decoder"].load_state_dict(modules["decoder"].state_dict() | decoder.state_dict())
    for average, followed in AVERAGE_OF.items():  # the moving averages start from the weights loaded
        if average in modules:
            modules[average].load_state_dict(modules[followed].state_dict())
    return step


@torch.no_grad()
def update_average(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """One step of the exponential moving average of ``model``'s weights."""
    for averaged, current in zip(average.parameters(), model.parameters(), strict=True):
        averaged.lerp_(current, 1.0 - decay)


@torch.no_grad()
def fit_embedding(embedding: torch.nn.Conv2d, student, banks, per_bank: int = 256) -> None:
    """Set ``embedding`` to the least-squares 1x1 map from the student's relu4_1 to the teacher's on
    bank crops: the optimum that distillation's embedding approaches by gradient descent."""
    device = embedding.weight.device
    inputs, targets = [], []
    for bank in banks:
        index = torch.randperm(len(bank["pixels"]), generator=torch.Generator().manual_seed(0))[:per_bank]
        features = student(bank["pixels"][index].to(device).float().div(255))[ENCODER_LAYER]
        inputs.append(features.permute(0, 2, 3, 1).reshape(-1, STUDENT_WIDTH))
        targets.append(bank[ENCODER_LAYER][index].to(device).float().permute(0, 2, 3, 1).reshape(-1, 512))
    x = torch.cat(inputs).double()
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # the bias
    solution = torch.linalg.lstsq(x.cpu(), torch.cat(targets).double().cpu()).solution.float()
    embedding.weight.copy_(solution[:-1].T[:, :, None, None])
    embedding.bias.copy_(solution[-1])


@torch.no_grad()
def calibrate_condition(decoders: list[Decoder], student, banks, per_bank: int = 32) -> None:
    """Standardise the decoders' conditioning (the trained one and its average alike) by the
    student's statistics of bank crops, photos and artworks, before it has learned anything."""
    layers, device = decoders[0].condition_layers, decoders[0].condition.center.device
    stats = []
    for bank in banks:
        index = torch.randperm(len(bank["pixels"]), generator=torch.Generator().manual_seed(0))[:per_bank]
        features = student(bank["pixels"][index].to(device).float().div(255), layers)
        stats.append({layer: feature_stats(value) for layer, value in features.items()})
    joined = joined_layer_stats(stats)
    for decoder in decoders:
        decoder.condition.calibrate(joined)


def write_plot(log_path: Path, out_path: Path) -> None:
    """Loss curves from the CSV log (matplotlib is a training-only dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, split in zip(axes, ("train", "val"), strict=True):
        for key in ("content", "style", "total", "distill"):  # distill: the fast model's first phase
            picked = [r for r in rows if r["split"] == split and r.get(key)]
            if picked:
                ax.plot([int(r["step"]) for r in picked], [float(r[key]) for r in picked], label=key)
        ax.set_yscale("log")
        ax.set_title(f"{split} loss")
        ax.set_xlabel("step")
        if ax.lines:  # a split with no rows yet (a run that only validated)
            ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def validate(
    encoder, decoder, student, embedding, val_content, val_style, style_weight: float, margin: int, amp: bool
):
    """The full objective (style phase) on the fixed validation pairs, and a content/style/result grid.

    For the fast model (``student`` given) also the distillation loss on the validation photos.
    """
    decoder.eval()
    style = normalized_stats(encoder(val_style, ADAIN_STYLE_LAYERS))
    condition = None  # what a conditioned decoder is given
    if margin:
        decoder_input, target, style = margin_batch(encoder, val_content, val_style, margin, amp)
    else:
        content_features = encoder(val_content)[ENCODER_LAYER]
        target = teacher_targets(content_features, style, identity=0)
        if student is not None:
            student_maps = student_features(student, decoder, val_content)
            decoder_input, condition = student_inputs(student, decoder, student_maps, val_style)
        else:
            decoder_input = target
    losses, styled = compute_losses(
        encoder, decoder, decoder_input, target, val_content, style, identity=0, margin=margin,
        condition=condition,
    )  # fmt: skip
    if student is not None:
        losses["distill"] = distill_loss(embedding, student_maps[ENCODER_LAYER], content_features)
    decoder.train()
    grid = torch.cat([val_content, val_style, styled.clamp(0, 1)], dim=2)  # rows: content / style / result
    grid = torch.cat(list(grid), dim=2)
    total = losses["content"] + style_weight * losses["style"]
    return {k: float(v) for k, v in losses.items()} | {"total": float(total)}, grid


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="nst train", description="Train the AdaIN decoder (or the fast student)."
    )
    p.add_argument(
        "--model", choices=("full", "fast"), default="full",
        help="full: a decoder for VGG-19; fast: the student encoder and its decoder (nst_core.student)",
    )  # fmt: skip
    p.add_argument("--content-dir", type=Path, required=True, help="photos (a fixed 3%% is held out)")
    p.add_argument("--style-dir", type=Path, required=True, help="artworks (a fixed 3%% is held out)")
    p.add_argument("--out", type=Path, default=Path("runs") / "decoder")
    p.add_argument(
        "--export", type=Path, default=None, help="also write the fp16 weights here at each checkpoint"
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--init", type=Path, default=None,
        help="start from these exported weights at the step they record (unless --resume finds a checkpoint)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=160_000, help="stop at this global step")
    p.add_argument(
        "--distill-steps", type=int, default=0, help="fast model: first steps distill the student encoder"
    )
    p.add_argument("--pretrain-steps", type=int, default=0, help="next steps learn to invert relu4_1")
    p.add_argument(
        "--pretrain-loss", choices=("features", "pixels"), default="features",
        help="pretraining judged by the loss network and the pixels, or by the pixels alone (no VGG pass)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument(
        "--crops-per-image", type=int, default=3, help="random crops per image in the feature bank"
    )
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-decay", type=float, default=5e-5, help="lr = lr0 / (1 + decay * step)")
    p.add_argument("--style-weight", type=float, default=10.0, help="λ")
    p.add_argument(
        "--identity-samples", type=int, default=2, help="samples per batch stylized with themselves"
    )
    p.add_argument(
        "--pixel-weight", type=float, default=200.0, help="pixel MSE weight of those (all, in pretraining)"
    )
    p.add_argument(
        "--amp", choices=("auto", "on", "off"), default="auto", help="bf16 autocast (auto: if fast)"
    )
    p.add_argument(
        "--margin", type=int, default=0,
        help="full model: encode crops mirrored outwards by this many pixels, as inference does (BORDER_PAD)",
    )  # fmt: skip
    p.add_argument(
        "--average-decay", type=float, default=0.0,
        help="validate and export an exponential moving average of the decoder's weights (0: off)",
    )  # fmt: skip
    p.add_argument(
        "--tune-encoder", type=float, default=0.0,
        help="fast model: the student encoder keeps learning in the style phase, held near VGG-19 by "
        "the distillation loss at this weight (0: frozen once distilled)",
    )  # fmt: skip
    p.add_argument(
        "--skip-lr-scale", type=float, default=10.0,
        help="fast model: the decoder's skip inputs and conditioning learn at this multiple of the rate",
    )  # fmt: skip
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop (and checkpoint) after this; 0: no limit"
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-size", type=int, default=8)
    p.add_argument("--val-crop", type=int, default=192)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    args = p.parse_args(argv)
    if args.margin and args.model == "fast":
        p.error("--margin trains the full model's decoder; the fast model trains without one")
    if args.margin < 0:
        p.error("--margin must be >= 0")
    if args.tune_encoder < 0 or (args.tune_encoder and args.model != "fast"):
        p.error("--tune-encoder takes a weight >= 0 and tunes the fast model's student encoder")
    if not 0.0 <= args.average_decay < 1.0:
        p.error("--average-decay must be in [0, 1)")
    return args


def parameter_groups(
    modules: dict[str, torch.nn.Module], decoder: Decoder, skip_lr_scale: float
) -> list[dict]:
    """Everything at the schedule's rate, but the decoder's skip inputs and conditioning at
    ``skip_lr_scale`` times it, up to the run's first rate: they join a run late (at zero, ``nst train
    --init`` from a file without them), where the decayed rate would keep them near zero for thousands
    of steps."""
    late = [*decoder.skips.parameters(), *(decoder.condition.parameters() if decoder.condition else ())]
    late_ids = {id(p) for p in late}
    rest = [p for module in modules.values() for p in module.parameters() if id(p) not in late_ids]
    groups = [{"params": rest, "lr_scale": 1.0}]
    return groups + ([{"params": late, "lr_scale": skip_lr_scale}] if late else [])


def learning_rate(args: argparse.Namespace, step: int) -> float:
    """The one schedule: inverse decay, as in the reference implementation (lr0 / (1 + decay·step))."""
    return args.lr / (1.0 + args.lr_decay * step)


def validation_batch(folder: Path, args: argparse.Namespace, device: torch.device) -> torch.Tensor:
    files = list_images(folder, validation=True) or list_images(folder, validation=False)  # tiny folders
    return center_crops(files[: args.val_size], args.val_crop).to(device)


def save_grid(grid: torch.Tensor, path: Path) -> None:
    Image.fromarray((grid.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)).save(path)


def encoder_learns(args: argparse.Namespace, phase: str) -> bool:
    """The student encoder learns while it is distilled and, with ``--tune-encoder``, in the style
    phase; otherwise it is frozen once distilled: AdaIN needs a fixed feature space."""
    return phase == "distill" or (phase == "style" and args.tune_encoder > 0)


def phase_of(args: argparse.Namespace, step: int) -> str:
    """distill (fast model: the student encoder learns), pretrain (every sample an identity sample,
    no style loss), then style (the training objective)."""
    if step < args.distill_steps:
        return "distill"
    return "pretrain" if step < args.distill_steps + args.pretrain_steps else "style"


def train(args: argparse.Namespace) -> int:
    """Run until ``args.steps``, ``args.max_minutes`` or a signal; returns the step reached."""
    from tqdm import tqdm

    # ------------------------------------------------------------------ setup
    device = resolve_device(args.device)
    use_all_cpu_cores() if args.threads == 0 else torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = args.out / "ckpt.pt", args.out / "log.csv"

    # bf16 autocast + channels_last: ~3x faster steps on CPUs with AVX-512 BF16 and on tensor-core GPUs.
    amp = args.amp == "on" or (args.amp == "auto" and bf16_is_fast(device))
    memory_format = torch.channels_last if amp else torch.contiguous_format
    torch.backends.cudnn.benchmark = True
    encoder = get_encoder(None, "cpu").to(device, memory_format=memory_format)  # the loss network
    fast = args.model == "fast"
    contents = load_or_build_bank(args.content_dir, args.out, args, encoder, keep_features=True, amp=amp)
    styles = load_or_build_bank(args.style_dir, args.out, args, encoder, keep_features=fast, amp=amp)
    val_content = validation_batch(args.content_dir, args, device)
    val_style = validation_batch(args.style_dir, args, device)
    student = embedding = None
    if fast:
        student, decoder = untrained_student(contents["pixels"][:32].float().div(255))
        student = student.to(device, memory_format=memory_format)
        embedding = torch.nn.Conv2d(STUDENT_WIDTH, 512, kernel_size=1).to(device)  # training only
        modules = {"decoder": decoder, "student": student, "embedding": embedding}
    else:
        decoder = Decoder()
        modules = {"decoder": decoder}
    decoder = decoder.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.Adam(parameter_groups(modules, decoder, args.skip_lr_scale), lr=args.lr)
    if args.average_decay:  # what is validated and exported: the weights with SGD's noise averaged out
        modules["average"] = copy.deepcopy(decoder).requires_grad_(False)
    if fast and args.tune_encoder and args.average_decay:  # the decoder's average needs the encoder's
        modules["student_average"] = copy.deepcopy(student).requires_grad_(False)
    shipped = modules.get("average", decoder)
    shipped_student = modules.get("student_average", student)
    step, images_seen = 0, 0
    if args.resume and ckpt_path.exists():
        step, images_seen = load_checkpoint(ckpt_path, modules, optimizer)
        print(f"resumed from {ckpt_path} at step {step}")
    elif args.init:
        step = start_from_weights(args.init, modules, [contents, styles])
        images_seen = step * args.batch_size
        print(f"started from {args.init} at step {step} (no checkpoint in {args.out}; Adam restarts)")
    pairs = min(len(val_content), len(val_style))  # photo i is shown with artwork i
    val_content, val_style = val_content[:pairs], val_style[:pairs]

    stop = {"flag": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(flag=True))
    new_log = not log_path.exists()
    log = log_path.open("a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(LOG_COLUMNS)
    interactive = sys.stderr.isatty()
    bar = tqdm(total=args.steps, initial=step, dynamic_ncols=True, mininterval=0.1 if interactive else 60)

    # ------------------------------------------------------------------ loop
    started = last_checkpoint = tick = time.monotonic()
    while True:
        lr = learning_rate(args, step)
        phase = phase_of(args, step)
        out_of_time = args.max_minutes and time.monotonic() - started > args.max_minutes * 60
        finished = step >= args.steps or stop["flag"] or out_of_time
        due = time.monotonic() - last_checkpoint > args.checkpoint_minutes * 60
        due = due or step in (args.distill_steps, args.distill_steps + args.pretrain_steps)  # phase ends
        if finished or (due and step > 0):  # validate, log, checkpoint
            metrics, grid = validate(encoder, shipped, shipped_student, embedding, val_content, val_style,
                                     args.style_weight, args.margin, amp)  # fmt: skip
            writer.writerow([step, "val", metrics["content"], metrics["style"], metrics["total"], lr,
                             images_seen, time.time(), metrics.get("distill", "")])  # fmt: skip
            log.flush()
            save_checkpoint(ckpt_path, modules, optimizer, step, images_seen)
            save_grid(grid, args.out / "val_grid.png")
            write_plot(log_path, args.out / "loss.png")
            if args.export:
                if student is not None:
                    save_student(shipped_student, shipped, args.export, step)
                else:
                    save_decoder(shipped, args.export, step)
            shown = " ".join(f"{key} {value:.4f}" for key, value in metrics.items() if key != "pixel")
            bar.write(f"step {step}: val {shown}")
            last_checkpoint = time.monotonic()
        if finished:
            break

        if student is not None:
            student.requires_grad_(encoder_learns(args, phase))
        if phase != "distill" and decoder.condition is not None and not decoder.condition.film.weight.any():
            decoders = list({id(module): module for module in (decoder, shipped)}.values())
            calibrate_condition(decoders, student, [contents, styles])
        if phase == "distill":
            losses = distill_batch(student, embedding, contents, styles, args.batch_size, device)
            total = losses["distill"]
        else:
            losses = decoder_batch(encoder, decoder, student, embedding, contents, styles, phase, args,
                                   device, memory_format, amp)  # fmt: skip
            weights = {"content": 1.0, "style": args.style_weight, "pixel": args.pixel_weight,
                       "distill": args.tune_encoder}  # fmt: skip
            total = sum(weights[key] * value for key, value in losses.items())
        for group in optimizer.param_groups:  # never above the run's first rate: 10x that diverged
            group["lr"] = min(lr * group["lr_scale"], args.lr)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if shipped is not decoder:
            update_average(shipped, decoder, args.average_decay)
        if shipped_student is not student:
            update_average(shipped_student, student, args.average_decay)
        step += 1
        images_seen += args.batch_size
        bar.update(1)
        if step % args.log_every == 0:
            rate = args.log_every / (time.monotonic() - tick)
            tick = time.monotonic()
            shown = {key: float(value.detach()) for key, value in losses.items()}
            row = [shown.get("content", ""), shown.get("style", ""), float(total.detach()), lr, images_seen]
            writer.writerow([step, "train", *row, time.time(), shown.get("distill", "")])
            bar.set_postfix_str(
                " ".join(f"{k[0]}={v:.4f}" for k, v in shown.items()) + f" {phase} {rate:.2f} it/s"
            )
    bar.close()
    log.close()
    return step


def distill_batch(student, embedding, contents, styles, batch_size: int, device) -> dict[str, torch.Tensor]:
    """Half photos, half artworks: the student must describe both as the teacher does."""
    pixels, features = [], []
    for bank, count in ((contents, batch_size - batch_size // 2), (styles, batch_size // 2)):
        index = torch.randint(len(bank["pixels"]), (count,))
        pixels.append(bank["pixels"][index])
        features.append(bank[ENCODER_LAYER][index])
    predicted = student(torch.cat(pixels).to(device).float().div(255))[ENCODER_LAYER]
    return {"distill": distill_loss(embedding, predicted, torch.cat(features).to(device))}


def decoder_batch(
    encoder, decoder, student, embedding, contents, styles, phase: str, args, device, memory_format, amp: bool
) -> dict[str, torch.Tensor]:
    """One batch of the decoder objective: ``batch_size - identity`` styled samples, then identity ones."""
    identity = args.batch_size if phase == "pretrain" else args.identity_samples
    anchor: dict[str, torch.Tensor] = {}
    condition = None  # the statistics a conditioned decoder is given
    c_index = torch.randint(len(contents["pixels"]), (args.batch_size,))
    s_index = torch.randint(len(styles["pixels"]), (args.batch_size - identity,))
    content_pixels = contents["pixels"][c_index].to(device).float().div(255)
    style_pixels = None  # the artworks' pixels, where their statistics are not the bank's
    if args.margin or student is not None:
        style_pixels = styles["pixels"][s_index].to(device).float().div(255)
    if args.margin:  # the bank saw crops alone; at inference the decoder gets a margin around a picture
        styled_pixels = None if phase == "pretrain" else style_pixels
        decoder_input, target, style = margin_batch(encoder, content_pixels, styled_pixels, args.margin, amp)
    else:
        content_features = contents[ENCODER_LAYER][c_index].to(device, memory_format=memory_format)
        style = (
            None
            if phase == "pretrain"
            else batch_style(styles, s_index, contents, c_index[len(s_index) :], device)
        )
        target = teacher_targets(content_features, style, identity)
        if student is None:
            decoder_input = target
        else:
            tuning = encoder_learns(args, phase)
            with torch.set_grad_enabled(tuning):
                student_maps = student_features(student, decoder, content_pixels)
                decoder_input, condition = student_inputs(student, decoder, student_maps, style_pixels)
            if tuning:  # the anchor that keeps the tuned encoder describing pictures as VGG-19 does
                anchor = {"distill": distill_loss(embedding, student_maps[ENCODER_LAYER], content_features)}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        if phase == "pretrain" and args.pretrain_loss == "pixels":
            # The photos back from their own features, judged without the loss network's forward and
            # backward pass, most of a step (6x the steps per minute for the fast model here).
            output = without_margin(decoder(decoder_input, condition), args.margin, content_pixels)
            return {"pixel": F.mse_loss(output.float(), content_pixels)}
        losses, _ = compute_losses(
            encoder, decoder, decoder_input, target, content_pixels, style, identity, args.margin, condition
        )
    return losses | anchor


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [str(d) for d in (args.content_dir, args.style_dir) if not d.is_dir()]
    if missing:
        print(f"error: training folders not found: {', '.join(missing)}")
        return 2
    if not 0 <= args.identity_samples <= args.batch_size:
        print(f"error: --identity-samples must be between 0 and --batch-size ({args.batch_size})")
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
