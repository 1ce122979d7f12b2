"""The border frame: its metric sees a painted frame and not a photo's own edges, and mirroring the
content around itself before encoding keeps the output exactly the input's size."""

from __future__ import annotations

import pytest
import torch

from nst_core.adain import confined_layers, confined_to_picture, feature_stats, padded_for_encoding
from nst_core.architecture import BORDER_PAD, DOWNSAMPLING, layer_stride, picture_slices
from nst_core.evaluate import BAND, INSIDE, INTERIOR, border_step, frame_offset
from nst_core.evaluate import main as eval_main
from nst_core.flops import convolution_flops
from nst_core.tensors import to_pil


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


def test_the_interior_control_sees_a_stripe_inside_and_not_the_frame():
    """The control measures the picture's own content away from the edge: a stripe there counts, a
    frame does not; a picture too small for the inset is measured as far in as it fits."""
    photo = smooth_picture(160, 160)
    framed, striped = photo.clone(), photo.clone()
    framed[..., :BAND, :] = 1.0
    striped[..., INTERIOR : INTERIOR + BAND, :] = 1.0
    assert border_step(framed, INTERIOR) < 9 < 60 < border_step(framed)
    assert border_step(striped) < 9 < 60 < border_step(striped, INTERIOR)
    assert frame_offset(framed, INTERIOR) < 9 < 60 < frame_offset(striped, INTERIOR)
    small = smooth_picture(BAND + INSIDE + 4, 80)  # 4 rows to spare: the inset becomes 4
    small[..., 4 : 4 + BAND, :] = 1.0
    assert border_step(small, INTERIOR) > 60
    wide = smooth_picture(BAND + INSIDE + 4, 160)  # short edges clipped, long edges still 48 px in
    wide[..., INTERIOR : INTERIOR + BAND] = 1.0
    assert border_step(wide, INTERIOR) > 60


def blocky_texture(side: int = 512, block: int = 8) -> torch.Tensor:
    """Coarse texture: random colours (0.25-0.75) in ``block``-pixel squares, like big brush strokes."""
    cells = torch.rand(1, 3, side // block, side // block, generator=torch.Generator().manual_seed(0))
    return (0.25 + 0.5 * cells).repeat_interleave(block, 2).repeat_interleave(block, 3)


def test_the_frame_offset_sees_a_frame_and_not_coarse_texture():
    """Texture steps up and down along an edge, a frame keeps one sign: the border step counts both,
    the frame offset only the frame, through the texture too."""
    texture = blocky_texture()
    framed = texture.clone()
    framed[..., :, -BAND:] = torch.tensor([0.9, 0.1, 0.2]).view(1, 3, 1, 1)
    assert border_step(texture) > 15  # the worst frames measured 18-36
    assert frame_offset(texture) < 8  # what is left: the texture's average over one edge
    assert frame_offset(framed) > 40
    photo = smooth_picture()
    photo[..., :, -BAND:] = torch.tensor([0.9, 0.1, 0.2]).view(1, 3, 1, 1)
    assert frame_offset(photo) == pytest.approx(border_step(photo), rel=0.01)  # a plain frame: all of it


@pytest.mark.parametrize("size", [(64, 80), (37, 51), (9, 5), (1, 1)])
def test_the_mirrored_margin_surrounds_the_picture_untouched(size):
    picture = torch.rand(1, 3, *size)
    padded = padded_for_encoding(picture, BORDER_PAD)
    assert all(side % DOWNSAMPLING == 0 for side in padded.shape[-2:])
    assert torch.equal(
        padded[..., BORDER_PAD : BORDER_PAD + size[0], BORDER_PAD : BORDER_PAD + size[1]], picture
    )


def test_the_margin_mirrors_texture_without_streaks():
    """Point-mirrored, a texture's edge column (2·edge) would repeat across the whole margin as
    streaks, which the decoder paints into the picture's edge; its texture is mirrored plainly."""
    noise = 0.5 + 0.1 * torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    left_margin = padded_for_encoding(noise, BORDER_PAD)[0, :, BORDER_PAD : BORDER_PAD + 96, :BORDER_PAD]
    neighbours = torch.stack([left_margin[..., :-1].flatten(), left_margin[..., 1:].flatten()])
    assert abs(torch.corrcoef(neighbours)[0, 1]) < 0.3  # point-mirrored whole: 0.8
    torch.testing.assert_close(left_margin.std(), noise.std(), rtol=0.2, atol=0)


def test_the_margin_continues_a_gradient_without_a_crease():
    """A plain mirror folds a sky's gradient into a ridge at the edge, which the decoder paints as a line."""
    ramp = torch.linspace(0.4, 0.6, 48).view(1, 1, 48, 1).expand(1, 3, 48, 40)
    padded = padded_for_encoding(ramp, BORDER_PAD)[0, 0, :, BORDER_PAD]
    steps = padded.diff()
    torch.testing.assert_close(steps[: BORDER_PAD + 40], torch.full((BORDER_PAD + 40,), 0.2 / 47))


@pytest.mark.parametrize("border_pad", [0, BORDER_PAD])
@pytest.mark.parametrize("size", [(48, 64), (37, 51), (9, 13)])
def test_the_output_keeps_the_content_size_with_or_without_the_margin(stylizer, style, border_pad, size):
    stylizer.border_pad = border_pad
    try:
        output = stylizer.stylize(torch.rand(1, 3, *size), [style])
    finally:
        stylizer.border_pad = BORDER_PAD
    assert output.shape == (1, 3, *size)


@pytest.mark.parametrize("model", ["full", "fast"])
@pytest.mark.parametrize("size", [(48, 64), (37, 51), (9, 13)])
def test_only_the_picture_is_decoded_and_exactly_as_the_whole_canvas_would_have_it(
    stylizer, fast_stylizer, model, size
):
    """The decoder paints only what the picture's pixels depend on (down to relu4_1, a 3x3 convolution
    reads one cell more each side) and the mirrored margin's own pixels not at all; where the margin is
    narrower than that reach (a tiny picture), its reflection at the canvas edge is kept."""
    chosen = stylizer if model == "full" else fast_stylizer
    canvas = padded_for_encoding(torch.rand(2, 3, *size), BORDER_PAD)
    window = (slice(BORDER_PAD, BORDER_PAD + size[0]), slice(BORDER_PAD, BORDER_PAD + size[1]))
    with torch.inference_mode():
        maps = chosen.encode(canvas, chosen.stat_layers)
        condition = {layer: feature_stats(maps[layer]) for layer in chosen.decoder.condition_layers} or None
        features = {layer: maps[layer] for layer in chosen.layers}
        parts = {"picture": window, "canvas": None}
        outputs = {}
        flops = {
            name: convolution_flops(
                lambda name=name: outputs.setdefault(name, chosen.decoder(features, condition, parts[name]))
            )
            for name in parts
        }
    assert outputs["picture"].shape == (2, 3, *size)
    torch.testing.assert_close(outputs["picture"], outputs["canvas"][..., *window], rtol=1e-6, atol=1e-5)
    assert flops["picture"] < 0.9 * flops["canvas"]


@pytest.mark.parametrize("size", [(64, 80), (37, 51)])
def test_adain_normalises_by_the_picture_and_keeps_the_margin_in_its_range(size):
    height, width = size
    padded = padded_for_encoding(torch.zeros(1, 3, height, width), BORDER_PAD)
    cells = tuple(side // DOWNSAMPLING for side in padded.shape[-2:])
    torch.manual_seed(0)
    features = torch.rand(1, 4, *cells) * 10
    rows, cols = picture_slices(BORDER_PAD, height, width)
    features[:, 3] = 500.0  # a channel that fires only at the canvas edge...
    features[:, 3, rows, cols] = 0.0  # ...and never inside the picture
    picture = features[..., rows, cols]
    confined, stats = confined_to_picture(features, picture)
    torch.testing.assert_close(stats.mean, picture.mean(dim=(2, 3), keepdim=True))
    assert torch.equal(confined[..., rows, cols], picture)  # the picture's own cells are untouched
    assert confined[:, 3].abs().max() == 0  # the edge-only channel cannot blow up once normalised
    assert confined.amax() <= picture.amax() and confined.amin() >= picture.amin()
    assert not torch.equal(confined, features)


def test_a_photo_stylized_with_itself_gets_its_own_features_back_despite_the_margin(stylizer, content):
    """Photo and style are encoded alike and normalised by the picture's cells only, so AdaIN(f(c), f(c))
    is f(c) there; with the margin's statistics mixed in it would not be."""
    features, own_cells = stylizer.encode_with_margin(content)
    confined, stats = confined_layers(features, own_cells)
    target = stylizer.target_features(confined, [content], content_stats=stats)
    whole = stylizer.target_features(features, [content])
    for layer in stylizer.layers:
        picture = (..., *picture_slices(BORDER_PAD, *content.shape[-2:], layer_stride(layer)))
        torch.testing.assert_close(target[layer][picture], features[layer][picture], rtol=1e-4, atol=1e-2)
        assert (whole[layer] - features[layer])[picture].abs().mean() > 1.0


def test_eval_reports_the_frame_of_results_whose_photo_has_none(tmp_path, capsys, monkeypatch):
    """The issue's goal is about frames painted where the photo has none; photos with frames of their
    own (a passe-partout, a caption strip) are reported separately, over their photo."""
    monkeypatch.setenv("NST_DECODER_PATH", str(tmp_path / "missing.safetensors"))  # seeded random decoder
    folders = {name: tmp_path / name for name in ("content", "style")}
    for folder in folders.values():
        folder.mkdir()
    framed = smooth_picture().clone()
    framed[..., :BAND, :] = 1.0  # a white strip along the top
    to_pil(smooth_picture()).save(folders["content"] / "a_plain.png")
    to_pil(framed).save(folders["content"] / "b_framed.png")
    to_pil(torch.rand(1, 3, 48, 48)).save(folders["style"] / "noise.png")
    args = ["--content-dir", str(folders["content"]), "--style-dir", str(folders["style"]), "--size", "80"]
    assert eval_main([*args, "-o", str(tmp_path / "grid.png")]) == 0
    printed = capsys.readouterr().out
    assert "2 pairs" in printed
    assert "results of photos without a frame of their own (photo step <= 9): 1 results" in printed
    assert f"the same step {INTERIOR} px inside them" in printed
    assert "their frame offset (texture cancelled): mean" in printed
