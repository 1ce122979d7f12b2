"""Telegram's send limits, with answers to commands ahead of everything else.

Telegram allows a bot about 30 messages a second in all and 20 a minute in one group. PTB's
``AIORateLimiter`` keeps to both but serves waiting requests first come, first served: when 50
users send their pictures at once, the 100 acknowledgements and queue notes take three seconds to
drain, and a ``/help`` sent meanwhile waits behind all of them. Here every request that names a
chat takes a token from the same buckets, but waiters are served by priority: answers to commands
and buttons first (a user is reading the screen), then answers to pictures (they come in bursts:
pairs, albums), then what the job pipeline sends on its own (progress, results).

The priority is that of the update being handled (set by the update processor for the whole of its
handling), unless a call passes ``rate_limit_args`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from telegram.constants import FloodLimit
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.retries import retry_after_seconds

logger = logging.getLogger(__name__)

REPLY, PICTURE_ANSWER, BACKGROUND = 0, 1, 2
answering: ContextVar[int] = ContextVar("answering", default=REPLY)
MAX_GROUP_BUCKETS = 512
REPLY_RESERVE = 3  # tokens of the overall bucket that only replies to commands and buttons may take
RETRY_MARGIN_S = 0.1


class PriorityBucket:
    """A token bucket (``rate`` tokens per ``period``, bursts up to ``rate``) that serves its
    waiters by priority, then in arrival order. One timer wakes the head; waiters never poll.

    All but replies to commands leave ``reserve`` tokens in the bucket: a busy bot still sends at the
    full rate, yet a reply finds a token at once instead of waiting for the next one to drip in.
    """

    def __init__(self, rate: float, period: float, reserve: int = 0) -> None:
        self.capacity = rate
        self.reserve = reserve
        self.per_second = rate / period
        self.tokens = rate
        self.stamp = time.monotonic()
        self.paused_until = 0.0
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """Full and nobody waiting: the bucket can be dropped and made anew later."""
        self._refill()
        return not self._waiting and self.tokens >= self.capacity

    async def acquire(self, priority: int) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        self._grant()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted just before the cancel: give it back
                self.tokens += 1
                self._grant()
            raise

    def pause(self, seconds: float) -> None:
        """Telegram said "retry after": grant nothing to anyone until then."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        self._schedule(seconds)

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now

    def _grant(self) -> None:
        self._timer = None
        self._refill()
        pause = self.paused_until - time.monotonic()
        while self._waiting and pause <= 0:
            priority, _, future = self._waiting[0]
            needed = 1 + (self.reserve if priority > REPLY else 0)
            if future.done():  # a waiter cancelled while queued takes nothing
                heapq.heappop(self._waiting)
            elif self.tokens >= needed:
                heapq.heappop(self._waiting)
                future.set_result(None)
                self.tokens -= 1
            else:
                self._schedule((needed - self.tokens) / self.per_second)
                return
        if self._waiting:
            self._schedule(pause)

    def _schedule(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._grant)


class PriorityRateLimiter(BaseRateLimiter[int]):
    """PTB rate limiter; ``rate_limit_args`` is a priority (``REPLY``, ``PICTURE_ANSWER``, ``BACKGROUND``)."""

    def __init__(self, max_retries: int = 3) -> None:
        self.max_retries = max_retries
        self._overall: PriorityBucket | None = None
        self._groups: dict[int | str, PriorityBucket] = {}

    async def initialize(self) -> None:
        """Buckets are made on first use, on the loop that uses them."""

    async def shutdown(self) -> None:
        """Nothing is held between requests."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Requests without a chat (getUpdates, getFile, answerCallbackQuery) are not limited."""
        priority = answering.get() if rate_limit_args is None else rate_limit_args
        chat_id = data.get("chat_id")
        buckets = [] if chat_id is None else [*self._group_bucket(chat_id), self._overall_bucket()]
        for attempt in range(self.max_retries + 1):
            for bucket in buckets:
                await bucket.acquire(priority)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                if attempt == self.max_retries:
                    raise
                wait = retry_after_seconds(exc) + RETRY_MARGIN_S
                logger.info("Telegram asked to slow down: pausing sends for %.1f s", wait)
                self._overall_bucket().pause(wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _overall_bucket(self) -> PriorityBucket:
        if self._overall is None:
            self._overall = PriorityBucket(FloodLimit.MESSAGES_PER_SECOND, 1, REPLY_RESERVE)
        return self._overall

    def _group_bucket(self, chat_id: int | str) -> list[PriorityBucket]:
        """Groups and channels have negative ids (or an @username); private chats have no bucket."""
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(chat_id)
        if isinstance(chat_id, int) and chat_id > 0:
            return []
        if len(self._groups) > MAX_GROUP_BUCKETS:
            self._groups = {key: bucket for key, bucket in self._groups.items() if not bucket.idle}
        bucket = self._groups.get(chat_id)
        if bucket is None:
            bucket = self._groups[chat_id] = PriorityBucket(FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP, 60)
        return [bucket]
