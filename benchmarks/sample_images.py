"""Write scikit-image's bundled sample pictures as PNGs (they ship in its wheel: no download)."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "gravel", "brick")


def sample_image(name: str) -> Image.Image:
    """One of skimage.data's pictures as an RGB Pillow image."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


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
