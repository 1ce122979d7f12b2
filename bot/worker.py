"""The inference worker: a child process that owns the models and renders one job at a time.

A separate process (not a thread) so that a crash, an out-of-memory kill or a hang costs one job,
not the bot: the pool notices, tells the user, and starts a fresh worker.

Protocol over two pipes. Pool → worker (jobs): ``RenderJob`` or ``None`` (exit). Pool → worker
(control): ``("cancel", job_id, keep_partial)``. Worker → pool: ``("ready",)``,
``("started", id)``, ``("progress", id, fraction)``, ``("done", id, png, size)``,
``("cancelled", id, png | None, size | None)``, ``("failed", id, message)``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from nst_core.control import CancelToken
from nst_core.errors import ImageError, NSTError
from nst_core.images import ImageLimits, decode_image, encode_image

logger = logging.getLogger(__name__)
GENERIC_FAILURE = "Something went wrong while painting this one. Please try again, maybe with other pictures."
OUT_OF_MEMORY = "That was too big for me to paint (out of memory). Try a smaller size in /settings."


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
        return OUT_OF_MEMORY
    if isinstance(exc, ValueError):
        return f"I couldn't do that: {exc}."
    return GENERIC_FAILURE


class _CancelListener(threading.Thread):
    """Reads cancel requests while the main thread renders."""

    def __init__(self, control: Connection) -> None:
        super().__init__(daemon=True)
        self.control = control
        self.lock = threading.Lock()
        self.job_id: str | None = None
        self.token = CancelToken()
        self.keep_partial = False

    def begin(self, job_id: str) -> CancelToken:
        with self.lock:
            self.job_id, self.token, self.keep_partial = job_id, CancelToken(), False
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


def worker_main(jobs: Connection, control: Connection, events: Connection, config: dict) -> None:
    """Entry point of the child process."""
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
        try:
            content = decode_image(job.content, limits)
            styles = [decode_image(style, limits) for style in job.styles]
            image = engine.render(
                content, styles, job.options,
                progress=lambda p, job_id=job.job_id: events.send(("progress", job_id, p.fraction)),
                cancel=token,
            )  # fmt: skip
            png = encode_image(image, "PNG")
            if token.cancelled:
                kept = png if listener.keep_partial else None
                events.send(("cancelled", job.job_id, kept, image.size if kept else None))
            else:
                events.send(("done", job.job_id, png, image.size))
        except Exception as exc:  # report, never die on a bad job
            if not isinstance(exc, NSTError | ValueError):
                logger.error("job %s failed:\n%s", job.job_id, traceback.format_exc())
            events.send(("failed", job.job_id, failure_message(exc)))
