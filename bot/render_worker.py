"""``atelier-worker``: a render worker for ``BACKEND=redis``, one per GPU (or per CPU machine).

It loads the models once, then serves two saq queues from Redis: ``fast`` (AdaIN; up to
``FAST_BATCH_SIZE`` jobs taken at once and run as one batch) and ``hq`` (Gatys, one at a time),
each on its own thread, so a fast job never waits behind a long HQ one. For each job it:

1. claims it (``JobStore.claim``): a job cancelled while queued, or forgotten, is skipped;
2. touches the saq job every second (a worker that dies stops touching it: another worker's sweep
   retries the job within seconds) and watches the job's cancel key, which sets the render's
   ``CancelToken`` (an HQ render stops at its next step and may keep its best image);
3. renders, stores the PNG, and adds the final event to the results stream for a front end.

SIGTERM drains: no new jobs are taken, running ones get ``SHUTDOWN_GRACE_S``; any still running are
handed back to the queue for another worker. See docs/scale-out.md for why saq.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from PIL import Image
from saq import Worker

from bot import redis_keys as keys
from bot.app import configure_logging
from bot.config import Settings
from bot.health import beat_forever, heartbeat_path
from bot.jobs import JobEvent, RenderJob, blended_duration_s, render_deadline_s
from bot.redis_jobs import MAX_ATTEMPTS, JobStore, connect, make_queues
from bot.tasks import cancel_and_wait
from bot.worker import decode_pictures, failure_of, resolve_factory, throttled
from nst_core.control import CancelToken, Progress, Rendered
from nst_core.cpu import usable_cpu_cores
from nst_core.device import resolve_device
from nst_core.errors import ModelFileError
from nst_core.images import ImageLimits, encode_image
from nst_core.memory import keep_freed_memory
from nst_core.options import RenderOptions

logger = logging.getLogger(__name__)
TOUCH_EVERY_S = 1.0
SWEEP_EVERY_S = 1
CANCEL_POLL_S = 0.2  # a cancel reaches a running job within this
BATCH_WINDOW_S = 0.02  # fast jobs taken together arrive within this of each other
GPU_BATCH = 8
SHUTDOWN_GRACE_S = 20


class FastBatcher:
    """Fast jobs that arrive together are rendered as one batch (``Engine.render_batch``), on one thread."""

    def __init__(self, engine: Any, size: int) -> None:
        self.engine, self.size = engine, size
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="fast")
        self._waiting: list[tuple[tuple, asyncio.Future]] = []
        self._wake = asyncio.Event()

    async def render(
        self, content: Image.Image, styles: list[Image.Image], options: RenderOptions
    ) -> Rendered:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(((content, styles, options), future))
        self._wake.set()
        return await future

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self.size > 1:
                await asyncio.sleep(BATCH_WINDOW_S)
            batch, self._waiting = self._waiting[: self.size], self._waiting[self.size :]
            if not self._waiting:
                self._wake.clear()
            try:
                results = await loop.run_in_executor(
                    self.thread, self._render, [request for request, _ in batch]
                )
            except Exception as exc:  # never lose a batch's futures
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _render(self, requests: list[tuple]) -> list[Rendered | Exception]:
        """The batch at once; if it fails, each job alone, so one bad job fails only itself."""
        try:
            return self.engine.render_batch(requests)
        except Exception:
            logger.warning(
                "a batch of %d failed; rendering its jobs one by one", len(requests), exc_info=True
            )
        results: list[Rendered | Exception] = []
        for request in requests:
            try:
                results.append(self.engine.render_batch([request])[0])
            except Exception as exc:
                results.append(exc)
        return results


class RenderWorker:
    """The saq job function and what it needs: models, limits, the job store, the two render threads."""

    def __init__(self, settings: Settings, engine: Any, store: JobStore, batch_size: int) -> None:
        self.settings, self.engine, self.store = settings, engine, store
        self.limits = ImageLimits(max_bytes=settings.max_download_bytes, max_pixels=settings.max_pixels)
        self.batcher = FastBatcher(engine, batch_size)
        self.hq_thread = ThreadPoolExecutor(1, thread_name_prefix="hq")

    async def render(self, ctx: dict, *, user_id: int, job_id: str) -> None:
        """The saq function: claim, render while watching for a cancel, publish the final event."""
        claimed = await self.store.claim(user_id, job_id)
        if claimed is None:
            return  # cancelled while queued, forgotten, or already finished
        job, attempt = claimed
        logger.info("rendering job %s for user %d (attempt %d)", job_id, user_id, attempt)
        if attempt > 1:
            await self.store.redis.hincrby(keys.COUNTS, "retried")
        if attempt > MAX_ATTEMPTS:
            await self._finish(job, JobEvent("failed", job, failure="crashed"), None)
            return
        started_at = time.time()
        await self.store.publish_progress(job, "started", Progress(0, 0, 0.0, 0.0))
        token, keep = CancelToken(), asyncio.Event()
        async with self._watching(ctx["job"], job, token, keep):
            try:
                event, png = await asyncio.wait_for(
                    self._render(job, token, keep), render_deadline_s(job, self.settings)
                )
            except TimeoutError:
                logger.critical("job %s overran its deadline; this worker exits for a fresh one", job_id)
                await self._finish(job, JobEvent("failed", job, failure="timed_out"), None)
                os._exit(75)  # the render thread cannot be stopped; the supervisor starts a new worker
        if event.kind == "done":
            await self._record_duration(job.kind, time.time() - started_at)
        await self._finish(job, event, png)

    @contextlib.asynccontextmanager
    async def _watching(
        self, saq_job: Any, job: RenderJob, token: CancelToken, keep: asyncio.Event
    ) -> AsyncIterator[None]:
        async def touch() -> None:
            while True:
                await saq_job.update()
                await asyncio.sleep(TOUCH_EVERY_S)

        async def watch_cancel() -> None:
            while (choice := await self.store.cancel_request(job.user_id, job.job_id)) is None:
                await asyncio.sleep(CANCEL_POLL_S)
            if choice:
                keep.set()
            token.cancel()

        tasks = [asyncio.create_task(touch()), asyncio.create_task(watch_cancel())]
        try:
            yield
        finally:
            token.cancel()  # the job is over, or its task was cancelled (an abort, a drain): stop rendering
            await cancel_and_wait(tasks)

    async def _render(
        self, job: RenderJob, token: CancelToken, keep: asyncio.Event
    ) -> tuple[JobEvent, bytes | None]:
        loop = asyncio.get_running_loop()
        thread = self.hq_thread if job.options.hq else self.batcher.thread

        def report(progress: Progress) -> None:
            publish = self.store.publish_progress(job, "progress", progress)
            asyncio.run_coroutine_threadsafe(publish, loop)

        try:
            blobs = await self.store.pictures(job)
            side = job.options.max_side
            content, styles = await loop.run_in_executor(thread, decode_pictures, blobs, self.limits, side)
            if job.options.hq:
                progress = throttled(report, self.settings.progress_edit_interval_s)
                rendered = await loop.run_in_executor(
                    self.hq_thread, lambda: self.engine.render(content, styles, job.options, progress, token)
                )
            else:
                rendered = await self.batcher.render(content, styles, job.options)
        except Exception as exc:
            failed = failure_of(job.job_id, exc)
            return JobEvent("failed", job, failure=failed.failure, detail=failed.detail), None
        stopped = "cancelled" if token.cancelled else rendered.stopped  # a fast render ignores the token
        if stopped == "cancelled" and not keep.is_set():
            return JobEvent("cancelled", job), None
        png = await loop.run_in_executor(thread, encode_image, rendered.image, "PNG")
        kind = "cancelled" if stopped == "cancelled" else "done"
        return JobEvent(kind, job, size=rendered.image.size, stopped=stopped), png

    async def _finish(self, job: RenderJob, event: JobEvent, png: bytes | None) -> None:
        """Publish once: only the attempt that moves the job from running to finished does."""
        if not await self.store.transition(job.user_id, job.job_id, "running", "finished"):
            return  # forgotten meanwhile
        if png is not None:
            await self.store.put_output(job, png)
        await self.store.publish_result(job, event)

    async def _record_duration(self, kind: str, seconds: float) -> None:
        previous = await self.store.redis.hget(keys.DURATIONS, kind)
        estimate = seconds if previous is None else blended_duration_s(float(previous), seconds)
        await self.store.redis.hset(keys.DURATIONS, kind, estimate)


def batch_size_for(settings: Settings) -> int:
    """``FAST_BATCH_SIZE``, else by device: a batch pays off on a GPU, while on a CPU batches of 8 and
    32 were measured 12-14 % slower per image than one at a time (benchmarks/RESULTS.md)."""
    if settings.fast_batch_size is not None:
        return settings.fast_batch_size
    return GPU_BATCH if resolve_device(settings.device).type == "cuda" else 1


async def serve(settings: Settings) -> None:
    """Load the models, then serve both queues until SIGTERM or SIGINT, then drain."""
    engine = await asyncio.to_thread(resolve_factory(settings.engine_factory), settings.engine_spec())
    redis = connect(settings.redis_url)
    batch_size = batch_size_for(settings)
    renderer = RenderWorker(settings, engine, JobStore(redis), batch_size)
    queues = make_queues(settings.redis_url)
    common = {
        "timers": {"sweep": SWEEP_EVERY_S},
        "dequeue_timeout": 1,
        "shutdown_grace_period_s": SHUTDOWN_GRACE_S,
    }
    workers = [
        Worker(queues["fast"], [("render", renderer.render)], concurrency=batch_size, **common),
        Worker(queues["hq"], [("render", renderer.render)], concurrency=1, **common),
    ]
    loop = asyncio.get_running_loop()
    for worker in workers:
        worker.SIGNALS = []  # one handler below stops both
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, lambda: [worker.event.set() for worker in workers])
    helpers = [
        asyncio.create_task(renderer.batcher.run_forever()),
        asyncio.create_task(beat_forever(heartbeat_path(settings.data_dir))),
    ]
    logger.info("render worker ready on %s (fast batches of up to %d)", settings.device, batch_size)
    try:
        await asyncio.gather(*(worker.start() for worker in workers))
    finally:
        await cancel_and_wait(helpers)
        await redis.aclose()
        logger.info("render worker stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atelier-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: DEVICE from the settings)")
    args = parser.parse_args(argv)
    overrides = {"device": args.device} if args.device else {}
    settings = Settings(**overrides)
    configure_logging(settings)
    keep_freed_memory()
    if settings.device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(usable_cpu_cores())
    try:
        asyncio.run(serve(settings))
    except ModelFileError as exc:
        print(f"The render worker cannot load the models: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
