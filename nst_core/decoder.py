"""The AdaIN decoder: VGG-19 up to relu4_1, mirrored, and how its weights are found and stored."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from nst_core.architecture import (
    CONDITION_HIDDEN,
    ENCODER_LAYER,
    FEATURE_SCALE,
    FILM_GAIN,
    FILM_SCALE_RANGE,
    LAYER_SCALE,
    Window,
    conv_reach,
    conv_widths,
    decoder_plan,
    decoder_windows,
    edge_padding,
    skip_inputs_in,
    upsampling_reach,
    whole,
)
from nst_core.errors import ModelFileError

DECODER_PATH_ENV = "NST_DECODER_PATH"
DEFAULT_DECODER_PATH = Path(__file__).resolve().parent.parent / "weights" / "decoder.safetensors"


def _conv(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, kernel_size=3)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class Stats(Protocol):
    """A layer's channel statistics (``nst_core.adain.StyleStats``), each of shape (N, C, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor


class StyleCondition(nn.Module):
    """A style's channel statistics at ``channels``' layers, read by a small MLP into a per-channel
    scale and shift of each decoder convolution (FiLM, Perez et al. 2018).

    Why: the decoder's convolutions see the style only through its AdaIN'd features, a cell at a
    time, and a linear reading of the quarter-width student's statistics predicts VGG-19's deep channel
    means poorly (the fast model's card); an MLP over all of them is global and non-linear. Its
    statistics are linear in the style's, so ``/mix`` and alpha blend them as they blend AdaIN's. The
    last layer starts at zero: scale 1, shift 0, the decoder it joins unchanged.
    """

    def __init__(self, channels: Mapping[str, int], film_channels: Sequence[int]) -> None:
        super().__init__()
        self.layers = tuple(channels)
        self.film_channels = tuple(film_channels)
        size = 2 * sum(channels.values())
        # Each statistic standardised over training pictures (``calibrate``): raw ones span 1-500.
        self.register_buffer("center", torch.zeros(size))
        self.register_buffer("spread", torch.ones(size))
        self.hidden = nn.Linear(size, CONDITION_HIDDEN)
        self.film = nn.Linear(CONDITION_HIDDEN, 2 * sum(self.film_channels))
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def _parts(self, stats: Mapping[str, Stats]) -> list[torch.Tensor]:
        """Each layer's means, then its stds, as (N, C) tensors."""
        return [part.flatten(1) for layer in self.layers for part in (stats[layer].mean, stats[layer].std)]

    def describe(self, stats: Mapping[str, Stats]) -> torch.Tensor:
        """(N, size): every layer's means, then its stds."""
        return torch.cat(self._parts(stats), dim=1)

    @torch.no_grad()
    def calibrate(self, stats: Mapping[str, Stats]) -> None:
        """Centre each statistic on these pictures' average and scale each layer's means (and stds) by
        their spread about it, one number per group and at least a tenth of their typical size: per
        channel, or for pictures all alike, a statistic that barely varies would be blown up. Only
        while the MLP has learned nothing."""
        if self.film.weight.any():
            raise RuntimeError("the conditioning has been trained: calibrating would change its input")
        parts = [part.float() for part in self._parts(stats)]
        self.center.copy_(torch.cat([part.mean(dim=0) for part in parts]))
        spreads = [
            torch.maximum((part - part.mean(dim=0)).square().mean(), 0.01 * part.square().mean()).sqrt()
            for part in parts
        ]
        widths = [part.shape[1] for part in parts]
        self.spread.copy_(torch.cat([spread.expand(w) for spread, w in zip(spreads, widths, strict=True)]))

    def forward(self, stats: Mapping[str, Stats]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(scale, shift), each (N, C, 1, 1), for each decoder convolution in order."""
        hidden = torch.relu(self.hidden((self.describe(stats) - self.center) / self.spread))
        scales, shifts = (FILM_GAIN * self.film(hidden)).chunk(2, dim=1)
        return [
            (1.0 + FILM_SCALE_RANGE * torch.tanh(scale[..., None, None]), shift[..., None, None])
            for scale, shift in zip(
                scales.split(self.film_channels, dim=1), shifts.split(self.film_channels, dim=1), strict=True
            )
        ]


class Decoder(nn.Module):
    """Maps relu4_1 features back to an RGB image in [0, 1] (8x the feature map's size).

    Nearest upsampling plus reflection-padded 3x3 convs and no normalization layers, as in
    Huang & Belongie: normalization would wash out the statistics AdaIN just installed. ``width`` is
    the encoder's relu4_1 channel count (512 for VGG-19, fewer for the fast model's student); every
    layer narrows with it. ``skip_layers``: shallower encoder layers it also reads (the fast model's,
    ``STUDENT_SKIP_LAYERS``), each added through a 1x1 convolution right after the upsampling that
    reaches its resolution; they start at zero, so a decoder trained without them is unchanged.
    ``condition``: channel counts of the layers whose statistics condition every convolution
    (``StyleCondition``; the fast model's ``STUDENT_CONDITION``), none by default.
    """

    def __init__(
        self, width: int = 512, skip_layers: Sequence[str] = (), condition: Mapping[str, int] | None = None
    ) -> None:
        super().__init__()
        plan = decoder_plan(width)
        self.skip_layers = tuple(skip_layers)
        joins = skip_inputs_in(plan, self.skip_layers)
        layers: list[nn.Module] = []
        net_index = {}  # the plan's upsamplings among the net's modules
        for index, step in enumerate(plan):
            if step is None:
                net_index[index] = len(layers)
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                layers += _conv(*step)
        self.width = width
        self.plan = plan
        self.net = nn.Sequential(*layers)
        self.skips = nn.ModuleDict()
        for layer, (_, width_there) in joins.items():  # as wide as the decoder there: VGG's proportions
            self.skips[layer] = nn.Conv2d(width_there, width_there, kernel_size=1)
            nn.init.zeros_(self.skips[layer].weight)
            nn.init.zeros_(self.skips[layer].bias)
        self._added_after = {net_index[index]: layer for layer, (index, _) in joins.items()}
        self.condition = StyleCondition(condition, conv_widths(plan)) if condition else None

    @property
    def condition_layers(self) -> tuple[str, ...]:
        """The layers whose statistics ``forward`` needs as ``style`` (none unconditioned)."""
        return () if self.condition is None else self.condition.layers

    def forward(
        self,
        features: torch.Tensor | Mapping[str, torch.Tensor],
        style: Mapping[str, Stats] | None = None,
        picture: tuple[slice, slice] | None = None,
    ) -> torch.Tensor:
        """``features``: relu4_1, or a mapping of it and of every one of ``skip_layers``; ``style``: the
        statistics at ``condition_layers`` the picture is to have (a conditioned decoder only);
        ``picture``: the rows and columns of the output wanted (default: all of it). Only what they
        depend on is computed, exactly as the whole would have it: a mirrored margin that is cut off
        afterwards costs its encoding, not its decoding too."""
        if not isinstance(features, Mapping):
            features = {ENCODER_LAYER: features}
        if (self.condition is None) != (style is None):
            raise ValueError("a conditioned decoder needs the style's statistics, and only it takes them")
        films = iter(self.condition(style)) if self.condition is not None else None
        x = features[ENCODER_LAYER] / FEATURE_SCALE
        size = tuple(x.shape[-2:])
        windows = iter(decoder_windows(self.plan, size, picture))
        held = whole(size)  # the rows and columns of the current map that x holds
        for index, module in enumerate(self.net):
            if isinstance(module, nn.ReflectionPad2d):  # with the convolution after it: its window
                wanted = next(windows)
                x = F.pad(
                    _cropped(x, held, conv_reach(wanted, size)), edge_padding(wanted, size), mode="reflect"
                )
                held = wanted
            elif isinstance(module, nn.Upsample):
                below = upsampling_reach(next(windows))
                x, held = module(_cropped(x, held, below)), tuple((2 * lo, 2 * hi) for lo, hi in below)
                size = tuple(2 * n for n in size)
            elif films is not None and isinstance(module, nn.Conv2d):
                x = _conditioned_conv(module, x, *next(films))
            else:
                x = module(x)
            if layer := self._added_after.get(index):
                skip = _cropped(features[layer], whole(size), held)
                x = x + self.skips[layer](skip / LAYER_SCALE[layer])
        return x


def _cropped(x: torch.Tensor, held: Window, wanted: Window) -> torch.Tensor:
    """The ``wanted`` rows and columns of a map of which ``x`` holds ``held``."""
    (rows_held, _), (columns_held, _) = held
    (top, bottom), (left, right) = wanted
    return x[..., top - rows_held : bottom - rows_held, left - columns_held : right - columns_held]


def _conditioned_conv(
    conv: nn.Conv2d, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """conv(x) * scale + shift. In training, for the whole batch at once; at inference folded into the
    convolution's weights and bias picture by picture, which spares two passes over each
    full-resolution map and paints a picture alike whether it comes alone or in a batch."""
    if torch.is_grad_enabled():
        return conv(x) * scale + shift
    return torch.cat(
        [
            F.conv2d(
                part,
                conv.weight * factor.reshape(-1, 1, 1, 1),
                conv.bias * factor.flatten() + offset.flatten(),
            )
            for part, factor, offset in zip(x.split(1), scale, shift, strict=True)
        ]
    )


def decoder_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The decoder file to use: explicit path, else ``$NST_DECODER_PATH``, else ``weights/``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(DECODER_PATH_ENV) or DEFAULT_DECODER_PATH)


def seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under seed 0 (reproducible untrained weights), leaving the global RNG as it was."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        return build()
    finally:
        torch.random.set_rng_state(generator_state)


def load_decoder(path: str | os.PathLike[str] | None = None) -> tuple[Decoder, bool]:
    """Return ``(decoder, trained)``.

    With no trained file installed the decoder is randomly initialized (seeded, so results are
    reproducible) and ``trained`` is False so callers can say so. An explicit path that does not
    exist is an error: the user asked for that file.
    """
    target = decoder_path(path)
    if not target.is_file():
        if path is not None:
            raise ModelFileError(f"decoder weights file not found: {target}")
        return seeded(Decoder).eval(), False
    decoder = Decoder()
    try:
        state = {key: value.float() for key, value in load_file(str(target)).items()}
        decoder.load_state_dict(state)
    except Exception as exc:
        raise ModelFileError(f"decoder weights file {target} is not a valid Atelier decoder: {exc}") from exc
    return decoder.eval(), True


def save_module(
    state: dict[str, torch.Tensor], path: str | os.PathLike[str], format_name: str, step: int | None = None
) -> None:
    """Write weights as fp16 safetensors (half the size, no visible difference).

    ``step``, the training step they come from, lets training go on from the file alone
    (``nst train --init``) when its checkpoint is lost with the machine that held it.
    """
    half = {key: value.detach().to("cpu", torch.float16).contiguous() for key, value in state.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": format_name} | ({} if step is None else {"step": str(step)})
    save_file(half, str(path), metadata=metadata)


def saved_step(path: str | os.PathLike[str]) -> int:
    """The training step recorded in a weights file by ``save_module``."""
    with safe_open(str(path), framework="pt") as weights:
        step = (weights.metadata() or {}).get("step")
    if step is None:
        raise ModelFileError(f"weights file {path} records no training step to continue from")
    return int(step)


def save_decoder(decoder: Decoder, path: str | os.PathLike[str], step: int | None = None) -> None:
    save_module(decoder.state_dict(), path, "atelier-adain-decoder-v1", step)
