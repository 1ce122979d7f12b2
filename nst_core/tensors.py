"""Pillow images <-> torch tensors (kept apart from ``images`` so decoding never imports torch)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB Pillow image -> float tensor (1, 3, H, W) in [0, 1]."""
    array = np.array(image.convert("RGB"), dtype=np.uint8, copy=True)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous().float().div_(255.0)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (1, 3, H, W) or (3, H, W) in [0, 1] -> RGB Pillow image (values clamped)."""
    image = tensor.detach().cpu().float()
    if image.dim() == 4:
        image = image[0]
    array = image.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")
