"""The inference worker: a child process that owns the models and renders one job at a time.

A separate process (not a thread) so that a crash, an out-of-memory kill or a hang costs one job,
not the bot: the pool notices, tells the user, and starts a fresh worker. The messages it exchanges
with the pool are in ``bot.messages``; the result is written to the job's ``result_path`` (atomically).
Progress is throttled here, at the source: an HQ render reports every L-BFGS step (~500 per job), the
user sees one edit every few seconds, so only those few cross the pipe.

Workers ignore SIGINT and SIGTERM: Ctrl+C or a service manager signals the whole process group, and
the bot, not its workers, decides what happens to the jobs in flight (they are kept for the next start).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from PIL import Image

from bot.files import write_atomically
from bot.jobs import RenderJob
from bot.messages import Advanced, Failed, Finished, Ready, Started, Unable
from nst_core.control import CancelToken, Progress, ProgressCallback
from nst_core.errors import ImageError
from nst_core.images import ImageLimits, decode_image, encode_image
from nst_core.memory import keep_freed_memory
from nst_core.options import EngineSpec

logger = logging.getLogger(__name__)


def load_engine(spec: EngineSpec) -> Any:
    """Default engine factory: the real models, the default one loaded now, so that a missing weights
    file stops the start (not every job) and the first user does not wait for the loading."""
    from nst_core.pipeline import Engine

    engine = Engine.load(spec)
    engine.stylizer()
    return engine


def resolve_factory(path: str):
    """``"package.module:function"`` -> the function (tests plug in a fast stub engine this way)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def failure_of(job_id: str, exc: BaseException) -> Failed:
    """What kind of failure ``exc`` is; the detail is the engine's own sentence where it has one.
    An unexpected one is logged with its trace here, for every worker kind alike."""
    if isinstance(exc, ImageError):
        return Failed(job_id, "bad_picture", str(exc))
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return Failed(job_id, "out_of_memory")
    if isinstance(exc, ValueError):  # OptionsError included
        return Failed(job_id, "invalid_request", str(exc))
    logger.error("job %s failed", job_id, exc_info=exc)
    return Failed(job_id, "generic")


def decode_pictures(
    blobs: list[bytes], limits: ImageLimits, max_side: int
) -> tuple[Image.Image, list[Image.Image]]:
    """A job's content and styles, decoded at the size the render needs (the content comes first)."""
    content, *styles = [decode_image(blob, limits, max_side=max_side) for blob in blobs]
    return content, styles


def throttled(send: Callable[[Progress], None], interval_s: float) -> ProgressCallback:
    """A progress callback that passes on at most one report per ``interval_s``."""
    last = -float("inf")

    def report(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval_s:
            last = now
            send(progress)

    return report


class _CancelListener(threading.Thread):
    """Reads cancel requests while the main thread renders.

    A cancel for a job the worker has not received yet (it was sent the moment the user asked) is
    remembered and applied when that job begins.
    """

    EARLY_CANCELS_KEPT = 64

    def __init__(self, control: Connection) -> None:
        super().__init__(daemon=True)
        self.control = control
        self.lock = threading.Lock()
        self.job_id: str | None = None
        self.token = CancelToken()
        self.keep_partial = False
        self._early: OrderedDict[str, bool] = OrderedDict()

    def begin(self, job_id: str) -> CancelToken:
        with self.lock:
            self.job_id, self.token, self.keep_partial = job_id, CancelToken(), False
            if job_id in self._early:
                self.keep_partial = self._early.pop(job_id)
                self.token.cancel()
            return self.token

    def run(self) -> None:
        while True:
            try:
                request = self.control.recv()
            except (EOFError, OSError):
                return
            with self.lock:
                if request.job_id == self.job_id:
                    self.keep_partial = request.keep_partial
                    self.token.cancel()
                else:
                    self._early[request.job_id] = request.keep_partial
                    while len(self._early) > self.EARLY_CANCELS_KEPT:
                        self._early.popitem(last=False)


@dataclass
class _Painter:
    """What one worker process holds while it serves jobs."""

    engine: Any
    limits: ImageLimits
    listener: _CancelListener
    events: Connection
    progress_interval_s: float

    def serve(self, job: RenderJob) -> None:
        token = self.listener.begin(job.job_id)
        self.events.send(Started(job.job_id))
        if token.cancelled:  # cancelled before it got here
            self.events.send(Finished(job.job_id, "cancelled", None))
            return
        try:
            self._render(job, token)
        except Exception as exc:  # report, never die on a bad job
            self.events.send(failure_of(job.job_id, exc))

    def _render(self, job: RenderJob, token: CancelToken) -> None:
        blobs = [path.read_bytes() for path in (job.content, *job.styles)]
        content, styles = decode_pictures(blobs, self.limits, job.options.max_side)
        report = throttled(
            lambda progress: self.events.send(Advanced(job.job_id, progress.fraction, progress.seconds_left)),
            self.progress_interval_s,
        )
        rendered = self.engine.render(content, styles, job.options, progress=report, cancel=token)
        stopped = "cancelled" if token.cancelled else rendered.stopped  # a fast render ignores the token
        keep = stopped != "cancelled" or self.listener.keep_partial
        if keep:
            write_atomically(job.result_path, encode_image(rendered.image, "PNG"))
        self.events.send(Finished(job.job_id, stopped, rendered.image.size if keep else None))


def worker_main(jobs: Connection, control: Connection, events: Connection, config: dict) -> None:
    """Entry point of the child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    keep_freed_memory()
    import torch

    threads = config.get("threads")
    if threads:
        torch.set_num_threads(threads)
    try:
        engine = resolve_factory(config["engine_factory"])(config["engine"])
    except Exception as exc:
        events.send(Unable(str(exc)))
        return
    limits = ImageLimits(max_bytes=config["max_bytes"], max_pixels=config["max_pixels"])
    listener = _CancelListener(control)
    listener.start()
    painter = _Painter(engine, limits, listener, events, config["progress_interval_s"])
    events.send(Ready(os.getpid()))
    while (job := jobs.recv()) is not None:
        painter.serve(job)
