"""The job interface between handlers and an inference backend.

Handlers build a ``RenderJob`` and ``submit`` it; the backend reports what happens through the
``EventSink`` that its notifier factory makes for each job. Because the sink is made from the job
itself (not captured at submit time), a backend can keep jobs across restarts, or run them in
another process or on another machine (a Redis backend), without the handlers changing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nst_core.options import RenderOptions

EventKind = Literal["queued", "started", "progress", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs: image bytes (not file ids) so workers never talk to Telegram."""

    user_id: int
    chat_id: int
    content: bytes
    styles: tuple[bytes, ...]
    options: RenderOptions
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    meta: dict = field(default_factory=dict)  # handler's own bookkeeping (e.g. progress message id)

    @property
    def kind(self) -> str:
        return "hq" if self.options.hq else "fast"


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job: RenderJob
    position: int = 0  # queued: jobs ahead of this one
    eta_s: float | None = None
    fraction: float = 0.0  # progress: share of the work done
    image: bytes | None = None  # done / cancelled-with-result: PNG bytes
    size: tuple[int, int] | None = None
    message: str = ""  # failed: a sentence for the user


EventSink = Callable[[JobEvent], Awaitable[None]]
NotifierFactory = Callable[[RenderJob], EventSink]


@dataclass(frozen=True)
class BackendStats:
    """What an admin's /stats shows: enough to see whether the painters keep up."""

    queued: int
    running: int
    workers: int
    done: int
    failed: int
    restarts: int


class BackendError(Exception):
    """A job was refused; ``str(exc)`` is a sentence for the user."""


class QueueFull(BackendError):
    pass


class AlreadyBusy(BackendError):
    pass


class JobBackend(Protocol):
    """What handlers may rely on. ``EmbeddedPool`` is the in-process implementation."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, job: RenderJob) -> int:
        """Queue ``job``; returns how many jobs are ahead of it. Raises ``BackendError``."""
        ...

    async def cancel(self, user_id: int, keep_partial: bool = False) -> bool:
        """Cancel the user's job; True if there was one."""
        ...

    def active_job(self, user_id: int) -> RenderJob | None: ...

    def estimate_wait_s(self, position: int, kind: str) -> float: ...

    def stats(self) -> BackendStats: ...
