import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from nst_core.errors import ImageError
from nst_core.images import (
    ImageLimits,
    decode_image,
    encode_image,
    fit_max_side,
    format_for_path,
    load_image,
)
from nst_core.tensors import to_pil, to_tensor


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(width=40, height=30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2), "RGB")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height``: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def test_zero_bytes():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_text_file_is_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"hello, this is a text file\n" * 10)


def test_truncated_file():
    data = encoded(gradient(200, 150), "JPEG", quality=90)
    with pytest.raises(ImageError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("size", [(12000, 9000), (100000, 100000)])
def test_bomb_is_refused_before_decoding(size):
    with pytest.raises(ImageError, match="image too large"):
        decode_image(png_declaring(*size))


def test_pixel_limit_message_names_the_size():
    with pytest.raises(ImageError, match="12000×9000, limit 40 MP"):
        decode_image(png_declaring(12000, 9000))


def test_byte_limit():
    with pytest.raises(ImageError, match="file too large"):
        decode_image(encoded(gradient(), "PNG"), ImageLimits(max_bytes=100))


def test_tiny_image_rejected():
    with pytest.raises(ImageError, match="too small"):
        decode_image(encoded(gradient(8, 8), "PNG"))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # pure red in CMYK
    image = decode_image(encoded(cmyk, "JPEG"))
    assert image.mode == "RGB" and image.size == (32, 24)
    r, g, b = image.getpixel((16, 12))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_greyscale_is_scaled_not_clipped():
    array = np.full((20, 30), 32768, dtype=np.uint16)
    image = decode_image(encoded(Image.fromarray(array), "PNG"))
    assert image.mode == "RGB"
    assert abs(image.getpixel((5, 5))[0] - 128) <= 1


def test_rgba_is_composited_over_white():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode_image(encoded(rgba, "PNG"))
    assert image.getpixel((10, 10)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_la_and_palette_and_greyscale():
    la = Image.new("LA", (20, 20), (100, 255))
    assert decode_image(encoded(la, "PNG")).getpixel((3, 3)) == (100, 100, 100)
    palette = gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert decode_image(encoded(palette, "PNG")).mode == "RGB"
    transparent_palette = Image.new("P", (20, 20), 0)
    transparent_palette.putpalette([0, 0, 0, 255, 0, 0])
    transparent_palette.info["transparency"] = 0
    assert decode_image(encoded(transparent_palette, "PNG")).getpixel((1, 1)) == (255, 255, 255)
    assert decode_image(encoded(gradient().convert("L"), "PNG")).mode == "RGB"


def test_animated_gif_takes_first_frame():
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = decode_image(data)
    r, _, b = image.getpixel((12, 12))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied():
    wide = gradient(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = decode_image(encoded(wide, "JPEG", exif=exif))
    assert image.size == (20, 40)


def test_webp_and_bmp_decode():
    for fmt in ("WEBP", "BMP", "TIFF"):
        assert decode_image(encoded(gradient(), fmt)).size == (40, 30)


def test_fit_max_side_keeps_aspect_and_never_upscales():
    assert fit_max_side(gradient(400, 300), 100).size == (100, 75)
    assert fit_max_side(gradient(300, 400), 100).size == (75, 100)
    assert fit_max_side(gradient(40, 30), 100).size == (40, 30)


def test_tensor_round_trip_and_encoding():
    image = gradient()
    tensor = to_tensor(image)
    assert tensor.shape == (1, 3, 30, 40) and tensor.is_contiguous()
    assert np.array_equal(np.asarray(to_pil(tensor)), np.asarray(image))
    assert decode_image(encode_image(image, "PNG")).tobytes() == image.tobytes()
    assert decode_image(encode_image(image, "JPEG")).size == (40, 30)


def test_output_format_from_extension():
    assert format_for_path("a.JPG") == "JPEG" and format_for_path("b.png") == "PNG"
    with pytest.raises(ImageError, match=r"\.png, \.jpg"):
        format_for_path("c.gif")


def test_load_image_missing_and_too_big(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.jpg")
    path = tmp_path / "big.png"
    path.write_bytes(encoded(gradient(), "PNG"))
    with pytest.raises(ImageError, match="file too large"):
        load_image(path, ImageLimits(max_bytes=10))
