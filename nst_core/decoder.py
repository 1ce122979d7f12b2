"""The AdaIN decoder: VGG-19 up to relu4_1, mirrored, and how its weights are found and stored."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nst_core.errors import ModelFileError

DECODER_PATH_ENV = "NST_DECODER_PATH"
DEFAULT_DECODER_PATH = Path(__file__).resolve().parent.parent / "weights" / "decoder.safetensors"

# Raw Caffe VGG activations at relu4_1 are large (their mean std over natural images and artworks
# is ~600, see weights/README.md); dividing by it keeps the decoder's first layer in the range
# PyTorch's default init and Adam's step size expect, so training starts well-conditioned.
FEATURE_SCALE = 600.0


def _conv(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, kernel_size=3)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class Decoder(nn.Module):
    """Maps relu4_1 features back to an RGB image in [0, 1] (8x the feature map's size).

    Nearest upsampling plus reflection-padded 3x3 convs and no normalization layers, as in
    Huang & Belongie: normalization would wash out the statistics AdaIN just installed.
    """

    def __init__(self) -> None:
        super().__init__()
        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.net = nn.Sequential(
            *_conv(512, 256), up,
            *_conv(256, 256), *_conv(256, 256), *_conv(256, 256), *_conv(256, 128), up,
            *_conv(128, 128), *_conv(128, 64), up,
            *_conv(64, 64), *_conv(64, 3, relu=False),
        )  # fmt: skip

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features / FEATURE_SCALE)


def decoder_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The decoder file to use: explicit path, else ``$NST_DECODER_PATH``, else ``weights/``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(DECODER_PATH_ENV) or DEFAULT_DECODER_PATH)


def load_decoder(path: str | os.PathLike[str] | None = None) -> tuple[Decoder, bool]:
    """Return ``(decoder, trained)``.

    With no trained file installed the decoder is randomly initialized (seeded, so results are
    reproducible) and ``trained`` is False so callers can say so. An explicit path that does not
    exist is an error: the user asked for that file.
    """
    target = decoder_path(path)
    decoder = Decoder()
    if not target.is_file():
        if path is not None:
            raise ModelFileError(f"decoder weights file not found: {target}")
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        decoder = Decoder()
        torch.random.set_rng_state(generator_state)
        return decoder.eval(), False
    try:
        state = {key: value.float() for key, value in load_file(str(target)).items()}
        decoder.load_state_dict(state)
    except Exception as exc:
        raise ModelFileError(f"decoder weights file {target} is not a valid Atelier decoder: {exc}") from exc
    return decoder.eval(), True


def save_decoder(decoder: Decoder, path: str | os.PathLike[str], half: bool = True) -> None:
    """Write the decoder as safetensors (fp16 by default: half the size, no visible difference)."""
    dtype = torch.float16 if half else torch.float32
    state = {key: value.detach().to("cpu", dtype).contiguous() for key, value in decoder.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "atelier-adain-decoder-v1"})
