"""``JobBackend`` for stateless front ends (``BACKEND=redis``): jobs go through Redis to ``atelier-worker``s.

- ``submit`` takes the user's one slot and a place under the queue cap in one Lua call (so the
  rules hold across replicas), uploads the pictures, stores the record, tells the user their place
  and ETA, then enqueues the job on saq's ``fast`` or ``hq`` queue.
- Cancel and "keep what you have" travel as a key the worker's cancel token reads; a job still
  queued is cancelled here at once (and taken off saq's queue).
- Final events come back on a Redis stream (``bot.result_feed``): any front end may deliver them.
- ``/forget`` deletes the user's keys and tells every front end, which deletes its local copies of
  their pictures (a front end down at that moment deletes them when the retention period ends).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from bot import redis_keys as keys
from bot.config import Settings
from bot.files import FileStore
from bot.jobs import (
    BackendStats,
    JobEvent,
    NotifierFactory,
    RenderJob,
    initial_durations_s,
    render_deadline_s,
)
from bot.redis_jobs import HEARTBEAT_S, MAX_ATTEMPTS, JobStore, make_queues, repeat
from bot.result_feed import ResultFeed
from bot.tasks import cancel_and_wait

DELETE_AFTER_FINISH = -1  # saq: drop its own job record as soon as the job finishes


class RedisBackend:
    def __init__(self, settings: Settings, notifier: NotifierFactory, files: FileStore, redis: Redis) -> None:
        self.settings, self.notifier, self.files, self.redis = settings, notifier, files, redis
        self.store = JobStore(redis)
        self.queues = make_queues(settings.redis_url)
        self.feed = ResultFeed(self.store, notifier, settings.result_claim_after_s)
        self._forgetting: asyncio.Task | None = None

    async def start(self) -> None:
        await self.feed.start()
        self._forgetting = asyncio.create_task(repeat(self._forget_what_others_forget), name="forgotten")

    async def stop(self) -> None:
        """Stop taking results; one being sent is finished (or left on the stream for another front end)."""
        await cancel_and_wait([self._forgetting] if self._forgetting else [])
        await self.feed.stop(self.settings.shutdown_grace_s)
        for queue in self.queues.values():
            await queue.disconnect()

    async def submit(self, job: RenderJob) -> int:
        position = await self.store.admit(job, self.settings.queue_limit)
        try:
            await self.store.put_pictures(job)
            await self.store.put(job)
            await asyncio.to_thread(self.files.remove_job, job.job_id)  # staged copies: in Redis now
            eta = await self._estimate_wait_s(position, job.kind)
            await self.notifier(job)(JobEvent("queued", job, position=position, eta_s=eta))
            await self.store.save_meta(job)  # the status message id, for whoever delivers the result
            await self.queues[job.kind].enqueue(
                "render", key=job.job_id, kwargs={"user_id": job.user_id, "job_id": job.job_id},
                timeout=int(render_deadline_s(job, self.settings)) + 60, heartbeat=HEARTBEAT_S,
                retries=MAX_ATTEMPTS + 1, ttl=DELETE_AFTER_FINISH,
            )  # fmt: skip
            await self.store.confirm(job)
        except BaseException:
            await self.store.clean(job)
            raise
        return position

    async def cancel(self, user_id: int, keep_partial: bool = False) -> bool:
        job = await self.active_job(user_id)
        if job is None:
            return False
        await self.store.request_cancel(user_id, job.job_id, keep_partial)
        if await self.store.transition(user_id, job.job_id, "queued", "cancelled"):
            await self._take_off_queue(job)
            await self.store.publish_result(job, JobEvent("cancelled", job))
        return True

    async def forget_user(self, user_id: int) -> None:
        """Stop the user's job wherever it is (an abort reaches a running one within a second), then
        delete every key of theirs."""
        job = await self.active_job(user_id)
        if job is not None:
            await self._take_off_queue(job)
        await self.store.forget_user(user_id)
        await self.redis.publish(keys.FORGOTTEN, user_id)

    async def active_job(self, user_id: int) -> RenderJob | None:
        job_id = await self.store.active_job_id(user_id)
        found = await self.store.get(user_id, job_id) if job_id else None
        return found[0] if found else None

    async def keep_result(self, job: RenderJob, png: Path) -> None:
        data = await asyncio.to_thread(png.read_bytes)
        retention = int(self.settings.retention_hours * 3600)
        await self.redis.set(keys.kept(job.user_id, job.job_id), data, ex=retention)
        await asyncio.to_thread(self.files.remove_job, job.job_id)

    async def kept_result(self, user_id: int, job_id: str) -> bytes | None:
        return await self.redis.get(keys.kept(user_id, job_id))

    async def stats(self) -> BackendStats:
        counts = {kind: 0 for kind in ("queued", "active")}
        for queue in self.queues.values():
            for kind in counts:
                counts[kind] += await queue.count(kind)
        delivered = await self.redis.hgetall(keys.COUNTS)
        return BackendStats(
            queued=counts["queued"], running=counts["active"], workers=await self._workers(),
            done=int(delivered.get(b"done", 0)), failed=int(delivered.get(b"failed", 0)),
            restarts=int(delivered.get(b"retried", 0)),
            users=len([key async for key in self.redis.scan_iter(match=keys.EVERY_STATE, count=1000)]),
        )  # fmt: skip

    async def _forget_what_others_forget(self) -> None:
        """A /forget on any front end: this one deletes its cached copies of the user's pictures too."""
        async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(keys.FORGOTTEN)
            async for message in pubsub.listen():
                await asyncio.to_thread(self.files.forget_user, int(message["data"]))

    # ------------------------------------------------------------------ helpers
    async def _take_off_queue(self, job: RenderJob) -> None:
        """saq's abort: a queued job leaves the queue; a running one's task is cancelled (its token too)."""
        queue = self.queues[job.kind]
        saq_job = await queue.job(job.job_id)
        if saq_job is not None:
            await queue.abort(saq_job, "cancelled by the user")

    async def _workers(self) -> int:
        info = await self.queues["fast"].info()
        return len(info.get("workers", {}))

    async def _estimate_wait_s(self, position: int, kind: str) -> float:
        """Jobs ahead at the recent fast-render time, over the workers, plus this job's own time."""
        recent = await self.redis.hgetall(keys.DURATIONS)
        durations = initial_durations_s(self.settings)
        durations |= {name.decode(): float(value) for name, value in recent.items()}
        return position * durations["fast"] / max(1, await self._workers()) + durations[kind]
