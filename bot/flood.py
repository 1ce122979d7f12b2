"""Flood guards: how many messages a user may send per window, in one process or across front ends.

``allow`` answers (allowed, warn): warn is True once per window, when a user starts being throttled,
so the bot says "slow down" once instead of answering every message of a flood.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from bot import redis_keys
from bot.redis_jobs import riding_out_restarts


class FloodGuard(Protocol):
    async def allow(self, user_id: int) -> tuple[bool, bool]: ...

    async def forget(self, user_id: int) -> None: ...


class LocalFloodGuard:
    """Sliding-window message counter per user, in this process."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: dict[int, deque[float]] = {}
        self._warned: dict[int, float] = {}

    async def allow(self, user_id: int) -> tuple[bool, bool]:
        now = time.monotonic()
        times = self._times.setdefault(user_id, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            warn = now - self._warned.get(user_id, -1e9) > self.window_s
            if warn:
                self._warned[user_id] = now
            return False, warn
        times.append(now)
        return True, False

    async def forget(self, user_id: int) -> None:
        self._times.pop(user_id, None)
        self._warned.pop(user_id, None)


class RedisFloodGuard:
    """The same rule for all front ends: a moving window in Redis (the ``limits`` package)."""

    def __init__(self, redis: Redis, redis_url: str, name: str, limit: int, window_s: float) -> None:
        self.redis, self.name = redis, name
        self.window_s = max(1, round(window_s))
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=redis_keys.LIMITS,
            **riding_out_restarts(),
        )
        self.limiter = MovingWindowRateLimiter(storage)
        self.item = RateLimitItemPerSecond(limit, self.window_s, namespace=name)

    async def allow(self, user_id: int) -> tuple[bool, bool]:
        if await self.limiter.hit(self.item, str(user_id)):
            return True, False
        warned = await self.redis.set(
            redis_keys.flood_warned(user_id, self.name), 1, nx=True, ex=self.window_s
        )
        return False, bool(warned)

    async def forget(self, user_id: int) -> None:
        await self.limiter.clear(self.item, str(user_id))
        await self.redis.delete(redis_keys.flood_warned(user_id, self.name))
