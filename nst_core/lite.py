"""The fast model without torch, for the CLI: a whole ``nst stylize`` call in ONNX Runtime and numpy.

Why: importing torch costs 2.1 s and ~640 MiB of resident memory on our 2-core AVX2 machines, several
times what the fast model's render costs (~0.25 s at 512² on our AMD EPYCs); numpy and ONNX Runtime
cost ~0.15 s and ~50 MiB. Every CLI call pays the import, so the CLI renders the fast model here when
it can (a CPU, fast mode, no colour preservation) and hands everything else to the torch engine. The
arithmetic is the torch ``Stylizer``'s, step for step (``tests/test_lite.py`` holds them to the same
pixels): the content mirrored outwards, the student's relu4_1 and skip layers and the statistics of
the content and the styles (ONNX Runtime, graphs built from the weights file by
``nst_core.student_graphs``), AdaIN with the mixed style statistics at each, alpha and the decoder's
conditioning (numpy), the decoder (ONNX Runtime)."""

from __future__ import annotations

import functools
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
    FILM_GAIN,
    FILM_SCALE_RANGE,
    MARGIN_SMOOTHING,
    STUDENT_CONDITION,
    STUDENT_PATH_ENV,
    STUDENT_SKIP_LAYERS,
    STUDENT_WIDTH,
    can_mirror,
    conv_widths,
    decoder_plan,
    encoding_margins,
    picture_slices,
    student_path,
)
from nst_core.cpu import usable_cpu_cores
from nst_core.errors import ModelFileError
from nst_core.options import RenderOptions
from nst_core.student_graphs import (
    cell_strides,
    cells_of,
    decoder_graph,
    encoder_graph,
    range_of,
    statistics_of,
)

Features = dict[str, np.ndarray]  # as nst_core.adain.Features
Stats = tuple[np.ndarray, np.ndarray]  # a layer's channel means and stds, as nst_core.adain.StyleStats


class LiteStudent:
    """The fast model's encoder and decoder as ONNX Runtime sessions built from its safetensors file: the
    decoder, and an encoder for each set of outputs asked for (a content's maps, a style's statistics)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        skip_layers = skip_layers_in(tensors)
        self.layers = (ENCODER_LAYER, *skip_layers)
        condition = condition_in(tensors)
        self._condition = None if condition is None else _Condition(tensors, tuple(condition))
        self.stat_layers = tuple(dict.fromkeys((*self.layers, *(condition or ()))))
        self._tensors = tensors
        self._encoders: dict[tuple[tuple[str, ...], tuple[str, ...]], object] = {}
        self._decoder = runtime_session(decoder_graph(tensors, skip_layers, condition is not None))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> LiteStudent:
        tensors, target = read_student(path)
        try:
            return cls(tensors)
        except Exception as exc:
            raise not_a_student(target, exc) from exc

    def encode(self, image: np.ndarray, map_layers: Sequence[str], stat_layers: Sequence[str]) -> Features:
        """What ``nst_core.student_graphs.encoder_graph`` outputs for an RGB picture (3, H, W) in [0, 1],
        mirrored outwards first (as ``nst_core.adain``): the maps of ``map_layers`` with their margin,
        their ``range_of``, the ``statistics_of`` ``stat_layers`` over the picture; no batch axis."""
        key = (tuple(map_layers), tuple(stat_layers))
        if key not in self._encoders:  # ONNX Runtime computes every output of a graph at every run
            self._encoders[key] = runtime_session(encoder_graph(self._tensors, *key))
        session = self._encoders[key]
        height, width = image.shape[1:]
        bgr = _mirrored(image, BORDER_PAD)[::-1] * 255.0 - np.array(BGR_MEAN, dtype=np.float32)[:, None, None]
        feeds = {"picture": bgr[None]}
        for stride in cell_strides(stat_layers):
            rows, columns = picture_slices(BORDER_PAD, height, width, stride)
            starts, ends = cells_of(stride)
            feeds[starts] = np.array([rows.start, columns.start], dtype=np.int64)
            feeds[ends] = np.array([rows.stop, columns.stop], dtype=np.int64)
        outputs = [output.name for output in session.get_outputs()]
        return {name: value[0] for name, value in zip(outputs, session.run(outputs, feeds), strict=True)}

    def decode(self, features: Features, condition: dict[str, Stats] | None = None) -> np.ndarray:
        """The picture (3, H, W) of ``features``, which it consumes (the CLI's peak memory); ``condition``:
        the statistics it is to have, for a conditioned decoder."""
        feeds = {layer: features.pop(layer)[None] for layer in self.layers}
        if self._condition is not None:
            feeds |= self._condition.films(condition)
        return self._decoder.run(["picture"], feeds)[0][0]

    def stylize(
        self, content: Image.Image, styles: Sequence[Image.Image], weights: Sequence[float], alpha: float
    ) -> Image.Image:
        """``content`` in the mixed style of ``styles`` (weights summing to 1), at its own size."""
        own_stats_needed = self._condition is not None and alpha < 1.0  # for the conditioning's blend
        own_layers = self.stat_layers if own_stats_needed else self.layers
        encoded = self.encode(_to_array(content), self.layers, own_layers)
        own = {layer: tuple(encoded.pop(name) for name in statistics_of(layer)) for layer in own_layers}
        mixed = {layer: (np.float32(0.0), np.float32(0.0)) for layer in self.stat_layers}
        for style, weight in zip(styles, weights, strict=True):
            if weight > 0:  # sum_i w_i AdaIN(f, s_i) is AdaIN with the mixed statistics
                stats = self.encode(_to_array(style), (), self.stat_layers)
                for layer in self.stat_layers:
                    mean, std = (stats[name] for name in statistics_of(layer))
                    mixed[layer] = (mixed[layer][0] + weight * mean, mixed[layer][1] + weight * std)
        condition = None
        if self._condition is not None:  # blended with the content's own by alpha, as the features are
            condition = {layer: mixed[layer] for layer in self._condition.layers}
            if own_stats_needed:
                condition = {
                    layer: tuple(alpha * m + (1.0 - alpha) * o for m, o in zip(mix, own[layer], strict=True))
                    for layer, mix in condition.items()
                }
        targets = {}
        for layer in self.layers:  # each map is let go once its target is made: the CLI's peak memory
            confines = tuple(encoded.pop(name) for name in range_of(layer))
            targets[layer] = _adain_target(encoded.pop(layer), confines, own[layer], mixed[layer], alpha)
        output = self.decode(targets, condition)
        height, width = content.height, content.width
        output = output[:, BORDER_PAD : BORDER_PAD + height, BORDER_PAD : BORDER_PAD + width]
        return Image.fromarray(
            (np.clip(output.transpose(1, 2, 0), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        )


class _Condition:
    """``nst_core.decoder.StyleCondition`` in numpy: the style's statistics, standardised, through the
    MLP into each decoder convolution's scale and shift (the decoder graph's "film<i>" inputs)."""

    def __init__(self, tensors: Mapping[str, np.ndarray], layers: tuple[str, ...]) -> None:
        def weight(name: str) -> np.ndarray:
            return tensors[f"decoder.condition.{name}"].astype(np.float32)

        self.layers = layers
        self._center, self._spread = weight("center"), weight("spread")
        self._hidden = (weight("hidden.weight"), weight("hidden.bias"))
        self._film = (weight("film.weight"), weight("film.bias"))
        self._widths = conv_widths(decoder_plan(STUDENT_WIDTH))

    def films(self, stats: Mapping[str, Stats]) -> dict[str, np.ndarray]:
        described = np.concatenate([part.reshape(-1) for layer in self.layers for part in stats[layer]])
        standardised = (described - self._center) / self._spread
        hidden = np.maximum(self._hidden[0] @ standardised + self._hidden[1], 0.0)
        scales, shifts = np.split(FILM_GAIN * (self._film[0] @ hidden + self._film[1]), 2)
        scales = 1.0 + FILM_SCALE_RANGE * np.tanh(scales)
        feeds, start = {}, 0
        for index, width in enumerate(self._widths):
            part = slice(start, start + width)
            feeds[f"film{index}.scale"] = scales[part].reshape(1, width, 1, 1).astype(np.float32)
            feeds[f"film{index}.shift"] = shifts[part].reshape(1, width, 1, 1).astype(np.float32)
            start += width
        return feeds


def runtime_session(graph: bytes):  # -> onnxruntime.InferenceSession; imported here, where it is used
    """An ONNX Runtime session of ``graph`` on this process's cores, quiet unless it fails."""
    import onnxruntime

    _share_one_arena()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = usable_cpu_cores()
    options.log_severity_level = 3  # errors only
    # Threads that sleep between operators: spinning made a render 1.6x slower on our 2-core machines.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.enable_mem_pattern = False  # buffers planned per input shape: more memory held, no faster
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@functools.cache
def _share_one_arena() -> None:
    """One memory arena for the encoder's and the decoder's sessions (each kept its own: the CLI's
    peak was ~35 MiB higher); registered once per process."""
    import onnxruntime

    memory = onnxruntime.OrtMemoryInfo(
        "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
    )
    onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(0, -1, -1, -1))


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


def condition_in(tensors: Mapping[str, object]) -> dict[str, int] | None:
    """The layers (and channels) whose statistics condition a student file's decoder (none in files
    from before the conditioning)."""
    return STUDENT_CONDITION if "decoder.condition.film.weight" in tensors else None


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
    features: np.ndarray, confines: tuple[np.ndarray, np.ndarray], own: Stats, style: Stats, alpha: float
) -> np.ndarray:
    """As ``nst_core.adain``: ``features`` confined to the range of the picture's cells (``confines``:
    their channel minima and maxima), given the style's statistics in place of the picture's ``own``,
    then blended by ``alpha``."""
    confined = np.clip(features, *confines)
    target = confined - own[0]
    target /= own[1]
    target *= style[1]
    target += style[0]
    if alpha < 1.0:
        target = alpha * target + (1.0 - alpha) * confined
    return target.astype(np.float32, copy=False)
