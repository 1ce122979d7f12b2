"""The border frame: its metric sees a painted frame and not a photo's own edges, and mirroring the
content around itself before encoding keeps the output exactly the input's size."""

from __future__ import annotations

import pytest
import torch

from nst_core.adain import _padded_for_encoding
from nst_core.architecture import BORDER_PAD, DOWNSAMPLING
from nst_core.evaluate import BAND, border_step


def smooth_picture(height: int = 64, width: int = 80) -> torch.Tensor:
    """A photo-like picture: gentle gradients, no edge of its own at the border."""
    y = torch.linspace(0, 1, height).view(1, 1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, 1, width)
    return torch.cat(
        [0.2 + 0.5 * x * torch.ones_like(y), 0.3 + 0.4 * y * torch.ones_like(x), 0.5 * (x + y) / 2 + 0.2], 1
    )


def test_a_frame_stands_out_and_a_smooth_picture_does_not():
    photo = smooth_picture()
    framed = photo.clone()
    framed[..., :, -BAND:] = torch.tensor([0.9, 0.1, 0.2]).view(1, 3, 1, 1)  # a red stripe on the right
    assert border_step(photo) < 9  # the goal for results; photos measure ~7
    assert border_step(framed) > 60
    assert border_step(framed) == pytest.approx(border_step(framed.flip(-1)))  # any edge counts the same


@pytest.mark.parametrize("size", [(64, 80), (37, 51), (9, 5), (1, 1)])
def test_the_mirrored_margin_surrounds_the_picture_untouched(size):
    picture = torch.rand(1, 3, *size)
    padded = _padded_for_encoding(picture, BORDER_PAD)
    assert all(side % DOWNSAMPLING == 0 for side in padded.shape[-2:])
    assert torch.equal(
        padded[..., BORDER_PAD : BORDER_PAD + size[0], BORDER_PAD : BORDER_PAD + size[1]], picture
    )
    if min(size) > BORDER_PAD:  # mirrored: the first row outside is the second row inside
        assert torch.equal(padded[..., BORDER_PAD - 1, :], padded[..., BORDER_PAD + 1, :])


@pytest.mark.parametrize("border_pad", [0, BORDER_PAD])
@pytest.mark.parametrize("size", [(48, 64), (37, 51), (9, 13)])
def test_the_output_keeps_the_content_size_with_or_without_the_margin(stylizer, style, border_pad, size):
    stylizer.border_pad = border_pad
    try:
        output = stylizer.stylize(torch.rand(1, 3, *size), [style])
    finally:
        stylizer.border_pad = BORDER_PAD
    assert output.shape == (1, 3, *size)
