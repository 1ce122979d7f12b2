"""Scale-out under load: many users at once against two webhook front ends, Redis and 1 or 2 workers.

Everything runs as in production, each part its own process (``testkit.cluster``), against the Bot
API emulator; only the machine is shared. Three measurements:

1. **Load**: ``--users`` users send a photo and a style at the same moment, while a probe user sends
   /help every 100 ms. Per worker count and model: throughput (results per second, from the first
   photo sent to the last result), time to result per user (from their style photo to their result,
   p50/p95), and the /help reply time meanwhile (p50/p95). Models: ``stub``, a render that sleeps
   ``STUB_RENDER_S`` per image (the time a GPU would take, leaving the CPU free: what is measured is
   the bot, Redis and the queue), and ``real``, our AdaIN model on this machine's CPU.
2. **One job, distributed vs embedded**: one user, jobs one after another, instant stub renders:
   the time from the style photo to the result with the embedded pool (one process) and with the
   Redis backend (front end → Redis → worker → results stream → front end). The difference is the
   distributed path's overhead.
3. **AdaIN micro-batches**: the worker's render path in one process (``Engine.render_batch``, real
   model) with batches of 1, 8 and 32 jobs of the same size, each with its own style: images per second.

    python -m benchmarks.scale_load [--users 50] [--models stub,real] [--workers 1,2] [--batches 1,8,32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bot_load import percentile, probe_help
from benchmarks.machine import describe_cpu
from nst_core.images import decode_image
from nst_core.options import EngineSpec
from testkit.balancer import Balancer
from testkit.cluster import Cluster
from testkit.emulator import BotAPIEmulator, EmulatedUser
from testkit.local_run import BotProcess
from testkit.pictures import picture
from testkit.redis_server import free_port
from testkit.stubs import StubEngine

STUB_RENDER_S = 0.1
CONTENT_SIZE = (320, 240)
STYLE_SIDE = 128
ONE_JOB_REPEATS = 15
MODELS = {"stub": "benchmarks.scale_load:load_sleeping_stub", "real": "bot.worker:load_engine"}
INSTANT_STUB = "testkit.stubs:load_stub_engine"
ASK_STYLE = "Now send the <b>style</b>"
LOAD_SETTINGS = {"flood_messages": 100_000, "progress_edit_interval_s": 1.0, "fast_timeout_s": 600.0}


class SleepingStub(StubEngine):
    """A model whose time is spent off this CPU, as on a GPU: ``STUB_RENDER_S`` an image, no batching gain."""

    def render_batch(self, requests: list) -> list:
        time.sleep(STUB_RENDER_S * len(requests))
        return super().render_batch(requests)


def load_sleeping_stub(spec: EngineSpec) -> SleepingStub:
    return SleepingStub()


# ---------------------------------------------------------------------------- 1. load
def crowd_load(emulator: BotAPIEmulator, users: int) -> dict[str, float]:
    """Everyone sends a pair at once; waits for every result while probing /help."""
    crowd = [emulator.user(20_000 + i, f"user{i}") for i in range(users)]
    pairs = [
        (picture(*CONTENT_SIZE, seed=2 * i), picture(STYLE_SIDE, STYLE_SIDE, seed=2 * i + 1))
        for i in range(users)
    ]
    prober, stop, latencies = emulator.user(19_999, "probe"), threading.Event(), []
    probe = threading.Thread(target=probe_help, args=(prober, stop, latencies), daemon=True)
    probe.start()
    started, style_sent = time.monotonic(), {}
    for user, (content, style) in zip(crowd, pairs, strict=True):
        user.send_photo(content)
        user.send_photo(style)
        style_sent[user.user_id] = time.monotonic()
    emulator.wait_for(lambda: all(user.photos() for user in crowd), timeout=900, poll=0.05)
    stop.set()
    probe.join()
    finished = {user.user_id: user.photos()[0].at for user in crowd}
    waits = [finished[user_id] - sent for user_id, sent in style_sent.items()]
    return {
        "throughput_per_s": users / (max(finished.values()) - started),
        "result_p50_s": percentile(waits, 50),
        "result_p95_s": percentile(waits, 95),
        "help_p50_ms": 1000 * percentile(latencies, 50),
        "help_p95_ms": 1000 * percentile(latencies, 95),
    }


def load_run(model: str, workers: int, users: int) -> dict[str, float]:
    with BotAPIEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        settings = LOAD_SETTINGS | {"engine_factory": MODELS[model], "queue_limit": users + 1}
        cluster = Cluster(Path(folder), emulator, **settings)
        try:
            cluster.start(workers)
            return crowd_load(emulator, users)
        finally:
            cluster.stop()


# ---------------------------------------------------------------------------- 2. one job
def one_job_times(user: EmulatedUser, repeats: int) -> list[float]:
    """Seconds from the style photo to the result, for jobs one after another (the first is a warm-up)."""
    times = []
    for index in range(repeats + 1):
        user.send_photo(picture(*CONTENT_SIZE, seed=index))
        user.api.wait_for(lambda done=index: sum(ASK_STYLE in text for text in user.texts()) > done)
        sent = time.monotonic()
        user.send_photo(picture(STYLE_SIDE, STYLE_SIDE, seed=1000 + index))
        photo = user.wait_photos(index + 1)[index]
        times.append(photo.at - sent)
    return times[1:]


def one_job_embedded(repeats: int) -> list[float]:
    """The embedded pool in one process, on the webhook behind the same balancer."""
    with BotAPIEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        port = free_port()
        balancer = Balancer([f"http://127.0.0.1:{port}"]).start()
        bot = BotProcess(
            emulator, Path(folder) / "bot", engine_factory=INSTANT_STUB, webhook_url=f"{balancer.url}/hook",
            webhook_listen="127.0.0.1", webhook_port=port, webhook_secret="one-job-secret", **LOAD_SETTINGS,
        )  # fmt: skip
        try:
            bot.wait_for_output("Atelier is running")
            return one_job_times(emulator.user(30_000), repeats)
        finally:
            bot.kill_group()
            balancer.stop()


def one_job_distributed(repeats: int) -> list[float]:
    with BotAPIEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        cluster = Cluster(Path(folder), emulator, front_ends=1, engine_factory=INSTANT_STUB, **LOAD_SETTINGS)
        try:
            cluster.start(workers=1)
            return one_job_times(emulator.user(30_001), repeats)
        finally:
            cluster.stop()


# ---------------------------------------------------------------------------- 3. micro-batches
def micro_batches(sizes: list[int], side: int) -> dict[int, float]:
    """Images per second of ``Engine.render_batch`` with each batch size (same content size, own styles)."""
    from nst_core.device import use_all_cpu_cores
    from nst_core.options import RenderOptions
    from nst_core.pipeline import Engine

    use_all_cpu_cores()
    engine = Engine.load()
    options = RenderOptions(max_side=side)
    largest = max(sizes)
    requests = [
        (
            decode_image(picture(side, side, seed=i)),
            [decode_image(picture(STYLE_SIDE, STYLE_SIDE, seed=500 + i))],
            options,
        )
        for i in range(largest)
    ]
    engine.render_batch(requests[:2])  # warm-up: kernels chosen, weights in cache
    rates = {}
    for size in sizes:
        started = time.perf_counter()
        engine.render_batch(requests[:size])
        rates[size] = size / (time.perf_counter() - started)
    return rates


# ---------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--models", default="stub,real")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--batch-side", type=int, default=256)
    args = parser.parse_args()
    print(f"machine: {describe_cpu()}")

    print(
        f"\n## Load: {args.users} users at once, 2 front ends (content {CONTENT_SIZE}, style {STYLE_SIDE}²)\n"
    )
    print(
        "| model | workers | results/s | time to result p50 (s) | p95 (s) | /help p50 (ms) | /help p95 (ms) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in args.models.split(","):
        for workers in map(int, args.workers.split(",")):
            r = load_run(model, workers, args.users)
            print(
                f"| {model} | {workers} | {r['throughput_per_s']:.2f} | {r['result_p50_s']:.2f} | "
                f"{r['result_p95_s']:.2f} | {r['help_p50_ms']:.0f} | {r['help_p95_ms']:.0f} |",
                flush=True,
            )

    print(f"\n## One job at a time ({ONE_JOB_REPEATS} jobs, instant stub): style photo → result\n")
    embedded, distributed = one_job_embedded(ONE_JOB_REPEATS), one_job_distributed(ONE_JOB_REPEATS)
    print("| backend | median (ms) | p95 (ms) |")
    print("| --- | ---: | ---: |")
    for name, times in (("embedded pool", embedded), ("Redis + worker", distributed)):
        print(f"| {name} | {1000 * statistics.median(times):.0f} | {1000 * percentile(times, 95):.0f} |")
    overhead = statistics.median(distributed) - statistics.median(embedded)
    print(f"\ndistributed path overhead (median): {1000 * overhead:+.0f} ms")

    sizes = [int(size) for size in args.batches.split(",")]
    print(f"\n## AdaIN micro-batches, real model, {args.batch_side}² contents, one style each\n")
    rates = micro_batches(sizes, args.batch_side)
    print("| batch | images/s | vs batch 1 |")
    print("| ---: | ---: | ---: |")
    for size, rate in rates.items():
        print(f"| {size} | {rate:.2f} | {rate / rates[sizes[0]]:.2f}× |")


if __name__ == "__main__":
    main()
