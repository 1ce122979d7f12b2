"""Decoder training on tiny synthetic folders: the loss goes down, resume is exact, eval writes a grid."""

import csv
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.nn import functional as F

from nst_core.adain import Stylizer, confined_to_picture, feature_stats
from nst_core.architecture import BORDER_PAD, ENCODER_LAYER, LAYER_SCALE, STUDENT_WIDTH, picture_slices
from nst_core.decoder import Decoder, save_decoder
from nst_core.errors import ModelFileError
from nst_core.evaluate import main as eval_main
from nst_core.evaluate import psnr_db
from nst_core.losses import ADAIN_STYLE_LAYERS, normalized_stats
from nst_core.student import load_student, save_student
from nst_core.train import (
    compute_losses,
    distill_loss,
    fit_embedding,
    is_validation,
    margin_batch,
    parse_args,
    teacher_targets,
    train,
)


def _write_images(folder, seed, count=3, size=48):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        base = rng.integers(0, 255, size=(6, 6, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((size, size + 8 * index), Image.Resampling.BICUBIC)
        image.save(folder / f"img{index}.png")


@pytest.fixture()
def folders(tmp_path):
    _write_images(tmp_path / "content", seed=1)
    _write_images(tmp_path / "style", seed=2)
    return tmp_path / "content", tmp_path / "style"


def _args(folders, out, steps, *extra):
    content, style = folders
    return parse_args([
        "--content-dir", str(content), "--style-dir", str(style), "--out", str(out), "--steps", str(steps),
        "--batch-size", "2", "--crop", "32", "--val-crop", "32", "--crops-per-image", "2", "--log-every", "1",
        "--lr", "1e-3", "--checkpoint-minutes", "100", "--threads", "2", "--identity-samples", "1", *extra,
    ])  # fmt: skip


def _train_rows(out):
    return [row for row in csv.DictReader((out / "log.csv").open()) if row["split"] == "train"]


def test_training_lowers_the_loss_and_writes_artifacts(folders, tmp_path):
    out = tmp_path / "run"
    assert train(_args(folders, out, 40, "--export", str(tmp_path / "dec.safetensors"))) == 40
    totals = [float(row["total"]) for row in _train_rows(out)]
    assert len(totals) == 40
    assert np.mean(totals[-8:]) < 0.8 * np.mean(totals[:8])
    for artifact in ("ckpt.pt", "loss.png", "val_grid.png"):
        assert (out / artifact).stat().st_size > 0
    exported = load_file(str(tmp_path / "dec.safetensors"))
    assert all(tensor.dtype == torch.float16 for tensor in exported.values())


def test_pretraining_phase_uses_pixel_loss(folders, tmp_path):
    out = tmp_path / "run"
    train(_args(folders, out, 3, "--pretrain-steps", "3"))
    assert all(float(row["style"]) == 0.0 for row in _train_rows(out))


@pytest.mark.parametrize("model", [(), ("--model", "fast", "--distill-steps", "2")], ids=["full", "fast"])
def test_pixel_pretraining_inverts_without_the_loss_network(folders, tmp_path, model):
    out = tmp_path / "run"
    steps = int(model[-1]) + 30 if model else 30
    # lr 1e-3 sometimes throws the student's pixel pretraining off for a few steps (order-dependent)
    pixels_only = ("--pretrain-steps", "30", "--pretrain-loss", "pixels", "--lr", "3e-4")
    train(_args(folders, out, steps, *pixels_only, *model))
    rows = _train_rows(out)[-30:]
    assert all(row["content"] == row["style"] == "" for row in rows)  # no loss-network pass
    totals = [float(row["total"]) for row in rows]
    assert np.mean(totals[-6:]) < 0.8 * np.mean(totals[:6])


@pytest.mark.parametrize("model", [(), ("--model", "fast", "--distill-steps", "2")], ids=["full", "fast"])
def test_resume_continues_at_the_same_step_with_identical_state(folders, tmp_path, model):
    first = tmp_path / "first"
    train(_args(folders, first, 4, *model))
    checkpoint = torch.load(first / "ckpt.pt", weights_only=False)
    assert checkpoint["step"] == 4 and checkpoint["images_seen"] == 8
    second = tmp_path / "second"
    shutil.copytree(first, second)
    for run in (first, second):
        assert train(_args(folders, run, 6, "--resume", *model)) == 6
        assert [int(row["step"]) for row in _train_rows(run)][-2:] == [5, 6]
    a = torch.load(first / "ckpt.pt", weights_only=False)
    b = torch.load(second / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for module in ("decoder", "student", "embedding") if model else ("decoder",):
        for key, value in a[module].items():  # same RNG, data order and optimizer state: same weights
            torch.testing.assert_close(value, b[module][key], rtol=0, atol=0)
    assert not torch.equal(a["decoder"]["net.1.weight"], checkpoint["decoder"]["net.1.weight"])


@pytest.mark.parametrize("model", [(), ("--model", "fast", "--distill-steps", "2")], ids=["full", "fast"])
def test_a_run_goes_on_from_its_exported_weights_when_the_checkpoint_is_lost(folders, tmp_path, model):
    export = tmp_path / "model.safetensors"
    train(_args(folders, tmp_path / "lost", 4, "--export", str(export), *model))
    out = tmp_path / "new_machine"
    assert train(_args(folders, out, 4, "--resume", "--init", str(export), *model)) == 4  # nothing to do
    exported = load_file(str(export))
    started = torch.load(out / "ckpt.pt", weights_only=False)
    assert started["step"] == 4 and started["images_seen"] == 8
    for key, value in started["decoder"].items():
        torch.testing.assert_close(
            value, exported[f"decoder.{key}" if model else key].float(), rtol=0, atol=0
        )
    assert train(_args(folders, out, 6, "--resume", "--init", str(export), *model)) == 6
    assert [int(row["step"]) for row in _train_rows(out)] == [5, 6]


def test_the_refit_embedding_explains_the_teacher_at_least_as_well_as_the_trained_one(folders, tmp_path):
    out, export = tmp_path / "run", tmp_path / "student.safetensors"
    train(_args(folders, out, 30, "--model", "fast", "--distill-steps", "30", "--export", str(export)))
    checkpoint = torch.load(out / "ckpt.pt", weights_only=False)
    student, _ = load_student(export)
    banks = [torch.load(path, weights_only=True) for path in sorted(out.glob("bank-*.pt"))]
    trained = torch.nn.Conv2d(STUDENT_WIDTH, 512, kernel_size=1)
    trained.load_state_dict(checkpoint["embedding"])
    pixels = torch.cat([bank["pixels"] for bank in banks]).float().div(255)
    teacher = torch.cat([bank["relu4_1"] for bank in banks])
    fitted = torch.nn.Conv2d(STUDENT_WIDTH, 512, kernel_size=1)
    fit_embedding(fitted, student, banks)  # the banks are smaller than its sample: the same crops
    with torch.no_grad():
        features = student(pixels)["relu4_1"]
        loss_trained, loss_fitted = (distill_loss(e, features, teacher) for e in (trained, fitted))
    assert loss_fitted <= loss_trained * 1.001


def test_weights_without_a_recorded_step_are_refused(folders, tmp_path):
    export = tmp_path / "decoder.safetensors"
    save_decoder(Decoder(), export)  # as files written before the step was recorded
    with pytest.raises(ModelFileError, match="records no training step"):
        train(_args(folders, tmp_path / "run", 4, "--init", str(export)))


def test_student_is_distilled_then_frozen_while_its_decoder_learns(folders, tmp_path):
    out, export = tmp_path / "run", tmp_path / "student.safetensors"
    fast = ("--model", "fast", "--distill-steps", "20", "--export", str(export))
    assert train(_args(folders, out, 20, *fast)) == 20
    distilled = torch.load(out / "ckpt.pt", weights_only=False)
    assert train(_args(folders, out, 40, "--resume", *fast)) == 40
    rows = _train_rows(out)
    distill = [float(row["distill"]) for row in rows[:20]]
    assert all(row["content"] == "" for row in rows[:20])  # the decoder objective waits
    assert np.mean(distill[-5:]) < 0.8 * np.mean(distill[:5])
    totals = [float(row["total"]) for row in rows[20:]]
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5])
    trained = torch.load(out / "ckpt.pt", weights_only=False)
    for key, value in distilled["student"].items():  # AdaIN needs a fixed feature space
        torch.testing.assert_close(trained["student"][key], value, rtol=0, atol=0)
    for layer in ("relu3_1", "relu2_1"):  # the skip inputs start at zero and learn with the decoder
        key = f"skips.{layer}.weight"
        assert not distilled["decoder"][key].any() and trained["decoder"][key].abs().sum() > 0
    rest, late = trained["optimizer"]["param_groups"]  # late: the skip inputs and the conditioning
    assert len(late["params"]) == 8 and late["lr_scale"] == 10  # --skip-lr-scale
    assert late["lr"] == pytest.approx(1e-3) and rest["lr"] < 1e-3  # 10x the decayed rate, up to the first
    condition = {key: value for key, value in trained["decoder"].items() if key.startswith("condition.")}
    assert condition["condition.film.weight"].abs().sum() > 0  # it learns from zero
    assert not torch.equal(condition["condition.spread"], torch.ones_like(condition["condition.spread"]))
    encoder, _ = load_student(export)  # the export is what the engine loads
    assert encoder(torch.rand(1, 3, 32, 32))["relu4_1"].shape == (1, STUDENT_WIDTH, 4, 4)


def test_a_run_goes_on_from_a_student_file_from_before_the_skip_inputs(folders, tmp_path):
    """The committed weights of a run may predate the skip inputs and the conditioning: the decoder
    they describe is kept, its skip inputs and FiLM layer start at zero (which changes nothing it
    paints) and learn from there."""
    fast = ("--model", "fast", "--distill-steps", "2")
    export = tmp_path / "student.safetensors"
    train(_args(folders, tmp_path / "first", 3, "--export", str(export), *fast))
    encoder, decoder = load_student(export)
    plain = Decoder(STUDENT_WIDTH)
    plain.load_state_dict(
        {k: v for k, v in decoder.state_dict().items() if not k.startswith(("skips.", "condition."))}
    )
    old = tmp_path / "old.safetensors"
    save_student(encoder, plain, old, step=3)
    assert train(_args(folders, tmp_path / "run", 3, "--init", str(old), *fast)) == 3
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["decoder"]
    assert {key for key in state if key.startswith("skips.")} == {
        f"skips.{layer}.{part}" for layer in ("relu3_1", "relu2_1") for part in ("weight", "bias")
    }
    assert not any(state[key].any() for key in state if key.startswith(("skips.", "condition.film.")))
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(state[key], value)


def test_a_tuned_encoder_keeps_learning_anchored_and_averaged_with_its_decoder(folders, tmp_path):
    """--tune-encoder: the decoder's losses reach the distilled encoder, the distillation loss holds it
    near VGG-19, and what is exported is the encoder's moving average, paired with the decoder's."""
    out, export = tmp_path / "run", tmp_path / "student.safetensors"
    fast = ("--model", "fast", "--distill-steps", "4", "--export", str(export), "--average-decay", "0.5")
    train(_args(folders, out, 4, *fast))
    distilled = torch.load(out / "ckpt.pt", weights_only=False)["student"]
    train(_args(folders, out, 7, "--resume", "--tune-encoder", "1.0", *fast))
    state = torch.load(out / "ckpt.pt", weights_only=False)
    rows = _train_rows(out)[4:]
    assert all(row["content"] and float(row["distill"]) > 0 for row in rows)  # style phase, anchored
    key = "convs.relu1_1.weight"
    average, live = state["student_average"][key], state["student"][key]
    assert not torch.equal(live, distilled[key])  # it learned
    assert not torch.equal(average, live) and not torch.equal(average, distilled[key])  # and is averaged
    encoder, _ = load_student(export)
    torch.testing.assert_close(encoder.state_dict()[key], state["student_average"][key], rtol=1e-3, atol=1e-4)


def test_a_tuned_run_from_a_student_file_averages_the_encoder_it_loaded(folders, tmp_path):
    """On a new machine a tuned run starts from the committed file: the encoder's moving average must
    start from that file's encoder, not from the pruned VGG-19 the run builds before loading it."""
    export = tmp_path / "student.safetensors"
    fast = ("--model", "fast", "--distill-steps", "3")
    train(_args(folders, tmp_path / "first", 3, "--export", str(export), *fast))
    loaded, _ = load_student(export)
    tuned = ("--tune-encoder", "1", "--average-decay", "0.999", "--init", str(export), *fast)
    assert train(_args(folders, tmp_path / "run", 4, *tuned)) == 4
    average = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["student_average"]
    for key, value in loaded.state_dict().items():  # one step at decay 0.999 moves it very little
        torch.testing.assert_close(average[key], value, rtol=0.01, atol=1e-3)


@pytest.mark.parametrize("extra", [("--tune-encoder", "1"), ("--model", "fast", "--tune-encoder", "-1")])
def test_tune_encoder_is_refused_without_a_student_or_with_a_negative_weight(folders, capsys, extra):
    with pytest.raises(SystemExit):
        _args(folders, "out", 1, *extra)
    assert "--tune-encoder takes a weight >= 0" in capsys.readouterr().err


def test_validation_split_is_stable_and_small():
    names = [f"c{i:05d}.jpg" for i in range(1, 3001)]
    held_out = [n for n in names if is_validation(n)]
    assert 0.02 < len(held_out) / len(names) < 0.04
    assert held_out == [n for n in names if is_validation(n)]


def test_eval_writes_grid_and_prints_losses(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NST_DECODER_PATH", str(tmp_path / "missing.safetensors"))  # seeded random decoder
    content, style = folders
    grid = tmp_path / "grid.png"
    code = eval_main(
        [
            "--content-dir",
            str(content),
            "--style-dir",
            str(style),
            "-o",
            str(grid),
            "--size",
            "32",
            "--limit",
            "2",
        ]
    )
    assert code == 0
    assert Image.open(grid).size == (3 * 32, 3 * 32)  # header row/column + 2 × 2 results
    printed = capsys.readouterr().out
    assert "4 pairs" in printed
    assert "alpha=1.0: content loss" in printed and "alpha=0.5: content loss" in printed
    assert "self-reconstruction (each photo as its own style): PSNR" in printed


def test_psnr_of_known_error():
    reference = torch.full((1, 3, 8, 8), 0.5)
    assert psnr_db(reference, reference) == float("inf")
    assert psnr_db(reference + 0.1, reference) == pytest.approx(20.0, abs=0.2)  # MSE 0.01 -> 20 dB


def test_feature_bank_is_built_once_and_holds_what_the_encoder_says(folders, tmp_path, encoder):
    out = tmp_path / "run"
    crops = ("--crops-per-image", "6")  # 18 crops: more than one encoder batch of 16
    train(_args(folders, out, 1, *crops))
    banks = sorted(out.glob("bank-*.pt"))
    assert [p.name.split("-")[1] for p in banks] == ["content", "style"]
    stamps = [p.stat().st_mtime_ns for p in banks]
    train(_args(folders, out, 2, "--resume", *crops))
    assert [p.stat().st_mtime_ns for p in banks] == stamps  # reused, not rebuilt
    content = torch.load(banks[0], weights_only=True)
    assert content["pixels"].dtype == torch.uint8 and content["pixels"].shape == (3 * 6, 3, 32, 32)
    for crop in (slice(0, 2), slice(16, 18)):  # each batch's rows land at its own crops
        features = encoder(content["pixels"][crop].float() / 255, ADAIN_STYLE_LAYERS)
        banked = content["relu4_1"][crop].float()  # bf16 where the CPU computes in bf16: compare norms
        assert (banked - features["relu4_1"]).norm() < 0.03 * features["relu4_1"].norm()
        stats = normalized_stats(features)["relu1_1"].std
        assert (content["std/relu1_1"][crop] - stats).norm() < 0.03 * stats.norm()
    style = torch.load(banks[1], weights_only=True)
    assert "relu4_1" not in style  # the full model only needs the style crops' statistics


def test_identity_samples_decode_their_own_features_with_a_pixel_loss(encoder):
    features = torch.rand(3, 512, 4, 4) * 100
    pixels = torch.rand(3, 3, 32, 32)
    seen = {}

    def grey_decoder(target, style=None):
        seen["target"] = target
        return torch.full((len(target), 3, 32, 32), 0.5)

    style = normalized_stats(encoder(torch.rand(3, 3, 32, 32), ADAIN_STYLE_LAYERS))
    target = teacher_targets(features, style, identity=1)
    losses, _ = compute_losses(encoder, grey_decoder, target, target, pixels, style, identity=1)
    torch.testing.assert_close(seen["target"][2], features[2])  # stylized with itself: unchanged
    assert not torch.allclose(seen["target"][:2], features[:2])  # the others get the artworks' stats
    torch.testing.assert_close(losses["pixel"], F.mse_loss(torch.full_like(pixels[2:], 0.5), pixels[2:]))
    target = teacher_targets(features, style, identity=0)
    no_identity, _ = compute_losses(encoder, grey_decoder, target, target, pixels, style, identity=0)
    assert no_identity["pixel"] == 0 and no_identity["style"] > 0


def test_margin_training_encodes_crops_as_inference_encodes_pictures(stylizer):
    stylizer = Stylizer(
        stylizer.encoder, stylizer.decoder, stylizer.device, bf16=False
    )  # as training (amp off)
    crops = torch.rand(2, 3, 48, 48)
    decoder_input, target, style = margin_batch(stylizer.encoder, crops, None, BORDER_PAD, amp=False)
    features, cells = stylizer.encode_with_margin(crops)
    expected, _ = confined_to_picture(features[ENCODER_LAYER], cells[ENCODER_LAYER])
    assert style is None and decoder_input.shape[-2:] == ((48 + 2 * BORDER_PAD) // 8,) * 2
    torch.testing.assert_close(decoder_input, expected)
    torch.testing.assert_close(target, cells[ENCODER_LAYER])


def test_with_a_margin_nothing_the_losses_compare_sees_zero_padding(encoder):
    crops, artworks = torch.rand(3, 3, 48, 48), torch.rand(2, 3, 48, 48)
    decoder_input, target, style = margin_batch(encoder, crops, artworks, BORDER_PAD, amp=False)
    picture = picture_slices(BORDER_PAD, 48, 48)
    torch.testing.assert_close(target, decoder_input[..., *picture])
    artwork_mean = style[ENCODER_LAYER].mean[:2] * LAYER_SCALE[ENCODER_LAYER]
    torch.testing.assert_close(feature_stats(target[:2]).mean, artwork_mean, rtol=1e-4, atol=1e-3)
    zero_padded = normalized_stats(encoder(artworks, ADAIN_STYLE_LAYERS))  # the bank's view
    assert not torch.allclose(style["relu1_1"].std[:2], zero_padded["relu1_1"].std, rtol=1e-2)

    def framed_decoder(decoder_input, style=None):  # the crops back exactly, inside a white margin
        return F.pad(crops, (BORDER_PAD,) * 4, value=1.0)

    decoder_input, target, style = margin_batch(encoder, crops, artworks[:0], BORDER_PAD, amp=False)
    losses, output = compute_losses(
        encoder, framed_decoder, decoder_input, target, crops, style, 3, BORDER_PAD
    )
    torch.testing.assert_close(output, crops, rtol=0, atol=0)
    assert losses["pixel"] == 0 and losses["content"] < 1e-9 and losses["style"] < 1e-9  # nothing to learn
    unframed, _ = compute_losses(encoder, framed_decoder, decoder_input, target, crops, style, 3)
    assert unframed["style"] > 1e-3  # judged with zero padding, a perfect copy would be "wrong"


def test_a_margin_run_trains_and_validates_with_it(folders, tmp_path):
    out = tmp_path / "run"
    pixels_first = ("--pretrain-steps", "1", "--pretrain-loss", "pixels")
    assert train(_args(folders, out, 3, "--margin", str(BORDER_PAD), *pixels_first)) == 3
    rows = list(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert [row["split"] for row in rows] == ["train", "val", "train", "train", "val"]  # val: phase ends
    assert rows[0]["style"] == "" and all(float(row["style"]) > 0 for row in rows[1:])


def test_margin_is_refused_for_the_fast_model(folders, capsys):
    with pytest.raises(SystemExit):
        _args(folders, "out", 1, "--model", "fast", "--margin", "32")
    assert "--margin" in capsys.readouterr().err


def test_the_exported_decoder_is_the_moving_average_of_the_weights(folders, tmp_path):
    export, out = tmp_path / "avg.safetensors", tmp_path / "run"
    train(_args(folders, out, 2, "--export", str(export)))  # a run that did not average
    train(_args(folders, out, 2, "--resume", "--average-decay", "0.5", "--export", str(export)))
    state = torch.load(out / "ckpt.pt", weights_only=False)
    for key, value in state["decoder"].items():  # averaging starts from the run's weights
        torch.testing.assert_close(state["average"][key], value, rtol=0, atol=0)
    train(_args(folders, out, 3, "--resume", "--average-decay", "0.5", "--export", str(export)))
    after = torch.load(out / "ckpt.pt", weights_only=False)
    exported = load_file(str(export))
    for key, value in after["average"].items():  # halfway between the old weights and the new ones
        torch.testing.assert_close(value, (state["decoder"][key] + after["decoder"][key]) / 2)
        torch.testing.assert_close(exported[key].float(), value, rtol=1e-3, atol=1e-4)
    assert not torch.equal(after["average"]["net.1.weight"], after["decoder"]["net.1.weight"])
