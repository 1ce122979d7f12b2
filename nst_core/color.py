"""Colour handling for "preserve colours": YCbCr conversion and colour-statistics matching.

All functions take and return float RGB tensors of shape (1, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import torch

# ITU-R BT.601 full range (JPEG's YCbCr), chroma centred on 0.
_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YCBCR.to(rgb), rgb)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YCBCR).to(ycbcr), ycbcr)


def luminance_as_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """A grey image carrying only the luminance, for luminance-only style transfer."""
    return rgb_to_ycbcr(rgb)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Grey style image whose luminance mean/std equal the content's (Gatys et al. 2016, sec. 3)."""
    y_style = rgb_to_ycbcr(style)[:, :1]
    y_content = rgb_to_ycbcr(content)[:, :1]
    matched = (y_style - y_style.mean()) / (y_style.std() + 1e-6) * y_content.std() + y_content.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_content_chroma(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Keep the luminance of ``stylized`` and the chroma (Cb, Cr) of ``content``."""
    luma = rgb_to_ycbcr(stylized)[:, :1]
    chroma = rgb_to_ycbcr(content)[:, 1:]
    return ycbcr_to_rgb(torch.cat([luma, chroma], dim=1)).clamp(0, 1)


def _sqrtm_psd(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vectors @ torch.diag(values**power) @ vectors.T


def match_color_statistics(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour ``source`` so its RGB mean and covariance equal ``target``'s.

    Uses the symmetric matrix square root (the "image analogies" variant), which keeps hues closer
    than a Cholesky factor does. Computed in float64: covariances of flat images are near-singular.
    """
    src = source.reshape(3, -1).double()
    tgt = target.reshape(3, -1).double()
    mu_src, mu_tgt = src.mean(1, keepdim=True), tgt.mean(1, keepdim=True)
    eye = torch.eye(3, dtype=torch.float64) * 1e-5
    cov_src = torch.cov(src) + eye
    cov_tgt = torch.cov(tgt) + eye
    transform = _sqrtm_psd(cov_tgt) @ _sqrtm_psd(cov_src, inverse=True)
    out = transform @ (src - mu_src) + mu_tgt
    return out.reshape(source.shape).to(source.dtype).clamp(0, 1)


def color_inputs(
    content: torch.Tensor, styles: list[torch.Tensor], method: str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """What the network should see for a preserve-colour ``method`` ("none", "luminance", "histogram")."""
    if method == "luminance":
        return luminance_as_rgb(content), [match_luminance(style, content) for style in styles]
    if method == "histogram":
        return content, [match_color_statistics(style, content) for style in styles]
    return content, styles


def color_output(output: torch.Tensor, content: torch.Tensor, method: str) -> torch.Tensor:
    """Finish a result: luminance-only transfer takes its chroma back from the content."""
    return with_content_chroma(output, content) if method == "luminance" else output
