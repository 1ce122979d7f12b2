"""The fast model in numpy alone, for the CLI: a whole ``nst stylize`` call without importing torch.

Why: importing torch costs 2.1 s and ~640 MiB of resident memory on our 2-core AVX2 machines, several
times what the fast model's render costs (~0.4 s at 512²); numpy costs 0.1 s and ~30 MiB. Every CLI
call pays the import, so the CLI renders the fast model here when it can (a CPU, fast mode, no colour
preservation) and hands everything else to the torch engine. The arithmetic is the torch
``Stylizer``'s, step for step (``tests/test_lite.py`` holds them to the same pixels): the content
mirrored outwards, the student's relu4_1 and skip layers, AdaIN with the mixed style statistics at
each, alpha, the decoder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from nst_core.architecture import (
    BGR_MEAN,
    BORDER_PAD,
    ENCODER_LAYER,
    FEATURE_SCALE,
    LAYER_SCALE,
    MARGIN_SMOOTHING,
    POOL_AFTER,
    STUDENT_LAYERS,
    STUDENT_PATH_ENV,
    STUDENT_SKIP_LAYERS,
    STUDENT_WIDTH,
    can_mirror,
    decoder_plan,
    encoding_margins,
    layer_stride,
    picture_slices,
    skip_inputs_in,
    student_path,
)
from nst_core.errors import ModelFileError
from nst_core.options import RenderOptions

EPS = 1e-5  # as nst_core.adain.feature_stats

Conv = tuple[np.ndarray, np.ndarray]  # weight (out, k²·in), taps (dy, dx) outermost; bias (out, 1)
Features = dict[str, np.ndarray]  # as nst_core.adain.Features


STRIPE_ROWS = 16  # output rows per matrix product: the stacked taps of a stripe stay in cache


def conv3x3(x: np.ndarray, conv: Conv, pad: str) -> np.ndarray:
    """3x3 convolution of a (C, H, W) picture with a 1-pixel ``pad`` ("constant": VGG's zeros,
    "reflect": the decoder's), as one matrix product per stripe of ``STRIPE_ROWS`` output rows.

    Flattened, the padded picture's rows are W+2 long, so each tap's input for every output pixel of a
    stripe is one contiguous run of each channel, shifted by dy·(W+2)+dx. The nine runs are stacked
    into a (9·C, pixels) matrix, so BLAS multiplies with K = 9·C instead of nine thin products of K = C
    (2x faster for the 16-channel layers at full resolution; stacking the whole picture at once cost
    130 MB at 512 px, a stripe ~5 MB). The two extra columns computed per row are dropped at the end
    (one spare padded row keeps the last run inside the array).
    """
    matrix, bias = conv
    channels, height, width = x.shape
    row = width + 2
    flat = np.pad(x, ((0, 0), (1, 2), (1, 1)), mode=pad).reshape(channels, -1)
    starts = [dy * row + dx for dy in range(3) for dx in range(3)]
    out = np.empty((matrix.shape[0], height * row), dtype=np.float32)
    stacked = np.empty((9, channels, STRIPE_ROWS * row), dtype=np.float32)
    for first in range(0, height * row, STRIPE_ROWS * row):
        size = min(STRIPE_ROWS * row, height * row - first)
        for tap, start in enumerate(starts):
            stacked[tap, :, :size] = flat[:, first + start : first + start + size]
        np.matmul(matrix, stacked.reshape(9 * channels, -1)[:, :size], out=out[:, first : first + size])
    out += bias
    return out.reshape(-1, height, row)[:, :, :width]


def max_pool2x2(x: np.ndarray) -> np.ndarray:
    """2x2 max pooling, stride 2; an odd last row or column is dropped, as in torch. Four strided
    views and three maxima: a reduction over reshaped axes was 10x slower."""
    height, width = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    top = np.maximum(x[:, 0:height:2, 0:width:2], x[:, 0:height:2, 1:width:2])
    bottom = np.maximum(x[:, 1:height:2, 0:width:2], x[:, 1:height:2, 1:width:2])
    return np.maximum(top, bottom, out=top)


class LiteStudent:
    """The fast model's encoder and decoder as float32 arrays, loaded from its safetensors file."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        def conv(prefix: str) -> Conv:
            weight = tensors[f"{prefix}.weight"].astype(np.float32)  # (out, in, k, k)
            matrix = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
            return np.ascontiguousarray(matrix), tensors[f"{prefix}.bias"].astype(np.float32)[:, None]

        self.encoder = [(name, conv(f"encoder.{name}")) for name in STUDENT_LAYERS]
        self.skips = {layer: conv(f"decoder.skips.{layer}") for layer in skip_layers_in(tensors)}
        self.layers = (ENCODER_LAYER, *self.skips)
        decoder_keys = sorted(
            int(key.split(".")[2])
            for key in tensors
            if key.startswith("decoder.net.") and key.endswith(".weight")
        )  # decoder.net.<index>.weight, in forward order
        convs = iter(conv(f"decoder.net.{index}") for index in decoder_keys)
        plan = decoder_plan(STUDENT_WIDTH)
        self.decoder = [None if step is None else (next(convs), step[2]) for step in plan]
        self._added_after = {
            index: layer for layer, (index, _) in skip_inputs_in(plan, tuple(self.skips)).items()
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> LiteStudent:
        tensors, target = read_student(path)
        try:
            return cls(tensors)
        except Exception as exc:
            raise not_a_student(target, exc) from exc

    def encode(self, rgb: np.ndarray) -> Features:
        """relu4_1 (C, H/8, W/8) and the decoder's skip layers of an RGB picture (3, H, W) in [0, 1]."""
        x = rgb[::-1] * 255.0 - np.array(BGR_MEAN, dtype=np.float32)[:, None, None]
        features = {}
        for name, conv in self.encoder:
            x = np.maximum(conv3x3(x, conv, "constant"), 0.0)
            if name in self.layers:
                features[name] = x
            if name in POOL_AFTER:
                x = max_pool2x2(x)
        return features

    def encode_with_margin(self, image: np.ndarray) -> tuple[Features, Features]:
        """``encode`` of ``image`` mirrored outwards (as ``nst_core.adain``), and the cells of the picture."""
        features = self.encode(_mirrored(image, BORDER_PAD))
        height, width = image.shape[1:]
        return features, {
            layer: value[(slice(None), *picture_slices(BORDER_PAD, height, width, layer_stride(layer)))]
            for layer, value in features.items()
        }

    def decode(self, features: Features) -> np.ndarray:
        """The picture of ``features``, which it consumes: each map is let go once added in."""
        x = features.pop(ENCODER_LAYER) / FEATURE_SCALE
        for index, step in enumerate(self.decoder):
            if step is None:
                x = x.repeat(2, axis=1).repeat(2, axis=2)
                if layer := self._added_after.get(index):  # a 1x1 convolution, added
                    matrix, bias = self.skips[layer]
                    skip = features.pop(layer)
                    skip /= LAYER_SCALE[layer]
                    x += (matrix @ skip.reshape(skip.shape[0], -1)).reshape(x.shape)
                    x += bias[:, :, None]
                continue
            conv, relu = step
            x = conv3x3(x, conv, "reflect")
            if relu:
                x = np.maximum(x, 0.0)
        return x

    def stylize(
        self, content: Image.Image, styles: Sequence[Image.Image], weights: Sequence[float], alpha: float
    ) -> Image.Image:
        """``content`` in the mixed style of ``styles`` (weights summing to 1), at its own size."""
        features, pictures = self.encode_with_margin(_to_array(content))
        mixed = {layer: (np.float32(0.0), np.float32(0.0)) for layer in self.layers}
        for style, weight in zip(styles, weights, strict=True):
            if weight > 0:  # sum_i w_i AdaIN(f, s_i) is AdaIN with the mixed statistics
                for layer, cells in self.encode_with_margin(_to_array(style))[1].items():
                    mean, std = _stats(cells)
                    mixed[layer] = (mixed[layer][0] + weight * mean, mixed[layer][1] + weight * std)
        targets = {}
        for layer in self.layers:  # each map is let go once its target is made: the CLI's peak memory
            targets[layer] = _adain_target(features.pop(layer), pictures.pop(layer), *mixed[layer], alpha)
        output = self.decode(targets)
        height, width = content.height, content.width
        output = output[:, BORDER_PAD : BORDER_PAD + height, BORDER_PAD : BORDER_PAD + width]
        return Image.fromarray(
            (np.clip(output.transpose(1, 2, 0), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        )


def accelerator_present() -> bool:
    """An NVIDIA or AMD GPU's device files, or Apple silicon (MPS): where torch may run faster."""
    import platform

    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True
    return any(Path(path).exists() for path in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd"))


def serves_without_torch(options: RenderOptions, device: str) -> bool:
    """Whether this module can render ``options``: fast mode on a CPU, with no colour preservation."""
    on_cpu = device == "cpu" or (device == "auto" and not accelerator_present())
    return (
        on_cpu and not options.hq and options.preserve_color == "none" and options.model in ("auto", "fast")
    )


def read_student(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, np.ndarray], Path]:
    """The fast model's tensors (fp16 as stored) and the file they came from; clear errors else."""
    from safetensors.numpy import load_file

    target = student_path(path)
    if not target.is_file():
        raise ModelFileError(
            f"fast model weights file not found: {target}. Train it (make train-fast), point "
            f"{STUDENT_PATH_ENV} at it, or use the full model."
        )
    try:
        return load_file(str(target)), target
    except Exception as exc:
        raise not_a_student(target, exc) from exc


def skip_layers_in(tensors: Mapping[str, object]) -> tuple[str, ...]:
    """The skip inputs a student file's decoder has (none in files from before them)."""
    return tuple(layer for layer in STUDENT_SKIP_LAYERS if f"decoder.skips.{layer}.weight" in tensors)


def not_a_student(target: Path, exc: Exception) -> ModelFileError:
    return ModelFileError(f"fast model weights file {target} is not a valid Atelier student: {exc}")


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


def _mirrored(image: np.ndarray, border: int) -> np.ndarray:
    """As ``nst_core.adain.padded_for_encoding``: the smooth part point-mirrored, the texture plainly."""
    height, width = image.shape[1:]
    left, right, top, bottom = margins = encoding_margins(height, width, border)
    widths = ((0, 0), (top, bottom), (left, right))
    if not can_mirror(height, width, margins):
        return np.pad(image, widths, mode="edge")
    smooth = _smooth_part(image, max(margins) + 1)
    point_mirrored = 2 * np.pad(smooth, widths, mode="edge") - np.pad(smooth, widths, mode="reflect")
    padded = np.clip(np.pad(image - smooth, widths, mode="reflect") + point_mirrored, 0.0, 1.0)
    padded[:, top : top + height, left : left + width] = image
    return padded


def _smooth_part(image: np.ndarray, band: int) -> np.ndarray:
    """As ``nst_core.adain._smooth_part``: blurred within ``band`` px of the edges."""
    height, width = image.shape[1:]
    reach = band + math.ceil(3 * MARGIN_SMOOTHING)
    if min(height, width) <= 2 * reach:
        return _blurred(image)
    smooth = np.zeros_like(image)
    smooth[:, :band, :] = _blurred(image[:, :reach, :])[:, :band, :]
    smooth[:, -band:, :] = _blurred(image[:, -reach:, :])[:, -band:, :]
    smooth[:, :, :band] = _blurred(image[:, :, :reach])[:, :, :band]
    smooth[:, :, -band:] = _blurred(image[:, :, -reach:])[:, :, -band:]
    return smooth


def _blurred(image: np.ndarray) -> np.ndarray:
    """As ``nst_core.adain._blurred``: a Gaussian blur exact for gradients up to the edges."""
    radius = min(math.ceil(3 * MARGIN_SMOOTHING), min(image.shape[1:]) - 1)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    taps = np.exp(-(offsets**2) / (2 * MARGIN_SMOOTHING**2))
    taps /= taps.sum()
    widths = ((0, 0), (radius, radius), (radius, radius))
    extended = 2 * np.pad(image, widths, mode="edge") - np.pad(image, widths, mode="reflect")
    height, width = image.shape[1:]
    rows = sum(tap * extended[:, :, i : i + width] for i, tap in enumerate(taps))
    return sum(tap * rows[:, i : i + height, :] for i, tap in enumerate(taps))


def _adain_target(
    features: np.ndarray, picture: np.ndarray, style_mean: np.ndarray, style_std: np.ndarray, alpha: float
) -> np.ndarray:
    """As ``nst_core.adain``: ``features`` confined to the range of their ``picture`` cells, given the
    style's statistics in place of the picture's own, then blended by ``alpha``."""
    low, high = picture.min(axis=(1, 2), keepdims=True), picture.max(axis=(1, 2), keepdims=True)
    mean, std = _stats(picture)
    confined = np.clip(features, low, high)
    target = confined - mean
    target /= std
    target *= style_std
    target += style_mean
    if alpha < 1.0:
        target = alpha * target + (1.0 - alpha) * confined
    return target.astype(np.float32, copy=False)


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel means and stds over the picture, as ``nst_core.adain.feature_stats``."""
    mean = features.mean(axis=(1, 2), keepdims=True)
    return mean, np.sqrt(features.var(axis=(1, 2), keepdims=True) + EPS)
