"""The ``nst`` command end to end, in-process, on small real images."""

import pytest
from PIL import Image

from nst_core.cli import main
from testkit.pictures import sample_image


@pytest.fixture()
def files(tmp_path, content_image, style_image):
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    content_image.save(content)
    style_image.save(style)
    return content, style


@pytest.fixture()
def random_decoder(tmp_path, monkeypatch):
    """Point the default decoder path at a missing file so runs use the seeded random decoder."""
    monkeypatch.setenv("NST_DECODER_PATH", str(tmp_path / "no-decoder.safetensors"))


def test_fast_stylize_writes_image_of_requested_size(files, tmp_path, capsys, random_decoder, content_image):
    content, style = files
    out = tmp_path / "out.jpg"
    command = [
        "stylize",
        str(content),
        str(style),
        "-o",
        str(out),
        "--size",
        "64",
        "--alpha",
        "0.5",
        "--model",
        "full",
    ]
    assert main(command) == 0
    with Image.open(out) as image:
        assert image.format == "JPEG"
        assert image.size == content_image.size  # 64 px max side already
    captured = capsys.readouterr()
    assert "no trained decoder is installed" in captured.err
    assert "wrote" in captured.out


def test_mix_with_weights_and_preserve_color_png(files, tmp_path, random_decoder):
    content, style = files
    out = tmp_path / "mix.png"
    args = [
        "stylize",
        str(content),
        str(style),
        str(content),
        "--weights",
        "0.7",
        "0.3",
        "--preserve-color",
        "histogram",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    assert Image.open(out).format == "PNG"


def test_hq_with_progress(files, tmp_path, capsys):
    content, style = files
    out = tmp_path / "hq.png"
    assert (
        main(["stylize", str(content), str(style), "-o", str(out), "--hq", "--steps", "4", "--size", "64"])
        == 0
    )
    assert Image.open(out).size == (64, 64)
    assert "100%" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "7"], "alpha must be between 0 and 1"),
        (["--alpha", "abc"], "alpha must be a number"),
        (["--size", "5"], "--size must be between"),
        (["--weights", "1", "2"], "got 2 weights for 1 style"),
        (["--weights", "-1"], "non-negative"),
        (["--preserve-color", "sepia"], "invalid choice"),
        (["--device", "tpu"], "unknown device"),
        (["--steps", "0"], "positive whole number"),
        (["--hq-init", "noise"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_message(files, tmp_path, capsys, extra, message):
    content, style = files
    with pytest.raises(SystemExit) as exit_info:
        code = main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.jpg"), *extra])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: p / "missing.jpg", "file not found"),
        (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "not an image"),
    ],
)
def test_bad_files_exit_1_with_message(files, tmp_path, capsys, make_input, message):
    _, style = files
    bad = make_input(tmp_path)
    assert main(["stylize", str(bad), str(style), "-o", str(tmp_path / "o.jpg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert "Traceback" not in err


def test_bad_output_extension_and_missing_decoder(files, tmp_path, capsys):
    content, style = files
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.gif")]) == 1
    assert "must end in .png" in capsys.readouterr().err
    code = main(
        ["stylize", str(content), str(style), "-o", str(tmp_path / "o.jpg"), "--decoder", "/nope.safetensors"]
    )
    assert code == 1
    assert "decoder weights file not found" in capsys.readouterr().err


def test_large_jpegs_are_decoded_at_the_render_size(student_file, tmp_path, monkeypatch):
    """Inputs are fitted to --size as they are decoded (JPEGs at a reduced DCT scale): the fast path
    no longer fits them itself."""
    monkeypatch.setenv("NST_STUDENT_PATH", str(student_file))
    content, style, out = tmp_path / "photo.jpg", tmp_path / "art.jpg", tmp_path / "out.png"
    sample_image("astronaut").resize((480, 320)).save(content, quality=95)
    sample_image("coffee").resize((400, 600)).save(style, quality=95)
    assert main(["stylize", str(content), str(style), "-o", str(out), "--size", "96", "--model", "fast"]) == 0
    with Image.open(out) as image:
        assert image.size == (96, 64)
