"""Jobs in Redis, as both sides see them: admission, records, pictures, status changes, events.

A job record is the versioned JSON of ``RenderJob`` (never a pickle) in a hash beside its ``status``:
``queued`` → ``running`` (each attempt) → ``finished``, or ``queued`` → ``cancelled``. Each change
that two parties may race for is one Lua script, so exactly one of them wins. Pictures are blobs
named by Telegram's ``file_unique_id``; events carry ids, never images. Everything a job leaves
has a time to live, and ``clean`` removes it as soon as the result has been delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from saq.queue.redis import RedisQueue

from bot import redis_keys as keys
from bot.jobs import BackendError, JobEvent, RenderJob
from nst_core.control import Progress

logger = logging.getLogger(__name__)
RETRY_AFTER_ERROR_S = 1.0
JOB_LIFETIME_S = 6 * 3600  # a job not delivered by then is dropped, and its user may send another
RESERVATION_S = 60  # a front end that dies while submitting blocks its user no longer than this
PROGRESS_KEPT = 10_000  # the progress stream is trimmed to about this many entries
HEARTBEAT_S = 3  # saq sweeps (and retries) a job whose worker has not touched it for this long
MAX_ATTEMPTS = 2  # a job whose worker died mid-render runs once more, then the user is told

# A user may have one job in flight, and all users together ``cap``; checked and taken at once.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then return {'busy', 0} end
local count = redis.call('ZCARD', KEYS[2])
if count >= tonumber(ARGV[4]) then return {'queue_full', count} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'ok', count}
"""
# A worker takes a job that is queued, or running on a worker that died; anything else is over.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return false end
redis.call('HSET', KEYS[1], 'status', 'running')
return {redis.call('HGET', KEYS[1], 'record'), redis.call('HINCRBY', KEYS[1], 'attempts', 1)}
"""
# Move from one status to another only if the job is still in the first (and still exists).
_TRANSITION = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
return 1
"""
# Let go of the user's slot only if it is still this job's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
"""
# After delivery, all at once: the job's keys, its slot, and its entry on the results stream. The
# record is the job's idempotency key: a front end that takes over an entry finds it gone and sends
# nothing, so a result is never sent twice.
_CLEAN = """
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then
    redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
    redis.call('XDEL', KEYS[3], ARGV[3])
end
"""


class SweepingQueue(RedisQueue):
    """saq's Redis queue, but a swept job is retried after 1 s rather than 5 s of waiting for an abort
    that a dead worker can never acknowledge."""

    async def sweep(self, lock: int = 60, abort: float = 1.0) -> list[str]:
        return await super().sweep(lock, abort)


def riding_out_restarts() -> dict:
    """Client options under which a dropped connection is retried (for ~10 s), not raised."""
    retry = Retry(ExponentialBackoff(cap=2.0), retries=8)
    return {"retry": retry, "retry_on_error": [RedisConnectionError, RedisTimeoutError]}


async def repeat(step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` again and again; Redis being away for a moment is logged, not fatal."""
    while True:
        try:
            await step()
        except RedisError:
            logger.warning("Redis error in %s; retrying", step.__name__, exc_info=True)
            await asyncio.sleep(RETRY_AFTER_ERROR_S)


def connect(redis_url: str) -> Redis:
    """A client that rides out a Redis restart."""
    return Redis.from_url(redis_url, **riding_out_restarts())


def make_queues(redis_url: str) -> dict[str, RedisQueue]:
    return {kind: SweepingQueue(connect(redis_url), name=name) for kind, name in keys.QUEUES.items()}


class JobStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT)
        self._claim = redis.register_script(_CLAIM)
        self._transition = redis.register_script(_TRANSITION)
        self._release = redis.register_script(_RELEASE)
        self._clean = redis.register_script(_CLEAN)

    # ------------------------------------------------------------------ admission
    async def admit(self, job: RenderJob, cap: int) -> int:
        """Take the user's one slot and a place under the cap; returns how many jobs are ahead."""
        now = time.time()
        verdict, count = await self._admit(
            keys=[keys.active(job.user_id), keys.IN_FLIGHT],
            args=[job.job_id, now, now + JOB_LIFETIME_S, cap, RESERVATION_S],
        )
        verdict = verdict.decode()
        if verdict != "ok":
            raise BackendError(verdict, waiting=int(count))
        return int(count)

    async def confirm(self, job: RenderJob) -> None:
        """The job is queued: the user's slot lasts as long as the job may."""
        await self.redis.expire(keys.active(job.user_id), JOB_LIFETIME_S)

    async def release(self, user_id: int, job_id: str) -> None:
        await self._release(keys=[keys.active(user_id), keys.IN_FLIGHT], args=[job_id])

    async def active_job_id(self, user_id: int) -> str | None:
        value = await self.redis.get(keys.active(user_id))
        return value.decode() if value else None

    # ------------------------------------------------------------------ records
    async def put(self, job: RenderJob) -> None:
        """Store a new job's record as queued."""
        name = keys.job(job.user_id, job.job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                name, mapping={"record": json.dumps(job.to_record()), "status": "queued", "attempts": 0}
            )
            pipe.expire(name, JOB_LIFETIME_S)
            await pipe.execute()

    async def save_meta(self, job: RenderJob) -> None:
        """Store the record again (its meta: the status message id), if the job still exists."""
        name = keys.job(job.user_id, job.job_id)
        if await self.redis.exists(name):
            await self.redis.hset(name, "record", json.dumps(job.to_record()))

    async def get(self, user_id: int, job_id: str) -> tuple[RenderJob, str] | None:
        """(job, status), or None when it was delivered, cancelled and cleaned, or forgotten."""
        record, status = await self.redis.hmget(keys.job(user_id, job_id), ["record", "status"])
        if record is None:
            return None
        return RenderJob.from_record(json.loads(record)), status.decode()

    async def claim(self, user_id: int, job_id: str) -> tuple[RenderJob, int] | None:
        """A worker's claim: (job, attempt number), or None if the job is over or gone."""
        claimed = await self._claim(keys=[keys.job(user_id, job_id)])
        if not claimed:
            return None
        record, attempts = claimed
        return RenderJob.from_record(json.loads(record)), int(attempts)

    async def transition(self, user_id: int, job_id: str, before: str, after: str) -> bool:
        return bool(await self._transition(keys=[keys.job(user_id, job_id)], args=[before, after]))

    # ------------------------------------------------------------------ pictures and results
    async def put_pictures(self, job: RenderJob) -> None:
        """Upload the job's pictures, each once per user however often it is used."""
        for unique_id, path in zip(job.picture_ids, (job.content, *job.styles), strict=True):
            name = keys.picture(job.user_id, unique_id)
            if not await self.redis.expire(name, JOB_LIFETIME_S):  # not there yet
                await self.redis.set(name, await asyncio.to_thread(Path(path).read_bytes), ex=JOB_LIFETIME_S)

    async def pictures(self, job: RenderJob) -> list[bytes]:
        """Content first, then styles; a missing one (expired) is an empty picture, refused when decoded."""
        names = [keys.picture(job.user_id, unique_id) for unique_id in job.picture_ids]
        return [blob or b"" for blob in await self.redis.mget(names)]

    async def put_output(self, job: RenderJob, png: bytes) -> None:
        await self.redis.set(keys.output(job.user_id, job.job_id), png, ex=JOB_LIFETIME_S)

    async def output(self, user_id: int, job_id: str) -> bytes | None:
        return await self.redis.get(keys.output(user_id, job_id))

    # ------------------------------------------------------------------ cancel
    async def request_cancel(self, user_id: int, job_id: str, keep_partial: bool) -> None:
        await self.redis.set(
            keys.cancel(user_id, job_id), "keep" if keep_partial else "drop", ex=JOB_LIFETIME_S
        )

    async def cancel_request(self, user_id: int, job_id: str) -> bool | None:
        """None: not cancelled; otherwise whether to keep the best image so far."""
        value = await self.redis.get(keys.cancel(user_id, job_id))
        return None if value is None else value == b"keep"

    # ------------------------------------------------------------------ events
    async def publish_result(self, job: RenderJob, event: JobEvent) -> None:
        fields = {"user_id": job.user_id, "job_id": job.job_id, "outcome": event.outcome_record()}
        await self.redis.xadd(keys.RESULTS, fields)

    async def publish_progress(self, job: RenderJob, kind: str, progress: Progress) -> None:
        """``started`` or ``progress``: the share done and the engine's forecast ("" where it has none)."""
        left = "" if progress.seconds_left is None else progress.seconds_left
        fields = {"user_id": job.user_id, "job_id": job.job_id, "kind": kind, "fraction": progress.fraction,
                  "seconds_left": left}  # fmt: skip
        await self.redis.xadd(keys.PROGRESS, fields, maxlen=PROGRESS_KEPT, approximate=True)

    # ------------------------------------------------------------------ the end
    async def clean(self, job: RenderJob, entry_id: str = "") -> None:
        """Remove everything the job left (record, pictures, output, cancel request, slot) and, once
        delivered, acknowledge and delete its results entry."""
        names = [keys.job(job.user_id, job.job_id), keys.output(job.user_id, job.job_id),
                 keys.cancel(job.user_id, job.job_id)]  # fmt: skip
        names += [keys.picture(job.user_id, unique_id) for unique_id in job.picture_ids]
        await self._clean(
            keys=[keys.active(job.user_id), keys.IN_FLIGHT, keys.RESULTS, *names],
            args=[job.job_id, keys.FRONT_ENDS, entry_id],
        )

    async def forget_user(self, user_id: int) -> None:
        """Delete every key under the user's prefix (their job's slot under the cap included)."""
        job_id = await self.active_job_id(user_id)
        if job_id is not None:
            await self.release(user_id, job_id)
        async for name in self.redis.scan_iter(match=keys.user_prefix(user_id) + "*", count=500):
            await self.redis.delete(name)
