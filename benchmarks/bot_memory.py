"""Memory of the bot process while 6 users send 40 MP pictures at once.

The bot runs as its own process (``python -m bot``) against the Bot API emulator, with the fast stub
engine in its workers: what is measured is the bot process alone (its peak resident set, ``VmHWM``),
not the workers, which decode the pictures at the size the render needs. Half the users send a
40 MP JPEG, half a 40 MP 16-bit PNG (77 kB on the wire: the cheapest way to ask for a lot of memory).

    python -m benchmarks.bot_memory [--users 6]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from testkit.emulator import BotAPIEmulator
from testkit.local_run import BotProcess

GOAL_MIB = 300


def big_jpeg() -> bytes:
    """7296×5472 (just under the 40 MP limit), smooth so that it stays under Telegram's 20 MB."""
    ramp = np.linspace(0, 255, 7296, dtype=np.uint8)
    rows = np.broadcast_to(ramp, (5472, 7296))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([rows, rows[::-1], np.full_like(rows, 90)], axis=2)).save(buffer, "JPEG")
    return buffer.getvalue()


def big_png16() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((6300, 6300), dtype=np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def small_style() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def run(users: int) -> dict[str, float]:
    pictures = [big_jpeg(), big_png16()]
    with BotAPIEmulator() as emulator, tempfile.TemporaryDirectory() as data_dir:
        bot = BotProcess(
            emulator, Path(data_dir) / "data", engine_factory="testkit.stubs:load_stub_engine",
            workers_per_device=2, queue_limit=users, flood_messages=1000,
        )  # fmt: skip
        try:
            bot.wait_ready(emulator)
            idle = peak_rss_mib(bot.process.pid)
            crowd = [emulator.user(20_000 + i) for i in range(users)]
            started = time.monotonic()
            for i, user in enumerate(crowd):
                kind = ("jpg", "jpeg") if i % 2 == 0 else ("png", "png")
                user.send_document(pictures[i % 2], f"big{i}.{kind[0]}", f"image/{kind[1]}")
            for user in crowd:
                user.send_photo(small_style())
            try:
                emulator.wait_for(lambda: all(user.photos() for user in crowd), timeout=300, poll=0.1)
            except TimeoutError:
                replies = {user.user_id: user.texts() for user in crowd if not user.photos()}
                raise SystemExit(f"not every user got a result; what they were told: {replies}") from None
            elapsed = time.monotonic() - started
            peak = peak_rss_mib(bot.process.pid)
        finally:
            bot.kill_group()
    return {"users": users, "idle_mib": idle, "peak_mib": peak, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=6)
    result = run(parser.parse_args().users)
    verdict = "met" if result["peak_mib"] < GOAL_MIB else "NOT met"
    print(
        f"bot process: idle {result['idle_mib']:.0f} MiB, peak {result['peak_mib']:.0f} MiB while "
        f"{result['users']} users sent 40 MP pictures (all results in {result['seconds']:.1f} s); "
        f"goal < {GOAL_MIB} MiB {verdict}"
    )


if __name__ == "__main__":
    main()
