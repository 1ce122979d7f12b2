"""The embedded inference pool: a queue in the bot's event loop feeding worker processes.

- Handlers never run torch: the pool hands jobs to ``bot.worker`` processes over pipes and reads
  their events with ``loop.add_reader``, so the event loop never blocks.
- Each user has at most one active job; the queue has a cap; users learn their place and an ETA.
- Every accepted job is in the journal (SQLite) until its result has been sent: a kill -9 at any
  point loses nothing, and the next start resumes queued and interrupted jobs and sends finished ones.
- A cancel holds whenever it arrives (before the worker has the job, while it runs, or after it
  finished but before delivery); ``forget_user`` silences a user's jobs completely.
- A worker that dies (crash, OOM kill, even while idle) or overruns its deadline (hang) is replaced;
  a job it never started runs again. If workers cannot be started, queued users are told.
- Delivery to Telegram runs beside the slot, so a slow upload never holds a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

from bot.config import Settings
from bot.files import FileStore
from bot.jobs import (
    BackendError,
    BackendStats,
    EventSink,
    JobEvent,
    NotifierFactory,
    RenderJob,
    blended_duration_s,
    initial_durations_s,
    render_deadline_s,
)
from bot.journal import JobJournal
from bot.messages import (
    Advanced,
    Cancel,
    Exited,
    Failed,
    Failure,
    Finished,
    Ready,
    Started,
    Unable,
    WorkerMessage,
)
from bot.persistence import count_saved_users
from bot.storage import Database
from bot.worker import worker_main
from nst_core.cpu import usable_cpu_cores

logger = logging.getLogger(__name__)
WORKER_START_TIMEOUT_S = 180.0
RESPAWN_ATTEMPTS = 3  # then the slot is down: queued users are told, and it retries slowly
RESPAWN_BACKOFF_S = 0.5
DOWN_RETRY_S = 30.0
MAX_ATTEMPTS = 2  # a job whose worker vanished before starting it runs once more


class EngineUnavailable(RuntimeError):
    """A worker could not load the models; the message is the engine's own (e.g. the missing file)."""


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    jobs: Connection
    control: Connection
    events: Connection
    inbox: asyncio.Queue
    exited: bool = False


class EmbeddedPool:
    """``JobBackend`` running jobs in local worker processes (CUDA when present, else CPU)."""

    def __init__(
        self, settings: Settings, notifier: NotifierFactory, database: Database, files: FileStore
    ) -> None:
        self.settings = settings
        self.notifier = notifier
        self.files = files
        self._database = database
        self._journal = JobJournal(database)
        self._pending: deque[RenderJob] = deque()
        self._running: dict[int, RenderJob] = {}
        self._submitting: set[int] = set()  # users whose submit is being journaled
        self._sinks: dict[str, EventSink] = {}
        self._cancels: dict[str, bool] = {}  # job id -> keep the partial result
        self._silenced: set[str] = set()  # jobs of users who said /forget
        self._deliveries: dict[str, tuple[RenderJob, asyncio.Task]] = {}
        self._job_available = asyncio.Event()
        self._slots: list[asyncio.Task] = []
        self._workers: dict[int, _Worker] = {}
        self._down: set[int] = set()  # slots whose worker failed to start repeatedly
        self._durations = initial_durations_s(settings)
        self._closing = False
        self.restarts = 0
        self._finished = {"done": 0, "failed": 0}

    # ------------------------------------------------------------------ public API
    async def start(self) -> None:
        restored = await self._restore()
        for slot in range(self.settings.workers_per_device):
            await self._spawn(slot)
            self._slots.append(asyncio.create_task(self._slot_loop(slot), name=f"pool-slot-{slot}"))
        for position, job in enumerate(restored):
            await self._announce(job, position)

    async def submit(self, job: RenderJob) -> int:
        if self._closing:
            raise BackendError("shutting_down")
        if len(self._down) == self.settings.workers_per_device:
            raise BackendError("painter_down")
        if self._active_job(job.user_id) is not None or job.user_id in self._submitting:
            raise BackendError("busy")
        if len(self._pending) >= self.settings.queue_limit:
            raise BackendError("queue_full", waiting=len(self._pending))
        self._submitting.add(job.user_id)
        try:
            await self._journal.add(job)
        finally:
            self._submitting.discard(job.user_id)
        self._sinks[job.job_id] = self.notifier(job)
        position = len(self._running) + len(self._pending)  # jobs ahead, the running ones included
        self._pending.append(job)
        self._job_available.set()
        await self._announce(job, position)
        return position

    async def cancel(self, user_id: int, keep_partial: bool = False) -> bool:
        job = self._active_job(user_id)
        if job is None:
            return False
        if job in self._pending:
            self._pending.remove(job)
            await self._emit(JobEvent("cancelled", job))
            await self._discard(job)
            return True
        self._cancels[job.job_id] = keep_partial  # holds even if the worker has finished already
        self._tell_worker_to_cancel(job, keep_partial)
        return True

    async def forget_user(self, user_id: int) -> None:
        for job in [job for job in self._pending if job.user_id == user_id]:
            self._pending.remove(job)
            await self._discard(job)
        for job in self._running.values():
            if job.user_id == user_id:
                self._silenced.add(job.job_id)
                self._cancels[job.job_id] = False
                self._tell_worker_to_cancel(job, False)
        for job, task in list(self._deliveries.values()):
            if job.user_id == user_id:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self._discard(job)

    async def active_job(self, user_id: int) -> RenderJob | None:
        return self._active_job(user_id)

    def _active_job(self, user_id: int) -> RenderJob | None:
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

    async def keep_result(self, job: RenderJob, png: Path) -> None:
        kept = self.files.result_path(job.user_id, job.job_id)
        kept.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(png.replace, kept)  # a rename: atomic, never a half-written file

    async def kept_result(self, user_id: int, job_id: str) -> bytes | None:
        path = self.files.result_path(user_id, job_id)
        return await asyncio.to_thread(path.read_bytes) if path.exists() else None

    async def stats(self) -> BackendStats:
        return BackendStats(
            queued=len(self._pending), running=len(self._running), workers=len(self._workers),
            done=self._finished["done"], failed=self._finished["failed"], restarts=self.restarts,
            users=await self._database.run(count_saved_users),
        )  # fmt: skip

    async def stop(self) -> None:
        """Finish what fits in the grace period; the journal keeps the rest for the next start."""
        self._closing = True
        self._job_available.set()  # idle slots wake up and leave
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        for slot in list(self._workers):
            self._kill(slot)
        if self._deliveries:
            _, late = await asyncio.wait(
                [task for _, task in self._deliveries.values()], timeout=max(1.0, deadline - time.monotonic())
            )
            for task in late:  # still "delivering" in the journal: sent after the next start
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        kept = len(self._pending) + len(self._running)
        if kept:
            logger.info("kept %d job(s) for the next start", kept)

    # ------------------------------------------------------------------ queue
    async def _announce(self, job: RenderJob, position: int) -> None:
        eta = self.estimate_wait_s(position, job.kind)
        await self._emit(JobEvent("queued", job, position=position, eta_s=eta))
        if job.meta.get("status_message_id") is not None:
            await self._journal.update(job, "queued")  # a restart edits the same message

    async def _next_job(self, worker: _Worker) -> RenderJob | None:
        """The next job, or None when the idle worker died or the pool is closing."""
        while not (self._closing or worker.exited):
            if self._pending:
                return self._pending.popleft()
            self._job_available.clear()
            await self._job_available.wait()
        return None

    async def _discard(self, job: RenderJob) -> None:
        """Forget a job that will not be delivered: journal, files, sink."""
        await self._journal.remove(job.job_id)
        await asyncio.to_thread(self.files.remove_job, job.job_id)
        self._sinks.pop(job.job_id, None)
        self._cancels.pop(job.job_id, None)
        self._silenced.discard(job.job_id)

    async def _emit(self, event: JobEvent) -> None:
        sink = self._sinks.get(event.job.job_id)
        if sink is None or event.job.job_id in self._silenced:
            return
        try:
            await sink(event)
        except Exception:  # a failed Telegram call must not stop the pool
            logger.exception("delivering %s for job %s failed", event.kind, event.job.job_id)

    def _tell_worker_to_cancel(self, job: RenderJob, keep_partial: bool) -> None:
        for slot, running in self._running.items():
            worker = self._workers.get(slot)
            if running is job and worker is not None:
                with contextlib.suppress(OSError):
                    worker.control.send(Cancel(job.job_id, keep_partial))

    async def _fail_pending(self, failure: Failure) -> None:
        while self._pending:
            job = self._pending.popleft()
            await self._finish(job, JobEvent("failed", job, failure=failure))

    # ------------------------------------------------------------------ workers
    async def _spawn(self, slot: int) -> None:
        context = multiprocessing.get_context("spawn")
        jobs_out, jobs_in = context.Pipe(duplex=False)
        control_out, control_in = context.Pipe(duplex=False)
        events_out, events_in = context.Pipe(duplex=False)
        config = {
            "engine_factory": self.settings.engine_factory,
            "engine": self.settings.engine_spec(),
            "max_bytes": self.settings.max_download_bytes,
            "max_pixels": self.settings.max_pixels,
            "threads": max(1, usable_cpu_cores() // self.settings.workers_per_device),
            "progress_interval_s": self.settings.progress_edit_interval_s,
        }
        process = context.Process(
            target=worker_main, args=(jobs_out, control_out, events_in, config),
            name=f"atelier-worker-{slot}", daemon=True,
        )  # fmt: skip
        process.start()
        for child_end in (jobs_out, control_out, events_in):
            child_end.close()  # so a dead child reads as EOF here
        worker = _Worker(process, jobs_in, control_in, events_out, asyncio.Queue())
        asyncio.get_running_loop().add_reader(events_out.fileno(), self._read_events, worker)
        self._workers[slot] = worker
        message = await self._receive(worker, WORKER_START_TIMEOUT_S)
        if not isinstance(message, Ready):
            self._kill(slot)
            if isinstance(message, Unable):
                raise EngineUnavailable(message.reason)
            raise RuntimeError(f"inference worker {slot} failed to start: {message}")
        logger.info("worker %d ready (pid %s)", slot, process.pid)

    def _read_events(self, worker: _Worker) -> None:
        try:
            message = worker.events.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(worker.events.fileno())
            worker.exited = True
            self._job_available.set()  # an idle slot notices its worker is gone
            message = Exited()
        worker.inbox.put_nowait(message)

    async def _receive(self, worker: _Worker, timeout: float) -> WorkerMessage | None:
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

    async def _respawn(self, slot: int) -> None:
        """Start the slot's worker again; after repeated failures tell the queued users and wait."""
        for attempt in range(RESPAWN_ATTEMPTS):
            try:
                await self._spawn(slot)
                self._down.discard(slot)
                return
            except RuntimeError:
                logger.exception("restarting worker %d failed (attempt %d)", slot, attempt + 1)
                await asyncio.sleep(RESPAWN_BACKOFF_S * 2**attempt)
        self._down.add(slot)
        if len(self._down) == self.settings.workers_per_device:
            logger.critical("no inference worker can be started; refusing jobs until one can")
            await self._fail_pending("painter_down")
        await asyncio.sleep(DOWN_RETRY_S)

    # ------------------------------------------------------------------ running jobs
    async def _slot_loop(self, slot: int) -> None:
        while not self._closing:
            worker = self._workers.get(slot)
            if worker is None:
                await self._respawn(slot)
                continue
            job = await self._next_job(worker)
            if job is None:
                if worker.exited:
                    logger.error("worker %d died while idle; replacing it", slot)
                    self._kill(slot)
                    self.restarts += 1
                continue
            self._running[slot] = job
            try:
                outcome, worker_lost = await self._execute(worker, job)
            except asyncio.CancelledError:
                raise  # stop(): the job stays "running" in the journal and is resumed next start
            except Exception:
                logger.exception("slot %d failed running job %s", slot, job.job_id)
                outcome, worker_lost = JobEvent("failed", job, failure="crashed"), True
            del self._running[slot]
            if outcome is None:  # the worker vanished before it started the job: run it again
                self._pending.appendleft(job)
                self._job_available.set()
            else:
                await self._finish(job, outcome)
            if worker_lost:
                self._kill(slot)
                self.restarts += 1

    async def _execute(self, worker: _Worker, job: RenderJob) -> tuple[JobEvent | None, bool]:
        """Run one job: (final event or None to run it again, whether the worker must be replaced)."""
        started_at = time.monotonic()
        deadline = started_at + render_deadline_s(job, self.settings)
        started = False
        try:
            worker.jobs.send(job)
        except OSError:
            return self._lost_before_start(job), True
        while True:
            message = await self._receive(worker, max(0.0, deadline - time.monotonic()))
            match message:
                case None:
                    logger.error("job %s overran its deadline; killing its worker", job.job_id)
                    return JobEvent("failed", job, failure="timed_out"), True
                case Exited():
                    logger.error("worker died during job %s", job.job_id)
                    if not started:
                        return self._lost_before_start(job), True
                    return JobEvent("failed", job, failure="crashed"), True
                case Started():
                    started = True
                    await self._journal.update(job, "running")
                    await self._emit(JobEvent("started", job))
                case Advanced(fraction=fraction, seconds_left=seconds_left):
                    await self._emit(JobEvent("progress", job, fraction=fraction, eta_s=seconds_left))
                case Finished(stopped="cancelled", size=size):
                    image = job.result_path if size else None
                    return JobEvent("cancelled", job, image=image, size=size), False
                case Finished(stopped=stopped, size=size):
                    elapsed = time.monotonic() - started_at
                    self._durations[job.kind] = blended_duration_s(self._durations[job.kind], elapsed)
                    return JobEvent("done", job, image=job.result_path, size=size, stopped=stopped), False
                case Failed(failure=failure, detail=detail):
                    return JobEvent("failed", job, failure=failure, detail=detail), False

    def _lost_before_start(self, job: RenderJob) -> JobEvent | None:
        attempts = job.meta.get("attempts", 1)
        if attempts >= MAX_ATTEMPTS:
            return JobEvent("failed", job, failure="crashed")
        job.meta["attempts"] = attempts + 1
        return None

    async def _finish(self, job: RenderJob, outcome: JobEvent) -> None:
        """Journal the final event, then deliver it beside the slot."""
        if job.job_id in self._silenced:
            await self._discard(job)
            return
        keep = self._cancels.pop(job.job_id, None)
        if keep is not None and outcome.kind == "done":  # cancelled while it was finishing
            outcome = replace(outcome, kind="cancelled", image=outcome.image if keep else None,
                              size=outcome.size if keep else None)  # fmt: skip
        if outcome.kind in self._finished:
            self._finished[outcome.kind] += 1
        await self._journal.update(job, "delivering", outcome)
        self._start_delivery(job, outcome)

    def _start_delivery(self, job: RenderJob, outcome: JobEvent) -> None:
        task = asyncio.create_task(self._deliver(outcome), name=f"deliver-{job.job_id}")
        self._deliveries[job.job_id] = (job, task)
        task.add_done_callback(lambda _: self._deliveries.pop(job.job_id, None))

    async def _deliver(self, outcome: JobEvent) -> None:
        """Send the final event, then forget the job; if cancelled midway it stays journaled."""
        await self._emit(outcome)
        await self._discard(outcome.job)

    # ------------------------------------------------------------------ restart
    async def _restore(self) -> list[RenderJob]:
        """Jobs from the journal: finished ones are delivered, the rest queued in their old order."""
        restored = []
        for entry in await self._journal.load():
            job = entry.job
            if not self.settings.is_allowed(job.user_id):
                await self._discard(job)
                continue
            self._sinks[job.job_id] = self.notifier(job)
            if entry.status == "delivering" and entry.outcome is not None:
                self._start_delivery(job, entry.outcome)
            else:
                restored.append(job)
        self._pending.extend(restored)
        if restored:
            self._job_available.set()
            logger.info("restored %d kept job(s)", len(restored))
        return restored
