"""Every loss of the project, for training, evaluation and HQ mode, each name with one meaning.

Two objectives live here:

- **Decoder training (AdaIN, Huang & Belongie 2017, sec. 6)**: L = L_c + λ·L_s. ``adain_content_loss``
  compares relu4_1 of the output with the AdaIN target t; ``adain_style_loss`` matches channel means
  and stds at ``ADAIN_STYLE_LAYERS``. Our VGG is the raw Caffe VGG-19, whose activations grow with
  depth (mean relu1_1 ≈ 21, relu2_1 ≈ 120, relu3_1 ≈ 120, relu4_1 ≈ 480 on our data), unlike the
  "normalised" VGG the authors used. So features are divided by ``LAYER_SCALE`` before these losses:
  the four style layers get equal say, as in the paper, and λ = 10 keeps the paper's meaning. Without
  it relu4_1 would outweigh relu1_1 ~500-fold and the decoder would ignore fine brush texture.
- **HQ mode (Gatys, Ecker & Bethge 2016)**: ``gatys_content_loss`` at ``GATYS_CONTENT_LAYER`` and
  ``gram_loss`` between Gram matrices at ``GATYS_STYLE_LAYERS`` (weighted in ``nst_core.gatys``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nst_core.adain import StyleStats, adain, feature_stats
from nst_core.architecture import ENCODER_LAYER, LAYER_SCALE

ADAIN_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
GATYS_CONTENT_LAYER = "relu4_2"
GATYS_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# ----------------------------------------------------------------------------- AdaIN decoder
def normalized_stats(features: dict[str, torch.Tensor]) -> dict[str, StyleStats]:
    """Channel mean/std of each AdaIN style layer, on the ``LAYER_SCALE``-normalised scale."""
    return {
        layer: feature_stats(features[layer].float() / LAYER_SCALE[layer]) for layer in ADAIN_STYLE_LAYERS
    }


def adain_target(
    content_features: torch.Tensor, style: dict[str, StyleStats], content: StyleStats | None = None
) -> torch.Tensor:
    """AdaIN target t from normalised style stats (scaled back to relu4_1's own range); ``content``:
    the features' own statistics where only part of the map is the picture (``adain.adain``)."""
    scale = LAYER_SCALE[ENCODER_LAYER]
    stats = style[ENCODER_LAYER]
    return adain(content_features, StyleStats(stats.mean * scale, stats.std * scale), content)


def adain_content_loss(output_features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_c: relu4_1 of the output against the AdaIN target, both on the normalised scale."""
    scale = LAYER_SCALE[ENCODER_LAYER]
    return F.mse_loss(output_features / scale, target / scale)


def adain_style_loss(output_features: dict[str, torch.Tensor], style: dict[str, StyleStats]) -> torch.Tensor:
    """L_s: channel means and stds of output and style at relu1_1…relu4_1, each layer normalised."""
    output = normalized_stats(output_features)
    return sum(
        F.mse_loss(output[layer].mean, style[layer].mean) + F.mse_loss(output[layer].std, style[layer].std)
        for layer in ADAIN_STYLE_LAYERS
    )  # type: ignore[return-value]


# ----------------------------------------------------------------------------- Gatys
def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ / M for features (1, N, H, W), M = H·W: independent of image size."""
    _, channels, height, width = features.shape
    flat = features.reshape(channels, height * width)
    return flat @ flat.T / (height * width)


def gram_loss(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """E_l = Σ (G − A)² / (4 N²) with size-normalized Grams, as in the paper's eq. 4."""
    channels = gram.shape[0]
    return (gram - target).pow(2).sum() / (4 * channels**2)


def gatys_content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(features, target)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    return (image[..., 1:, :] - image[..., :-1, :]).abs().mean() + (
        image[..., :, 1:] - image[..., :, :-1]
    ).abs().mean()
