"""The embedded inference pool: a queue in the bot's event loop feeding worker processes.

- Handlers never run torch: the pool hands jobs to ``bot.worker`` processes over pipes and reads
  their events with ``loop.add_reader``, so the event loop never blocks.
- Each user has at most one active job; the queue has a cap; users learn their place and an ETA.
- A worker that dies (crash, OOM kill) or overruns its deadline (hang) is killed and replaced;
  its user gets a clear message and the other workers carry on.
- ``stop`` keeps queued jobs (and the ones it had to interrupt) in a file that ``start`` reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection

from bot.config import Settings
from bot.jobs import AlreadyBusy, BackendStats, EventSink, JobEvent, NotifierFactory, QueueFull, RenderJob
from bot.worker import worker_main

logger = logging.getLogger(__name__)
CRASHED = "The painter crashed while working on your picture. I've restarted it; please try again."
TIMED_OUT = "Your picture took too long and was stopped. Try a smaller size or fewer styles."
SHUTTING_DOWN = "I'm restarting right now; please send that again in a minute."
WORKER_START_TIMEOUT_S = 180.0


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    jobs: Connection
    control: Connection
    events: Connection
    inbox: asyncio.Queue


class EmbeddedPool:
    """``JobBackend`` running jobs in local worker processes (CUDA when present, else CPU)."""

    def __init__(self, settings: Settings, notifier: NotifierFactory) -> None:
        self.settings = settings
        self.notifier = notifier
        self._pending: deque[RenderJob] = deque()
        self._running: dict[str, RenderJob] = {}
        self._sinks: dict[str, EventSink] = {}
        self._job_available = asyncio.Event()
        self._slots: list[asyncio.Task] = []
        self._workers: dict[int, _Worker] = {}
        self._durations = {"fast": 5.0, "hq": settings.hq_time_budget_s / 2}
        self._closing = False
        self._delivering: set[asyncio.Task] = set()  # final events being sent to users
        self.restarts = 0
        self._finished = {"done": 0, "failed": 0}

    # ------------------------------------------------------------------ public API
    async def start(self) -> None:
        for position, job in enumerate(self._restore_pending()):
            await self._emit(
                JobEvent("queued", job, position=position, eta_s=self.estimate_wait_s(position, job.kind))
            )
        for slot in range(self.settings.workers_per_device):
            await self._spawn(slot)
            self._slots.append(asyncio.create_task(self._slot_loop(slot), name=f"pool-slot-{slot}"))

    async def submit(self, job: RenderJob) -> int:
        if self._closing:
            raise QueueFull(SHUTTING_DOWN)
        if self.active_job(job.user_id) is not None:
            raise AlreadyBusy("You already have a picture in progress. Wait for it, or /cancel it first.")
        if len(self._pending) >= self.settings.queue_limit:
            raise QueueFull(
                f"I'm very busy right now ({len(self._pending)} pictures waiting). "
                "Please try again in a minute."
            )
        return await self._enqueue(job)

    async def cancel(self, user_id: int, keep_partial: bool = False) -> bool:
        for job in list(self._pending):
            if job.user_id == user_id:
                self._pending.remove(job)
                await self._emit(JobEvent("cancelled", job))
                self._forget(job)
                return True
        for slot, worker in self._workers.items():
            job = self._running.get(str(slot))
            if job is not None and job.user_id == user_id:
                worker.control.send(("cancel", job.job_id, keep_partial))
                return True
        return False

    def active_job(self, user_id: int) -> RenderJob | None:
        for job in [*self._running.values(), *self._pending]:
            if job.user_id == user_id:
                return job
        return None

    def estimate_wait_s(self, position: int, kind: str) -> float:
        """Rough wait: queued jobs ahead plus half of each running one, over the workers, plus this job."""
        queued = list(self._pending)[: max(0, position - len(self._running))]
        ahead = sum(self._durations[j.kind] for j in queued)
        running = sum(self._durations[j.kind] for j in self._running.values()) / 2
        return (ahead + running) / max(1, len(self._slots)) + self._durations[kind]

    def stats(self) -> BackendStats:
        return BackendStats(
            queued=len(self._pending), running=len(self._running), workers=len(self._workers),
            done=self._finished["done"], failed=self._finished["failed"], restarts=self.restarts,
        )  # fmt: skip

    async def stop(self) -> None:
        """Finish what fits in the grace period; keep the rest for the next start."""
        self._closing = True
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        interrupted = list(self._running.values())
        kept = interrupted + list(self._pending)
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, *self._delivering, return_exceptions=True)
        for slot in list(self._workers):
            self._kill(slot)
        self._save_pending(kept)
        if kept:
            logger.info("kept %d job(s) for the next start", len(kept))

    # ------------------------------------------------------------------ queue
    async def _enqueue(self, job: RenderJob) -> int:
        self._sinks[job.job_id] = self.notifier(job)
        position = len(self._running) + len(self._pending)  # jobs ahead, the running ones included
        self._pending.append(job)
        self._job_available.set()
        await self._emit(
            JobEvent("queued", job, position=position, eta_s=self.estimate_wait_s(position, job.kind))
        )
        return position

    async def _next_job(self) -> RenderJob:
        while not self._pending:
            self._job_available.clear()
            await self._job_available.wait()
        return self._pending.popleft()

    def _forget(self, job: RenderJob) -> None:
        self._sinks.pop(job.job_id, None)

    async def _emit(self, event: JobEvent) -> None:
        sink = self._sinks.get(event.job.job_id)
        if sink is None:
            return
        try:
            await sink(event)
        except Exception:  # a failed Telegram call must not stop the pool
            logger.exception("delivering %s for job %s failed", event.kind, event.job.job_id)

    # ------------------------------------------------------------------ workers
    async def _spawn(self, slot: int) -> None:
        context = multiprocessing.get_context("spawn")
        jobs_out, jobs_in = context.Pipe(duplex=False)
        control_out, control_in = context.Pipe(duplex=False)
        events_out, events_in = context.Pipe(duplex=False)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        config = {
            "engine_factory": self.settings.engine_factory,
            "device": self.settings.device,
            "decoder": str(self.settings.decoder_path) if self.settings.decoder_path else None,
            "vgg": str(self.settings.vgg_path) if self.settings.vgg_path else None,
            "max_bytes": self.settings.max_download_bytes,
            "max_pixels": self.settings.max_pixels,
            "threads": max(1, cores // self.settings.workers_per_device),
        }
        process = context.Process(
            target=worker_main, args=(jobs_out, control_out, events_in, config),
            name=f"atelier-worker-{slot}", daemon=True,
        )  # fmt: skip
        process.start()
        for child_end in (jobs_out, control_out, events_in):
            child_end.close()  # so a dead child reads as EOF here
        inbox: asyncio.Queue = asyncio.Queue()
        worker = _Worker(process, jobs_in, control_in, events_out, inbox)
        asyncio.get_running_loop().add_reader(events_out.fileno(), self._read_events, worker)
        self._workers[slot] = worker
        message = await self._receive(worker, WORKER_START_TIMEOUT_S)
        if message is None or message[0] != "ready":
            self._kill(slot)
            raise RuntimeError(f"inference worker {slot} failed to start: {message}")
        logger.info("worker %d ready (pid %s)", slot, process.pid)

    def _read_events(self, worker: _Worker) -> None:
        try:
            message = worker.events.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(worker.events.fileno())
            message = ("exited",)
        worker.inbox.put_nowait(message)

    async def _receive(self, worker: _Worker, timeout: float) -> tuple | None:
        try:
            return await asyncio.wait_for(worker.inbox.get(), timeout)
        except TimeoutError:
            return None

    def _kill(self, slot: int) -> None:
        worker = self._workers.pop(slot, None)
        if worker is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(worker.events.fileno())
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        for connection in (worker.jobs, worker.control, worker.events):
            connection.close()

    async def _replace(self, slot: int) -> None:
        self._kill(slot)
        self.restarts += 1
        while not self._closing:
            try:
                await self._spawn(slot)
                return
            except RuntimeError:
                logger.exception("restarting worker %d failed; retrying", slot)
                await asyncio.sleep(5)

    # ------------------------------------------------------------------ running jobs
    def _deadline(self, job: RenderJob) -> float:
        if job.options.hq:
            return (job.options.time_budget_s or self.settings.hq_time_budget_s) + 60.0
        return self.settings.fast_timeout_s

    async def _slot_loop(self, slot: int) -> None:
        while True:
            job = await self._next_job()
            self._running[str(slot)] = job
            try:
                outcome, worker_lost = await self._execute(slot, job)
            except asyncio.CancelledError:
                raise  # stop(): the job stays in _running, so it is kept for the next start
            except Exception:
                logger.exception("slot %d failed running job %s", slot, job.job_id)
                outcome, worker_lost = JobEvent("failed", job, message=CRASHED), True
            # Finished: never kept for a restart. The user may send a new job while we deliver/restart.
            self._running.pop(str(slot), None)
            if outcome.kind in self._finished:
                self._finished[outcome.kind] += 1
            delivery = asyncio.create_task(self._emit(outcome))
            self._delivering.add(delivery)
            delivery.add_done_callback(self._delivering.discard)
            await asyncio.shield(delivery)  # stop() waits for it rather than losing a finished result
            self._forget(job)
            if worker_lost:
                await self._replace(slot)

    async def _execute(self, slot: int, job: RenderJob) -> tuple[JobEvent, bool]:
        """Run one job; returns its final event and whether the worker crashed or hung (replace it)."""
        worker = self._workers[slot]
        started = time.monotonic()
        deadline = started + self._deadline(job)
        await asyncio.to_thread(worker.jobs.send, job)
        while True:
            message = await self._receive(worker, max(0.0, deadline - time.monotonic()))
            if message is None:
                logger.error("job %s overran its deadline; killing worker %d", job.job_id, slot)
                return JobEvent("failed", job, message=TIMED_OUT), True
            kind = message[0]
            if kind == "exited":
                logger.error("worker %d died during job %s", slot, job.job_id)
                return JobEvent("failed", job, message=CRASHED), True
            if kind == "started":
                await self._emit(JobEvent("started", job))
            elif kind == "progress":
                await self._emit(JobEvent("progress", job, fraction=message[2]))
            elif kind == "done":
                elapsed = time.monotonic() - started
                self._durations[job.kind] = 0.7 * self._durations[job.kind] + 0.3 * elapsed
                return JobEvent("done", job, image=message[2], size=message[3]), False
            elif kind == "cancelled":
                return JobEvent("cancelled", job, image=message[2], size=message[3]), False
            elif kind == "failed":
                return JobEvent("failed", job, message=message[2]), False

    # ------------------------------------------------------------------ persistence of the queue
    def _save_pending(self, jobs: list[RenderJob]) -> None:
        path = self.settings.pending_jobs_path
        if not jobs:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(jobs))
        tmp.replace(path)

    def _restore_pending(self) -> list[RenderJob]:
        path = self.settings.pending_jobs_path
        if not path.exists():
            return []
        try:
            jobs = pickle.loads(path.read_bytes())
        except Exception:
            logger.exception("could not read kept jobs from %s; starting with an empty queue", path)
            jobs = []
        path.unlink(missing_ok=True)
        for job in jobs:
            self._sinks[job.job_id] = self.notifier(job)
            self._pending.append(job)
        if jobs:
            self._job_available.set()
            logger.info("restored %d kept job(s)", len(jobs))
        return jobs
