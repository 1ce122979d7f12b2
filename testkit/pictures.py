"""Pictures with no download: scikit-image's bundled photos, a generated "artwork", small random ones."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "gravel", "brick")


def sample_image(name: str) -> Image.Image:
    """One of skimage.data's pictures as an RGB Pillow image."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def stained_glass(size: int = 384, cells: int = 70, seed: int = 0) -> Image.Image:
    """A bold, flat-coloured mosaic with dark leading: a style whose transfer is easy to see."""
    rng = np.random.default_rng(seed)
    palette = np.array(
        [
            (214, 40, 40),
            (247, 127, 0),
            (252, 191, 73),
            (42, 157, 143),
            (38, 70, 83),
            (106, 76, 147),
            (234, 226, 183),
        ]
    )
    points = rng.uniform(0, size, (cells, 2))
    yx = np.stack(np.mgrid[:size, :size], axis=-1).reshape(-1, 1, 2)
    labels = ((yx - points[None]) ** 2).sum(-1).argmin(1).reshape(size, size)
    image = palette[rng.integers(0, len(palette), cells)][labels].astype(np.float32)
    image += rng.normal(0, 12, image.shape)  # painterly grain
    edges = (np.diff(labels, axis=0, prepend=labels[:1]) != 0) | (
        np.diff(labels, axis=1, prepend=labels[:, :1]) != 0
    )
    picture = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    leading = Image.fromarray((edges * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(5))
    picture.paste((25, 20, 20), mask=leading)
    return picture


def picture(
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    corner: tuple[int, int, int] | None = None,
    fmt: str = "PNG",
) -> bytes:
    """A smooth random picture; ``corner`` paints the top-left pixel (the stub engine's fault trigger)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8))
    image = small.resize((width, height), Image.Resampling.BICUBIC)
    if corner is not None:
        image.putpixel((0, 0), corner)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_samples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLES:
        path = folder / f"{name}.png"
        if not path.exists():
            sample_image(name).save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "out/samples")):
        print(written)
