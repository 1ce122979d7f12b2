"""The job interface between handlers and an inference backend.

Handlers build a ``RenderJob`` and ``submit`` it; the backend reports what happens through the
``EventSink`` that its notifier factory makes for each job. Because the sink is made from the job
itself (not captured at submit time), a backend can keep jobs across restarts without the handlers
changing. A job names its pictures by path (files in its own folder) and by Telegram's
``file_unique_id`` (what a distributed backend names their blobs by), never holds their bytes, and
travels as a versioned JSON record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from bot.messages import Failure
from nst_core.control import StopReason
from nst_core.options import RenderOptions

if TYPE_CHECKING:
    from bot.config import Settings

EventKind = Literal["queued", "started", "progress", "done", "failed", "cancelled"]
Refusal = Literal["busy", "queue_full", "shutting_down", "painter_down"]
RECORD_VERSION = 2  # 1: before ``picture_ids``; still read


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs: picture files (not file ids) so workers never talk to Telegram."""

    user_id: int
    chat_id: int
    content: Path
    styles: tuple[Path, ...]
    options: RenderOptions
    job_id: str = field(default_factory=new_job_id)
    meta: dict = field(default_factory=dict)  # the status message id; attempts after lost workers
    picture_ids: tuple[str, ...] = ()  # Telegram's file_unique_id of the content, then of each style

    @property
    def kind(self) -> str:
        return "hq" if self.options.hq else "fast"

    @property
    def result_path(self) -> Path:
        """Where the worker writes the finished picture (PNG), beside the job's inputs."""
        return self.content.parent / "result.png"

    def to_record(self) -> dict:
        return {
            "v": RECORD_VERSION, "job_id": self.job_id, "user_id": self.user_id, "chat_id": self.chat_id,
            "content": str(self.content), "styles": [str(path) for path in self.styles],
            "options": asdict(self.options), "meta": self.meta, "picture_ids": list(self.picture_ids),
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: dict) -> RenderJob:
        if record.get("v") not in (1, RECORD_VERSION):
            raise ValueError(f"unknown job record version {record.get('v')!r}")
        return cls(
            user_id=record["user_id"], chat_id=record["chat_id"], content=Path(record["content"]),
            styles=tuple(Path(path) for path in record["styles"]),
            options=RenderOptions(**record["options"]), job_id=record["job_id"], meta=record["meta"],
            picture_ids=tuple(record.get("picture_ids", ())),
        )  # fmt: skip


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job: RenderJob
    position: int = 0  # queued: jobs ahead of this one
    eta_s: float | None = None
    fraction: float = 0.0  # progress: share of the work done
    image: Path | None = None  # done / cancelled-with-result: the PNG file
    size: tuple[int, int] | None = None
    stopped: StopReason = "done"  # done: finished, or stopped by the time budget with its best image
    failure: Failure = "generic"  # failed: why (worded by ``texts.failure``)
    detail: str = ""  # failed: the engine's sentence about a bad picture or request

    def outcome_record(self) -> str:
        """A final event without its job, for the journal (so a restart can deliver it)."""
        return json.dumps(
            {"kind": self.kind, "image": str(self.image) if self.image else None, "size": self.size,
             "stopped": self.stopped, "failure": self.failure, "detail": self.detail}
        )  # fmt: skip

    @classmethod
    def from_outcome(cls, job: RenderJob, text: str) -> JobEvent:
        data = json.loads(text)
        size = tuple(data["size"]) if data["size"] else None
        image = Path(data["image"]) if data["image"] else None
        return cls(
            data["kind"], job, image=image, size=size, stopped=data.get("stopped", "done"),
            failure=data.get("failure", "generic"), detail=data.get("detail", ""),
        )  # fmt: skip


def render_deadline_s(job: RenderJob, settings: Settings) -> float:
    """How long a render may run before it counts as hung: an HQ job's time budget plus a minute."""
    if job.options.hq:
        return (job.options.time_budget_s or settings.hq_time_budget_s) + 60.0
    return settings.fast_timeout_s


def initial_durations_s(settings: Settings) -> dict[str, float]:
    """What a render takes, per kind, before one has been timed (for the first ETAs)."""
    return {"fast": 5.0, "hq": settings.hq_time_budget_s / 2}


def blended_duration_s(previous: float, seconds: float) -> float:
    """The running estimate after one more render took ``seconds``: it follows recent renders."""
    return 0.7 * previous + 0.3 * seconds


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
    users: int  # with saved state: settings, or a conversation under way


class BackendError(Exception):
    """A job was refused, and why (worded by ``texts.refusal``)."""

    def __init__(self, refusal: Refusal, waiting: int = 0) -> None:
        super().__init__(refusal)
        self.refusal = refusal
        self.waiting = waiting  # queue_full: how many jobs wait


class JobBackend(Protocol):
    """What handlers may rely on: ``EmbeddedPool`` in process, ``RedisBackend`` across machines."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, job: RenderJob) -> int:
        """Queue ``job``; returns how many jobs are ahead of it. Raises ``BackendError``."""
        ...

    async def cancel(self, user_id: int, keep_partial: bool = False) -> bool:
        """Cancel the user's job, whenever the request arrives; True if there was one."""
        ...

    async def forget_user(self, user_id: int) -> None:
        """Drop the user's jobs silently: nothing more is sent or written for them."""
        ...

    async def active_job(self, user_id: int) -> RenderJob | None: ...

    async def keep_result(self, job: RenderJob, png: Path) -> None:
        """After delivery: keep the full-size PNG for the "Full-size file" button (retention period)."""
        ...

    async def kept_result(self, user_id: int, job_id: str) -> bytes | None:
        """The kept PNG, or None once it expired or the user said /forget."""
        ...

    async def stats(self) -> BackendStats: ...
