"""Liveness for container health checks: the bot's event loop touches a file, the check reads its age.

The file is touched by a task on the event loop itself, so a loop that is blocked or gone stops
touching it; a process that merely exists does not count as healthy.

    python -m bot.health     # exit 0 if the bot touched the file in the last STALE_AFTER_S seconds
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

BEAT_INTERVAL_S = 30.0
STALE_AFTER_S = 120.0


def heartbeat_path(data_dir: Path) -> Path:
    return data_dir / "heartbeat"


async def beat_forever(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path.touch()
        await asyncio.sleep(BEAT_INTERVAL_S)


def is_alive(path: Path, now: float | None = None) -> bool:
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age < STALE_AFTER_S


def main() -> int:
    from bot.config import Settings

    path = heartbeat_path(Settings().data_dir)
    if is_alive(path):
        return 0
    print(f"unhealthy: {path} is missing or older than {STALE_AFTER_S:.0f} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
