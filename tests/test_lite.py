"""The torch-free fast model of the CLI paints what the torch engine paints, without importing torch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nst_core import onnx_graph
from nst_core.adain import Stylizer
from nst_core.lite import LiteStudent, runtime_session, serves_without_torch
from nst_core.options import RenderOptions
from nst_core.student import load_student
from nst_core.tensors import to_pil, to_tensor
from testkit.pictures import sample_image


@pytest.fixture(scope="module")
def both(student_file):
    """The same weights file in both runtimes, both in float32."""
    return LiteStudent.load(student_file), Stylizer(
        *load_student(student_file), torch.device("cpu"), bf16=False
    )


@pytest.mark.parametrize(
    ("content_size", "weights", "alpha"),
    [((64, 64), (1.0,), 1.0), ((61, 47), (0.7, 0.3), 0.6), ((5, 9), (1.0, 0.0), 1.0)],
    ids=["square", "odd-sizes-mix-alpha", "tiny-one-weight-zero"],
)
def test_lite_paints_what_the_torch_engine_paints(both, content_size, weights, alpha):
    lite, stylizer = both
    content = sample_image("astronaut").resize(content_size)
    styles = [sample_image("coffee").resize((72, 50)), sample_image("chelsea").resize((45, 67))][
        : len(weights)
    ]
    ours = np.asarray(lite.stylize(content, styles, weights, alpha), dtype=np.int16)
    options = RenderOptions(weights=weights, alpha=alpha)
    expected = to_pil(stylizer.stylize(to_tensor(content), [to_tensor(s) for s in styles], options))
    difference = np.abs(ours - np.asarray(expected, dtype=np.int16))
    assert ours.shape == (content_size[1], content_size[0], 3)
    assert difference.max() <= 2 and difference.mean() < 0.1  # float summation order, 8-bit rounding


@pytest.mark.parametrize("size", [(45, 67), (7, 5)], ids=["odd", "smaller-than-the-margin"])
def test_the_encoder_graph_takes_the_statistics_of_the_picture_cells_alone(both, size):
    """Means, stds, minima and maxima over the cells that see the picture, not the mirrored margin."""
    lite, stylizer = both
    image = sample_image("chelsea").resize(size)
    ours = lite.encode(
        np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255, lite.layers, lite.stat_layers
    )
    with torch.inference_mode():
        cells = stylizer.encode_with_margin(to_tensor(image), lite.stat_layers)[1]
    for layer, picture in cells.items():
        flat = picture[0].flatten(1)
        expected = {"mean": flat.mean(1), "std": (flat.var(1, unbiased=False) + 1e-5).sqrt()}
        if layer in lite.layers:
            expected |= {"low": flat.amin(1), "high": flat.amax(1)}
        for kind, value in expected.items():
            np.testing.assert_allclose(ours[f"{layer}.{kind}"].ravel(), value.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("options", "device", "serves"),
    [
        (RenderOptions(), "cpu", True),
        (RenderOptions(model="fast", alpha=0.5, weights=(1, 2)), "cpu", True),
        (RenderOptions(model="full"), "cpu", False),
        (RenderOptions(hq=True), "cpu", False),
        (RenderOptions(preserve_color="luminance"), "cpu", False),
        (RenderOptions(), "cuda", False),
    ],
)
def test_what_the_torch_free_path_serves(options, device, serves):
    assert serves_without_torch(options, device) is serves


def test_cli_fast_mode_never_imports_torch(student_file, tmp_path):
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "o.jpg"
    sample_image("astronaut").resize((40, 30)).save(content)
    sample_image("coffee").resize((30, 40)).save(style)
    script = (
        "import sys; from nst_core.cli import main; "
        f"code = main(['stylize', {str(content)!r}, {str(style)!r}, '-o', {str(out)!r}, '--model', 'auto']); "
        "print(code, 'torch' in sys.modules)"
    )
    environment = os.environ | {"NST_STUDENT_PATH": str(student_file)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.split()[-2:] == ["0", "False"]
    assert out.stat().st_size > 0


def test_a_graph_written_without_the_onnx_package_runs_as_its_nodes_say():
    """Integers past one varint byte (a 300-channel weight), strings and int lists as attributes,
    an omitted optional input, a float and an int64 constant."""
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(300, 2, 1, 1)).astype(np.float32), np.arange(300, dtype=np.float32)
    nodes = [
        onnx_graph.node("Conv", ["x", "w", "b"], ["conv"], pads=[0, 0, 0, 0]),
        onnx_graph.node("Pad", ["conv", "pads"], ["padded"], mode="reflect"),
        onnx_graph.node("Resize", ["padded", "", "twice"], ["y"], mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    ]  # fmt: skip
    constants = [
        onnx_graph.tensor("w", weight),
        onnx_graph.tensor("b", bias),
        onnx_graph.tensor("pads", np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64)),
        onnx_graph.tensor("twice", np.array([1, 1, 2, 2], dtype=np.float32)),
    ]
    session = runtime_session(onnx_graph.model("probe", nodes, constants, ["x"], ["y"]))
    x = rng.normal(size=(1, 2, 3, 4)).astype(np.float32)
    conv = np.einsum("oi,nihw->nohw", weight[:, :, 0, 0], x) + bias[:, None, None]
    padded = np.pad(conv, ((0, 0), (0, 0), (1, 0), (0, 2)), mode="reflect")
    expected = padded.repeat(2, axis=2).repeat(2, axis=3)
    np.testing.assert_allclose(session.run(["y"], {"x": x})[0], expected, rtol=1e-5, atol=1e-4)
