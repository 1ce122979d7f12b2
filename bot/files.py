"""The pictures the bot keeps on disk, and for how long.

- ``pictures/<user>/<unique id>``: what users sent, so re-rendering (another alpha, HQ, colours)
  needs no new download. Per user, so ``/forget`` deletes exactly theirs.
- ``jobs/<job id>/``: a queued job's own hard links to its pictures (a sweep or ``/forget`` cannot
  pull them from under a queued job) and the worker's ``result.png``. Removed once delivered.
- ``results/<user>/<job id>.png``: full-size results for the "Full-size file" button.

Everything is written to a temporary name and renamed, so a crash never leaves half a file.
Pictures and results older than the retention period are swept away.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


class FileStore:
    def __init__(self, data_dir: Path, retention_s: float) -> None:
        self.pictures = data_dir / "pictures"
        self.jobs = data_dir / "jobs"
        self.results = data_dir / "results"
        self.retention_s = retention_s

    def picture_path(self, user_id: int, unique_id: str) -> Path:
        return self.pictures / str(user_id) / SAFE_NAME.sub("_", unique_id)

    def result_path(self, user_id: int, job_id: str) -> Path:
        return self.results / str(user_id) / f"{SAFE_NAME.sub('_', job_id)}.png"

    def stage_job(self, job_id: str, content: Path, styles: list[Path]) -> tuple[Path, tuple[Path, ...]]:
        """Give a job its own links to its pictures."""
        folder = self.jobs / job_id
        folder.mkdir(parents=True, exist_ok=True)
        targets = [folder / "content", *(folder / f"style{index}" for index in range(len(styles)))]
        for source, target in zip([content, *styles], targets, strict=True):
            _link_or_copy(source, target)
        return targets[0], tuple(targets[1:])

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.jobs / job_id, ignore_errors=True)

    def forget_user(self, user_id: int) -> None:
        for root in (self.pictures, self.results):
            shutil.rmtree(root / str(user_id), ignore_errors=True)

    def sweep(self, now: float | None = None) -> int:
        """Delete pictures and results older than the retention period; returns how many."""
        cutoff = (now or time.time()) - self.retention_s
        removed = 0
        for root in (self.pictures, self.results):
            for path in root.glob("*/*"):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed
