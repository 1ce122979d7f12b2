"""A front end's side of the event streams: results delivered at least once, and never sent twice.

- Final events: the ``atelier:results`` stream, read through one consumer group by every front end,
  so each entry goes to one of them. It sends the photo (or the failure), then, in one Lua call,
  deletes the job's keys and acknowledges the entry. An entry a front end took and then died with
  is taken over by another after ``RESULT_CLAIM_AFTER_S``; while a front end is still sending (a
  slow upload, retries after 429), it keeps renewing its claim. The job record is the idempotency
  key: a taken-over entry whose record is gone was delivered already and is only acknowledged.
- Progress (started, HQ percentages): the ``atelier:progress`` stream, best effort, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import replace
from pathlib import Path

from redis.exceptions import ResponseError

from bot import redis_keys as keys
from bot.files import write_atomically
from bot.jobs import JobEvent, NotifierFactory, RenderJob
from bot.redis_jobs import JobStore, repeat
from bot.tasks import cancel_and_wait
from nst_core.options import DEFAULT_OPTIONS

logger = logging.getLogger(__name__)
READ_BLOCK_MS = 1000
BATCH = 16  # entries read at a time; each is delivered beside the others


class ResultFeed:
    def __init__(self, store: JobStore, notifier: NotifierFactory, claim_after_s: float) -> None:
        self.store, self.redis, self.notifier = store, store.redis, notifier
        self.claim_after_ms = int(claim_after_s * 1000)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._loops: list[asyncio.Task] = []
        self._deliveries: dict[str, asyncio.Task] = {}  # entry id -> its delivery

    async def start(self) -> None:
        for stream in (keys.RESULTS, keys.PROGRESS):
            with contextlib.suppress(ResponseError):  # BUSYGROUP: another front end made it
                await self.redis.xgroup_create(stream, keys.FRONT_ENDS, id="0", mkstream=True)
        self._loops = [
            asyncio.create_task(repeat(self._read_results), name="results"),
            asyncio.create_task(repeat(self._take_over), name="take-over"),
            asyncio.create_task(repeat(self._read_progress), name="progress"),
        ]

    async def stop(self, grace_s: float) -> None:
        await cancel_and_wait(self._loops)
        if self._deliveries:  # left unacknowledged: another front end takes them over
            _, late = await asyncio.wait(list(self._deliveries.values()), timeout=max(0.1, grace_s))
            await cancel_and_wait(late)

    # ------------------------------------------------------------------ results
    async def _read_results(self) -> None:
        reply = await self.redis.xreadgroup(
            keys.FRONT_ENDS, self.consumer, {keys.RESULTS: ">"}, count=BATCH, block=READ_BLOCK_MS
        )
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self._start_delivery(entry_id.decode(), fields)

    async def _take_over(self) -> None:
        """Entries another front end took but has not acknowledged for too long (it died)."""
        await asyncio.sleep(self.claim_after_ms / 4000)
        _, entries, _ = await self.redis.xautoclaim(
            keys.RESULTS, keys.FRONT_ENDS, self.consumer, self.claim_after_ms, count=BATCH
        )
        for entry_id, fields in entries:
            if fields:  # an entry deleted meanwhile comes back empty
                self._start_delivery(entry_id.decode(), fields)

    def _start_delivery(self, entry_id: str, fields: dict) -> None:
        if entry_id in self._deliveries:
            return
        task = asyncio.create_task(self._deliver(entry_id, fields), name=f"deliver-{entry_id}")
        self._deliveries[entry_id] = task
        task.add_done_callback(lambda _: self._deliveries.pop(entry_id, None))

    async def _deliver(self, entry_id: str, fields: dict) -> None:
        user_id, job_id = int(fields[b"user_id"]), fields[b"job_id"].decode()
        found = await self.store.get(user_id, job_id)
        if found is None:  # delivered already, or the user said /forget
            await self.store.clean(_gone(user_id, job_id), entry_id)
            return
        job, _ = found
        keeping = asyncio.create_task(self._keep_claim(entry_id))
        try:
            event = await self._local_event(job, fields[b"outcome"].decode())
            await self.notifier(job)(event)
        except Exception:  # left unacknowledged: taken over and tried again
            logger.exception("delivering job %s failed", job_id)
            return
        finally:
            await cancel_and_wait([keeping])
        if event.kind in ("done", "failed"):
            await self.redis.hincrby(keys.COUNTS, event.kind)
        await self.store.clean(job, entry_id)

    async def _keep_claim(self, entry_id: str) -> None:
        """Renew this front end's claim while it is still sending, so nobody takes the entry over."""
        while True:
            await asyncio.sleep(self.claim_after_ms / 3000)
            await self.redis.xclaim(keys.RESULTS, keys.FRONT_ENDS, self.consumer, 0, [entry_id], justid=True)

    async def _local_event(self, job: RenderJob, outcome: str) -> JobEvent:
        """The final event, with the worker's PNG as a local file, and a late cancel applied."""
        event = JobEvent.from_outcome(job, outcome)
        keep = await self.store.cancel_request(job.user_id, job.job_id)
        if keep is not None and event.kind == "done":  # cancelled while it was finishing
            event = replace(event, kind="cancelled", size=event.size if keep else None)
        if event.size is None:
            return replace(event, image=None)
        png = await self.store.output(job.user_id, job.job_id)
        if png is None:
            return JobEvent("failed", job)
        await asyncio.to_thread(write_atomically, job.result_path, png)
        return replace(event, image=job.result_path)

    # ------------------------------------------------------------------ progress
    async def _read_progress(self) -> None:
        reply = await self.redis.xreadgroup(
            keys.FRONT_ENDS, self.consumer, {keys.PROGRESS: ">"}, count=BATCH, block=READ_BLOCK_MS, noack=True
        )
        for _, entries in reply or []:
            for entry_id, fields in entries:
                await self.redis.xdel(keys.PROGRESS, entry_id)
                try:
                    await self._progress(fields)
                except Exception:  # progress is best effort; the result still comes
                    logger.warning("a progress update failed", exc_info=True)

    async def _progress(self, fields: dict) -> None:
        found = await self.store.get(int(fields[b"user_id"]), fields[b"job_id"].decode())
        if found is None or found[1] != "running":
            return  # finished or gone: a late progress edit would only confuse
        job, _ = found
        kind, fraction = fields[b"kind"].decode(), float(fields[b"fraction"])
        left = float(fields[b"seconds_left"]) if fields.get(b"seconds_left") else None  # "": no forecast
        before = dict(job.meta)
        await self.notifier(job)(JobEvent(kind, job, fraction=fraction, eta_s=left))
        if job.meta != before:  # the status message: for the next front end
            await self.store.save_meta(job)


def _gone(user_id: int, job_id: str) -> RenderJob:
    """A stand-in for a job whose record is gone, enough to clean up after it."""
    return RenderJob(user_id, 0, Path(), (), DEFAULT_OPTIONS, job_id=job_id)
