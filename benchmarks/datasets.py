"""Where the benchmarks find the team's datasets (``../shared/datasets``, never copied into the
repository), and their held-out files: the validation split that training never sees."""

from __future__ import annotations

from pathlib import Path

from nst_core.evaluate import images_in

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def held_out_files(folder: str, count: int) -> list[Path]:
    """The first ``count`` validation files of ``folder`` (``content`` or ``style``), in name order."""
    return images_in(DATASETS / folder, "val", count)
