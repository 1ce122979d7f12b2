"""Safe image decoding and encoding: every failure is an ``ImageError`` with a sentence for the user.

Limits are checked before pixels are decoded: Pillow reads only the header in ``Image.open``, so a
file declaring 50000x50000 pixels is refused without allocating them (a decompression bomb).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nst_core.errors import ImageError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # Telegram lets bots download at most 20 MB
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 16


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = MIN_SIDE


def _megabytes(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MB"


def read_image_bytes(path: str | os.PathLike[str], limits: ImageLimits = ImageLimits()) -> bytes:
    """Read a file, refusing missing files and files over the byte limit before reading them."""
    target = Path(path)
    if not target.is_file():
        raise ImageError(f"file not found: {target}")
    size = target.stat().st_size
    if size > limits.max_bytes:
        raise ImageError(f"file too large: {_megabytes(size)}, limit {_megabytes(limits.max_bytes)}")
    return target.read_bytes()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode bytes to an upright RGB image (first frame of animations), enforcing ``limits``."""
    if not data:
        raise ImageError("this file is empty, not an image")
    if len(data) > limits.max_bytes:
        raise ImageError(f"file too large: {_megabytes(len(data))}, limit {_megabytes(limits.max_bytes)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit follows
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("this file is not an image (or not in a format I can read)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: over {limits.max_pixels / 1e6:.0f} MP") from exc
    except Exception as exc:  # Pillow raises many types for hostile headers
        raise ImageError(f"this file is not a readable image ({type(exc).__name__})") from exc
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(f"image too large: {width}×{height}, limit {limits.max_pixels / 1e6:.0f} MP")
    if min(width, height) < limits.min_side:
        raise ImageError(
            f"image too small: {width}×{height}, each side must be at least {limits.min_side} px"
        )
    try:
        image.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF oddities are not the user's problem
            image.load()
            image = ImageOps.exif_transpose(image) or image
        return _to_rgb(image)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError("this image is damaged or truncated and cannot be decoded") from exc


def load_image(path: str | os.PathLike[str], limits: ImageLimits = ImageLimits()) -> Image.Image:
    """``decode_image`` for a file on disk."""
    return decode_image(read_image_bytes(path, limits), limits)


def fit_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most ``max_side``, keeping the aspect ratio."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_image(image: Image.Image, fmt: str = "JPEG", quality: int = 92) -> bytes:
    """Encode to JPEG (photos for chat) or PNG (lossless files)."""
    fmt = fmt.upper()
    buffer = io.BytesIO()
    if fmt in ("JPEG", "JPG"):
        image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=True, subsampling=0)
    elif fmt == "PNG":
        image.save(buffer, "PNG", optimize=False, compress_level=6)
    else:
        raise ValueError(f"unsupported output format {fmt!r}; use JPEG or PNG")
    return buffer.getvalue()


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Output format from a file name's extension (``.jpg``/``.jpeg`` -> JPEG, ``.png`` -> PNG)."""
    suffix = Path(path).suffix.lower()
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
    if suffix not in formats:
        raise ImageError(f"output file must end in .png, .jpg or .jpeg, got '{Path(path).name}'")
    return formats[suffix]
