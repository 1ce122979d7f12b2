from pathlib import Path

import pytest
import torch

from nst_core.adain import Stylizer, adain, feature_stats, picture_stats
from nst_core.architecture import STUDENT_LAYERS
from nst_core.color import rgb_to_ycbcr
from nst_core.decoder import load_decoder
from nst_core.device import bf16_is_fast
from nst_core.errors import OptionsError
from nst_core.evaluate import psnr_db
from nst_core.options import RenderOptions
from nst_core.student import load_student


@pytest.fixture(params=["full", "fast"])
def stylizer(request, stylizer, fast_stylizer):
    """Every invariant below holds for both models alike."""
    return stylizer if request.param == "full" else fast_stylizer


def test_adain_gives_content_the_style_statistics():
    torch.manual_seed(0)
    content = torch.randn(1, 8, 10, 12) * 3 + 1
    style = torch.randn(1, 8, 7, 9) * 5 - 2
    out = adain(content, feature_stats(style))
    torch.testing.assert_close(feature_stats(out).mean, feature_stats(style).mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feature_stats(out).std, feature_stats(style).std, atol=1e-3, rtol=1e-3)


def test_alpha_zero_returns_content_features(stylizer, content, style):
    features = stylizer.encode(content)
    torch.testing.assert_close(stylizer.target_features(features, [style], alpha=0.0), features)


def test_alpha_interpolates_linearly(stylizer, content, style):
    features = stylizer.encode(content)
    full = stylizer.target_features(features, [style], alpha=1.0)
    half = stylizer.target_features(features, [style], alpha=0.5)
    assert set(features) == set(stylizer.layers)  # the fast model's skip layers too
    for layer, value in features.items():
        torch.testing.assert_close(half[layer], 0.5 * full[layer] + 0.5 * value, rtol=1e-4, atol=1e-3)


def test_the_conditioning_blends_its_statistics_as_the_features_blend(stylizer, content, style, style2):
    """The fast model's decoder is also told the statistics the picture is to have: alpha and the
    mix blend them linearly, as they blend the features; the full model's decoder is told nothing."""
    own = {layer: picture_stats(cells) for layer, cells in stylizer.encode_with_margin(content)[1].items()}
    alone = stylizer.condition_stats(stylizer.mixed_stats([style], None), 1.0, own)
    if stylizer.decoder.condition is None:
        assert alone is None and stylizer.stat_layers == stylizer.layers
        return
    assert set(alone) == set(STUDENT_LAYERS)
    other = stylizer.condition_stats(stylizer.mixed_stats([style2], None), 1.0, own)
    at_zero = stylizer.condition_stats(stylizer.mixed_stats([style], None), 0.0, own)
    one_zero = stylizer.condition_stats(stylizer.mixed_stats([style, style2], [1.0, 0.0]), 1.0, own)
    half = stylizer.condition_stats(stylizer.mixed_stats([style], None), 0.5, own)
    mixed = stylizer.condition_stats(stylizer.mixed_stats([style, style2], [0.75, 0.25]), 1.0, own)
    for layer in STUDENT_LAYERS:
        for part in ("mean", "std"):
            value, content_value = getattr(alone[layer], part), getattr(own[layer], part)
            torch.testing.assert_close(getattr(at_zero[layer], part), content_value)  # the content's own
            torch.testing.assert_close(getattr(one_zero[layer], part), value)  # that style alone
            torch.testing.assert_close(getattr(half[layer], part), (value + content_value) / 2)
            expected = 0.75 * value + 0.25 * getattr(other[layer], part)
            torch.testing.assert_close(getattr(mixed[layer], part), expected)
    assert not torch.allclose(alone["relu1_1"].mean, other["relu1_1"].mean)  # the styles differ


def test_weights_one_zero_equal_single_style(stylizer, content, style, style2):
    single = stylizer.stylize(content, [style])
    mixed = stylizer.stylize(content, [style, style2], RenderOptions(weights=(1.0, 0.0)))
    torch.testing.assert_close(mixed, single)


def test_mix_is_weighted_sum_of_adain_targets(stylizer, content, style, style2):
    features = stylizer.encode(content)
    a = stylizer.target_features(features, [style])
    b = stylizer.target_features(features, [style2])
    weights = RenderOptions(weights=(3.0, 1.0)).weights_for(2)  # normalized once, when built
    assert weights == (0.75, 0.25)
    mixed = stylizer.target_features(features, [style, style2], weights)
    for layer in features:
        torch.testing.assert_close(mixed[layer], 0.75 * a[layer] + 0.25 * b[layer], rtol=1e-4, atol=1e-2)


def test_output_keeps_content_size_with_mixed_size_styles(stylizer, style, style2):
    odd_content = torch.rand(1, 3, 45, 61)  # not a multiple of 8
    out = stylizer.stylize(odd_content, [style, style2], RenderOptions(weights=(0.5, 0.5)))
    assert out.shape == odd_content.shape
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_cached_and_uncached_stylization_identical(stylizer, content, style):
    stylizer._cache.clear()
    misses = stylizer.cache_misses
    first = stylizer.stylize(content, [style], RenderOptions(alpha=0.8))
    hits = stylizer.cache_hits
    second = stylizer.stylize(content, [style], RenderOptions(alpha=0.8))
    assert stylizer.cache_misses == misses + 1
    assert stylizer.cache_hits == hits + 1
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def chroma(image):
    return rgb_to_ycbcr(image)[:, 1:]


def test_preserve_color_luminance_keeps_content_chroma(stylizer, content, style):
    out = stylizer.stylize(content, [style], RenderOptions(preserve_color="luminance"))
    # clipping to [0, 1] can move chroma at saturated pixels; elsewhere it is the content's
    difference = (chroma(out) - chroma(content)).abs()
    assert difference.median() < 0.01
    plain = stylizer.stylize(content, [style])
    assert (chroma(plain) - chroma(content)).abs().median() > difference.median()


def test_preserve_color_histogram_stylizes_with_the_style_recoloured_to_the_photo(stylizer, content, style):
    from nst_core.color import match_color_statistics

    kept = stylizer.stylize(content, [style], RenderOptions(preserve_color="histogram"))
    torch.testing.assert_close(kept, stylizer.stylize(content, [match_color_statistics(style, content)]))


def test_preserve_color_histogram_moves_colours_towards_content(encoder, content, style):
    """Judged with the trained decoder: a random one paints colours that hardly depend on the style."""
    trained = Stylizer(encoder, load_decoder()[0], torch.device("cpu"))
    style = style * torch.tensor([1.0, 0.3, 0.3])[:, None, None]  # far from the photo's colours
    plain = trained.stylize(content, [style])
    kept = trained.stylize(content, [style], RenderOptions(preserve_color="histogram"))
    target = chroma(content).mean(dim=(2, 3))
    assert (chroma(kept).mean(dim=(2, 3)) - target).abs().sum() < 0.5 * (
        chroma(plain).mean(dim=(2, 3)) - target
    ).abs().sum()


def test_histogram_matching_matches_mean_and_covariance():
    from nst_core.color import match_color_statistics

    torch.manual_seed(1)  # mid-range images, so clamping to [0, 1] does not bend the statistics
    mixing = torch.tensor([[0.08, 0.02, 0.0], [0.01, 0.05, 0.03], [0.0, -0.02, 0.06]])
    style = (0.5 + torch.einsum("ij,bjhw->bihw", mixing, torch.randn(1, 3, 40, 40))).clamp(0, 1)
    content = (torch.tensor([0.3, 0.5, 0.6]).view(1, 3, 1, 1) + 0.05 * torch.randn(1, 3, 40, 40)).clamp(0, 1)
    matched = match_color_statistics(style, content)
    flat_m, flat_c = matched.reshape(3, -1), content.reshape(3, -1)
    torch.testing.assert_close(flat_m.mean(1), flat_c.mean(1), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.cov(flat_m), torch.cov(flat_c), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ((-1.0, 2.0), "non-negative"),
        ((0.0, 0.0), "positive"),
        ((float("nan"), 1), "non"),
        ((1e308, 1e308), "too large"),
    ],
)
def test_bad_weights_are_refused_when_options_are_built(weights, message):
    with pytest.raises(OptionsError, match=message):
        RenderOptions(weights=weights)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"preserve_color": "sepia"}, "preserve colour"),
        ({"hq_init": "noise"}, "HQ init"),
        ({"max_side": 8}, "at least 16"),
        ({"steps": 0}, "steps"),
        ({"time_budget_s": 0.0}, "time budget"),
    ],
)
def test_bad_options_are_refused_when_built(fields, message):
    with pytest.raises(OptionsError, match=message):
        RenderOptions(**fields)


def test_weights_must_match_the_styles(stylizer, content, style):
    with pytest.raises(OptionsError, match="1 weights for 2 style images"):
        RenderOptions(weights=(1.0,)).weights_for(2)
    with pytest.raises(OptionsError, match="at least one style"):
        stylizer.stylize(content, [])
    assert RenderOptions().weights_for(4) == (0.25,) * 4


def test_a_batch_gives_each_request_what_it_would_get_alone(stylizer, content, style, style2):
    requests = [
        (content, [style], RenderOptions(alpha=0.6)),
        (content.flip(-1), [style2], RenderOptions(preserve_color="luminance")),
        (content, [style, style2], RenderOptions(weights=(0.3, 0.7))),
    ]
    batched = stylizer.stylize_batch(requests)
    for (image, styles, options), output in zip(requests, batched, strict=True):
        assert output.shape == image.shape
        assert torch.allclose(output, stylizer.stylize(image, styles, options), atol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)  # each kept its own content and options


def test_bf16_where_it_is_native_paints_what_float32_paints(content, style):
    """The trained fast model (cheap even where bf16 is emulated): the same picture to the eye."""
    encoder, decoder = load_student()
    assert Stylizer(encoder, decoder, torch.device("cpu")).bf16 is bf16_is_fast(torch.device("cpu"))
    float32, bf16 = (Stylizer(encoder, decoder, torch.device("cpu"), bf16=flag) for flag in (False, True))
    reference, ours = float32.stylize(content, [style]), bf16.stylize(content, [style])
    assert ours.dtype == torch.float32 and ours.shape == reference.shape == content.shape
    assert 35 < psnr_db(ours, reference) < float("inf")  # close, and bf16 did run


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_bf16_counts_as_fast_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, native):
    """An AVX-512 CPU without BF16 (Cascade Lake) emulates bf16, slower than float32: not fast."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_is_fast(torch.device("cpu")) is native


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="the kernel's CPU flags (Linux)")
def test_bf16_detection_agrees_with_the_kernels_cpu_flags():
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    flags = set(next(line for line in lines if line.startswith("flags")).partition(":")[2].split())
    assert bf16_is_fast(torch.device("cpu")) is bool({"avx512_bf16", "amx_bf16"} & flags)
