"""The fast model: a student of VGG-19 at a sixteenth of the compute, chosen by settings and flags."""

import numpy as np
import pytest
import torch
from PIL import Image

from bot.config import Settings
from nst_core.adain import Stylizer, feature_stats
from nst_core.architecture import STUDENT_LAYERS, STUDENT_SKIP_LAYERS, STUDENT_WIDTH
from nst_core.cli import main
from nst_core.decoder import Decoder
from nst_core.errors import ModelFileError
from nst_core.flops import conv_gflop
from nst_core.lite import LiteStudent
from nst_core.options import EngineSpec, RenderOptions
from nst_core.pipeline import Engine
from nst_core.student import load_student, save_student
from nst_core.tensors import to_pil, to_tensor


@pytest.fixture()
def full_model_refused(monkeypatch):
    """Loading the full model (VGG-19 and its decoder) fails the test."""
    monkeypatch.setattr(
        Stylizer, "load", classmethod(lambda *a, **k: pytest.fail("the full model was loaded"))
    )


def test_student_shapes_and_a_sixteenth_of_the_compute(stylizer, fast_stylizer):
    image = torch.rand(1, 3, 96, 64)
    features = fast_stylizer.encode(image, fast_stylizer.stat_layers)
    assert features["relu4_1"].shape == (1, STUDENT_WIDTH, 12, 8)
    assert features["relu3_1"].shape == (1, STUDENT_WIDTH // 2, 24, 16)  # skip inputs
    assert features["relu2_1"].shape == (1, STUDENT_WIDTH // 4, 48, 32)
    assert set(features) == set(STUDENT_LAYERS)  # every layer: the conditioning reads their statistics
    condition = {layer: feature_stats(value) for layer, value in features.items()}
    decoded = fast_stylizer.decode({layer: features[layer] for layer in fast_stylizer.layers}, condition)
    assert decoded.shape == (1, 3, 96, 64)
    content, style = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 64, 64)
    fast, _ = conv_gflop(fast_stylizer, content, style)
    full, _ = conv_gflop(stylizer, content, style)
    # GFLOP at 256² in the 32-px border margin (19.3 at 512²); the decoder's conditioned convolutions
    # count too (module hooks had missed them: ~3)
    assert 5 < fast < 7
    assert full / fast > 14, (full, fast)


def test_pruned_encoder_starts_at_the_teachers_scale(encoder, fast_stylizer, content):
    """Pruning alone leaves the activations ~100x too small; calibration puts them on the teacher's."""
    with torch.inference_mode():
        ours = fast_stylizer.encoder(content)["relu4_1"].mean()
        teacher = encoder(content)["relu4_1"].mean()
    assert 0.5 < float(ours / teacher) < 2.0


def test_weights_file_round_trip(fast_stylizer, tmp_path, content, style):
    path = tmp_path / "student.safetensors"
    save_student(fast_stylizer.encoder, fast_stylizer.decoder, path)
    loaded = Stylizer(*load_student(path), torch.device("cpu"), bf16=False)
    expected = Stylizer(fast_stylizer.encoder, fast_stylizer.decoder, torch.device("cpu"), bf16=False)
    expected = expected.stylize(content, [style])  # in float32 both: what differs is the fp16 file
    torch.testing.assert_close(loaded.stylize(content, [style]), expected, atol=0.02, rtol=0)


@pytest.mark.parametrize(
    ("skip_layers", "left_out"),
    [((), ("skips.", "condition.")), (STUDENT_SKIP_LAYERS, ("condition.",))],
    ids=["before-skip-inputs", "before-conditioning"],
)
def test_a_student_file_from_before_the_skip_inputs_renders_without_them(
    fast_stylizer, tmp_path, content, style, skip_layers, left_out
):
    plain = Decoder(STUDENT_WIDTH, skip_layers)
    plain.load_state_dict(
        {k: v for k, v in fast_stylizer.decoder.state_dict().items() if not k.startswith(left_out)}
    )
    path = tmp_path / "older.safetensors"
    save_student(fast_stylizer.encoder, plain, path)
    encoder, decoder = load_student(path)
    lite = LiteStudent.load(path)
    assert decoder.skip_layers == skip_layers and lite.layers == ("relu4_1", *skip_layers)
    assert decoder.condition is None
    expected = Stylizer(fast_stylizer.encoder, plain, torch.device("cpu")).stylize(content, [style])
    torch.testing.assert_close(
        Stylizer(encoder, decoder, torch.device("cpu")).stylize(content, [style]), expected, atol=0.02, rtol=0
    )
    in_float32 = Stylizer(encoder, decoder, torch.device("cpu"), bf16=False).stylize(content, [style])
    painted = lite.stylize(to_pil(content), [to_pil(style)], [1.0], 1.0)  # the CLI's runtime
    torch.testing.assert_close(to_tensor(painted), to_tensor(to_pil(in_float32)), atol=2 / 255, rtol=0)
    assert (expected - fast_stylizer.stylize(content, [style])).abs().mean() > 0.01  # what is left out counts


def test_missing_or_broken_weights_file_says_so(tmp_path):
    with pytest.raises(ModelFileError, match="fast model weights file not found"):
        load_student(tmp_path / "absent.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="not a valid Atelier student"):
        load_student(broken)


def test_engine_loads_only_the_model_a_render_asks_for(
    student_file, full_model_refused, content_image, style_image
):
    engine = Engine.load(EngineSpec(device="cpu", model="auto", student_path=str(student_file)))
    assert engine.default_model == "fast"  # auto, on a CPU
    rendered = engine.render(content_image, [style_image], RenderOptions(max_side=48))
    assert rendered.image.size == (48, 48)
    assert engine.stylizer().decoder.width == STUDENT_WIDTH


@pytest.mark.parametrize(("configured", "expected"), [("auto", "fast"), ("fast", "fast"), ("full", "full")])
def test_bot_settings_choose_the_model(configured, expected, student_file):
    settings = Settings(_env_file=None, device="cpu", model=configured, student_path=student_file)
    spec = settings.engine_spec()
    assert spec.student_path == str(student_file)
    engine = Engine.load(spec)
    assert engine.default_model == expected
    assert engine.stylizer().decoder.width == (STUDENT_WIDTH if expected == "fast" else 512)


def test_bot_settings_refuse_an_unknown_model():
    with pytest.raises(ValueError, match="model"):
        Settings(_env_file=None, model="tiny")


def test_cli_fast_model_end_to_end(
    student_file, full_model_refused, monkeypatch, tmp_path, content_image, style_image
):
    monkeypatch.setenv("NST_STUDENT_PATH", str(student_file))
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"
    content_image.save(content)
    style_image.save(style)
    command = ["stylize", str(content), str(style), "-o", str(out), "--model", "fast", "--alpha", "0.7"]
    assert main(command) == 0
    assert Image.open(out).size == content_image.size


def test_cli_names_a_missing_fast_model(monkeypatch, tmp_path, content_image, capsys):
    monkeypatch.setenv("NST_STUDENT_PATH", str(tmp_path / "absent.safetensors"))
    content = tmp_path / "c.png"
    content_image.save(content)
    command = ["stylize", str(content), str(content), "-o", str(tmp_path / "o.png"), "--model", "fast"]
    assert main(command) == 1
    assert "fast model weights file not found" in capsys.readouterr().err


def test_a_batch_renders_each_request_with_its_own_model(stylizer, fast_stylizer, content_image, style_image):
    models = {"full": stylizer, "fast": fast_stylizer}
    engine = Engine(models.__getitem__, torch.device("cpu"))
    requests = [
        (content_image, [style_image], RenderOptions(model=name, max_side=48)) for name in ("full", "fast")
    ]
    batched = engine.render_batch(requests)
    for (content, styles, options), rendered in zip(requests, batched, strict=True):
        alone = engine.render(content, styles, options)
        assert np.array_equal(np.asarray(rendered.image), np.asarray(alone.image))
    assert not np.array_equal(np.asarray(batched[0].image), np.asarray(batched[1].image))
