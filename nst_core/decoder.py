"""The AdaIN decoder: VGG-19 up to relu4_1, mirrored, and how its weights are found and stored."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from nst_core.architecture import ENCODER_LAYER, FEATURE_SCALE, LAYER_SCALE, decoder_plan, skip_inputs_in
from nst_core.errors import ModelFileError

DECODER_PATH_ENV = "NST_DECODER_PATH"
DEFAULT_DECODER_PATH = Path(__file__).resolve().parent.parent / "weights" / "decoder.safetensors"


def _conv(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, kernel_size=3)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class Decoder(nn.Module):
    """Maps relu4_1 features back to an RGB image in [0, 1] (8x the feature map's size).

    Nearest upsampling plus reflection-padded 3x3 convs and no normalization layers, as in
    Huang & Belongie: normalization would wash out the statistics AdaIN just installed. ``width`` is
    the encoder's relu4_1 channel count (512 for VGG-19, fewer for the fast model's student); every
    layer narrows with it. ``skip_layers``: shallower encoder layers it also reads (the fast model's,
    ``STUDENT_SKIP_LAYERS``), each added through a 1x1 convolution right after the upsampling that
    reaches its resolution; they start at zero, so a decoder trained without them is unchanged.
    """

    def __init__(self, width: int = 512, skip_layers: Sequence[str] = ()) -> None:
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
        self.net = nn.Sequential(*layers)
        self.skips = nn.ModuleDict()
        for layer, (_, width_there) in joins.items():  # as wide as the decoder there: VGG's proportions
            self.skips[layer] = nn.Conv2d(width_there, width_there, kernel_size=1)
            nn.init.zeros_(self.skips[layer].weight)
            nn.init.zeros_(self.skips[layer].bias)
        self._added_after = {net_index[index]: layer for layer, (index, _) in joins.items()}

    def forward(self, features: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``features``: relu4_1, or a mapping of relu4_1 and every one of ``skip_layers``."""
        if not isinstance(features, Mapping):
            return self.net(features / FEATURE_SCALE)
        x = features[ENCODER_LAYER] / FEATURE_SCALE
        for index, module in enumerate(self.net):
            x = module(x)
            if layer := self._added_after.get(index):
                x = x + self.skips[layer](features[layer] / LAYER_SCALE[layer])
        return x


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
