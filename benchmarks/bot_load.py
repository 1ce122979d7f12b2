"""Load scenario: many users send a pair at the same moment; does everyone get a result, and does the
bot stay responsive meanwhile?

The real bot (``python -m bot``: handlers, rate limiter, embedded pool with real worker processes)
runs as its own process, as in production, against the Bot API emulator, with the fast stub engine
from the tests, so what is measured is the bot, not the model.
While the pairs are processed, a probe user sends /help every 100 ms; the time to its reply is the
responsiveness figure (p50/p95).

    python -m benchmarks.bot_load [--users 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from testkit.emulator import BotAPIEmulator, EmulatedUser
from testkit.local_run import BotProcess
from testkit.pictures import picture

PROBE_INTERVAL_S = 0.1
TROUBLE = ("busy", "crashed", "went wrong", "took too long", "try again", "restarting")


def probe_help(user: EmulatedUser, stop: threading.Event, latencies: list[float]) -> None:
    """Send /help repeatedly; record the time until each reply appears."""
    while not stop.is_set():
        replies_before = len(user.texts())
        sent = time.monotonic()
        user.send_text("/help")
        user.api.wait_for(lambda before=replies_before: len(user.texts()) > before, timeout=60, poll=0.002)
        latencies.append(time.monotonic() - sent)
        stop.wait(PROBE_INTERVAL_S)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(users: int, workers: int) -> dict[str, float]:
    with BotAPIEmulator() as emulator, tempfile.TemporaryDirectory() as data_dir:
        bot = BotProcess(
            emulator, Path(data_dir) / "data", engine_factory="testkit.stubs:load_stub_engine",
            workers_per_device=workers, queue_limit=users, flood_messages=1000, progress_edit_interval_s=1.0,
        )  # fmt: skip
        try:
            bot.wait_ready(emulator)
            crowd = [emulator.user(10_000 + i, f"user{i}") for i in range(users)]
            pairs = [(picture(320, 240, seed=2 * i), picture(128, 128, seed=2 * i + 1)) for i in range(users)]
            prober, stop, latencies = emulator.user(9_999, "probe"), threading.Event(), []
            prober.send_text("/help")  # the first answer means the workers are up and polling runs
            prober.wait_text("/hq", timeout=120)
            probe = threading.Thread(target=probe_help, args=(prober, stop, latencies), daemon=True)
            probe.start()
            started = time.monotonic()
            for user, (content, style) in zip(crowd, pairs, strict=True):
                user.send_photo(content)
                user.send_photo(style)
            try:
                emulator.wait_for(lambda: all(user.photos() for user in crowd), timeout=120, poll=0.05)
            except TimeoutError:
                log_tail = bot.output()[-4000:]
                raise SystemExit(f"not every user got a result; the bot's log ends:\n{log_tail}") from None
            wall = time.monotonic() - started
            stop.set()
            probe.join()
            errors = sum(any(word in text.lower() for word in TROUBLE for text in u.texts()) for u in crowd)
        finally:
            bot.kill_group()
    return {
        "users": users,
        "results": sum(bool(u.photos()) for u in crowd),
        "users_with_errors": errors,
        "wall_s": wall,
        "help_probes": len(latencies),
        "help_p50_ms": 1000 * percentile(latencies, 50),
        "help_p95_ms": 1000 * percentile(latencies, 95),
        "help_max_ms": 1000 * max(latencies),
        "api_calls_per_user": sum(len(u.log()) for u in crowd) / users,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    report = run(args.users, args.workers)
    for key, value in report.items():
        print(f"{key:>18}: {value:.1f}" if isinstance(value, float) else f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
