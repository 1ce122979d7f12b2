"""What the pool and its workers say to each other over their pipes, and how a job can fail.

Pool → worker: a ``RenderJob`` (or ``None``: exit) on the jobs pipe, ``Cancel`` on the control pipe
(it may arrive before the job itself). Worker → pool: ``Ready`` (or ``Unable``), then per job
``Started``, a few ``Advanced`` (throttled by the worker), and one ``Finished`` or ``Failed``. The pool
adds ``Exited`` itself when the worker's pipe closes. Results travel as files (the job's
``result_path``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nst_core.control import StopReason

# Why a job failed; only ``texts.failure`` words them. The worker reports the first four, the pool the rest.
Failure = Literal[
    "bad_picture", "invalid_request", "out_of_memory", "generic", "crashed", "timed_out", "painter_down"
]


@dataclass(frozen=True)
class Cancel:
    job_id: str
    keep_partial: bool  # an HQ job's best image so far is sent instead of nothing


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class Unable:
    """The worker could not load its engine (a weights file missing or broken) and exits."""

    reason: str


@dataclass(frozen=True)
class Started:
    job_id: str


@dataclass(frozen=True)
class Advanced:
    job_id: str
    fraction: float  # share of the work done
    seconds_left: float | None = None  # the engine's forecast


@dataclass(frozen=True)
class Finished:
    job_id: str
    stopped: StopReason
    size: tuple[int, int] | None  # None: cancelled and discarded, no result file


@dataclass(frozen=True)
class Failed:
    job_id: str
    failure: Failure
    detail: str = ""  # for bad pictures and refused requests: the engine's sentence about it


@dataclass(frozen=True)
class Exited:
    """The worker's pipe closed: it exited or was killed."""


WorkerMessage = Ready | Unable | Started | Advanced | Finished | Failed | Exited
