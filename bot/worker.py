"""The inference worker: a child process that owns the models and renders one job at a time.

A separate process (not a thread) so that a crash, an out-of-memory kill or a hang costs one job,
not the bot: the pool notices, tells the user, and starts a fresh worker.

Protocol over three pipes. Pool → worker (jobs): ``RenderJob`` or ``None`` (exit). Pool → worker
(control): ``("cancel", job_id, keep_partial)``, which may arrive before the job itself. Worker → pool:
``("ready",)``, ``("started", id)``, ``("progress", id, fraction)``, ``("done", id, size)``,
``("cancelled", id, kept, size | None)``, ``("failed", id, message)``. Results are written to the
job's ``result_path`` (atomically), not sent through the pipe.

Workers ignore SIGINT and SIGTERM: Ctrl+C or a service manager signals the whole process group, and
the bot, not its workers, decides what happens to the jobs in flight (they are kept for the next start).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import traceback
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from bot import texts
from bot.files import write_atomically
from nst_core.control import CancelToken
from nst_core.errors import ImageError, NSTError
from nst_core.images import ImageLimits, decode_image, encode_image

logger = logging.getLogger(__name__)


def load_engine(device: str, decoder_path: str | None, vgg_path: str | None) -> Any:
    """Default engine factory: the real models."""
    from nst_core.pipeline import Engine

    return Engine.load(device=device, decoder_path=decoder_path, vgg_path=vgg_path)


def resolve_factory(path: str):
    """``"package.module:function"`` -> the function (tests plug in a fast stub engine this way)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def failure_message(exc: BaseException) -> str:
    """A sentence for the user; details go to the log only."""
    if isinstance(exc, NSTError):
        return f"I couldn't use that picture: {exc}." if isinstance(exc, ImageError) else str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return texts.OUT_OF_MEMORY
    if isinstance(exc, ValueError):
        return f"I couldn't do that: {exc}."
    return texts.GENERIC_FAILURE


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
                _, job_id, keep = self.control.recv()
            except (EOFError, OSError):
                return
            with self.lock:
                if job_id == self.job_id:
                    self.keep_partial = keep
                    self.token.cancel()
                else:
                    self._early[job_id] = keep
                    while len(self._early) > self.EARLY_CANCELS_KEPT:
                        self._early.popitem(last=False)


def worker_main(jobs: Connection, control: Connection, events: Connection, config: dict) -> None:
    """Entry point of the child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    threads = config.get("threads")
    if threads:
        torch.set_num_threads(threads)
    engine = resolve_factory(config["engine_factory"])(
        config["device"], config.get("decoder"), config.get("vgg")
    )
    limits = ImageLimits(max_bytes=config["max_bytes"], max_pixels=config["max_pixels"])
    listener = _CancelListener(control)
    listener.start()
    events.send(("ready", os.getpid()))
    while True:
        job = jobs.recv()
        if job is None:
            return
        token = listener.begin(job.job_id)
        events.send(("started", job.job_id))
        if token.cancelled:  # cancelled before it got here
            events.send(("cancelled", job.job_id, False, None))
            continue
        try:
            side = job.options.max_side
            content = decode_image(job.content.read_bytes(), limits, max_side=side)
            styles = [decode_image(style.read_bytes(), limits, max_side=side) for style in job.styles]
            image = engine.render(
                content, styles, job.options,
                progress=lambda p, job_id=job.job_id: events.send(("progress", job_id, p.fraction)),
                cancel=token,
            )  # fmt: skip
            keep = not token.cancelled or listener.keep_partial
            if keep:
                write_atomically(job.result_path, encode_image(image, "PNG"))
            if token.cancelled:
                events.send(("cancelled", job.job_id, keep, image.size if keep else None))
            else:
                events.send(("done", job.job_id, image.size))
        except Exception as exc:  # report, never die on a bad job
            if not isinstance(exc, NSTError | ValueError):
                logger.error("job %s failed:\n%s", job.job_id, traceback.format_exc())
            events.send(("failed", job.job_id, failure_message(exc)))
