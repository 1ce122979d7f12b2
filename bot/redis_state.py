"""Per-user state and update order in Redis, for front ends that keep none.

- **State**: each update of a user runs under that user's Redis lock, with their state loaded
  before the handlers and saved after. PTB's persistence loads ``user_data`` once at start and
  writes it back on an interval, so two replicas would overwrite each other's changes; here the
  handlers still see ``context.user_data`` (a ``UserState``) exactly as with one process.
- **Order**: Telegram sends a chat's next update only once the webhook answered the previous one,
  but two replicas may then handle them in either order (a photo and its style swapped). So the
  webhook puts each update in the user's inbox in Redis before it answers 200, and whoever holds
  the user's lock handles every earlier inbox entry first; an update at or below the user's last
  handled ``update_id`` is a repeat and is skipped. An update whose front end died after the 200
  is not lost either: every front end looks for inboxes left alone too long and handles them, and
  likewise hands over albums that stopped growing but that nobody handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from redis.asyncio import Redis
from telegram import Update
from telegram.ext import Application

from bot import redis_keys as keys
from bot.redis_jobs import repeat
from bot.state import UserState
from bot.tasks import cancel_and_wait
from bot.updates import AlbumLeftAlone, InboxDue, PerUserUpdateProcessor, user_of

LOCK_HELD_S = 120.0  # longer than any handler (a download included); a crashed holder frees it then
LOCK_WAIT_S = 120.0
INBOX_KEPT_S = 24 * 3600  # as long as Telegram itself keeps an update it could not deliver
LEFT_ALONE_S = 5.0  # an accepted update not handled after this: its front end is stuck or gone
LOOK_EVERY_S = 2.0

# The webhook's intake; 0 when the update was handled already (Telegram sent it again).
_ACCEPT = """
if tonumber(ARGV[1]) <= tonumber(redis.call('GET', KEYS[3]) or '0') then return 0 end
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[4])
return 1
"""

# Before an update is handled: it, and anything older, leaves the inbox.
_HANDLING = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[3]) or '0') then
    redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('ZREM', KEYS[2], ARGV[3])
else
    redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
end
"""


class RedisUserStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._accept = redis.register_script(_ACCEPT)
        self._handling = redis.register_script(_HANDLING)

    @contextlib.asynccontextmanager
    async def locked(self, user_id: int) -> AsyncIterator[None]:
        lock = self.redis.lock(
            keys.lock(user_id), timeout=LOCK_HELD_S, blocking_timeout=LOCK_WAIT_S, sleep=0.01
        )
        async with lock:
            yield

    async def load(self, user_id: int) -> UserState:
        text = await self.redis.get(keys.state(user_id))
        return UserState.from_json(text) if text else UserState()

    async def save(self, user_id: int, state: UserState) -> None:
        """The state, and whether an album of it is still arriving (see ``albums_left_alone``)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.state(user_id), state.to_json())
            if state.album is None:
                pipe.zrem(keys.ALBUMS, user_id)
            else:
                pipe.zadd(keys.ALBUMS, {str(user_id): time.time()})
            await pipe.execute()

    async def delete(self, user_id: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.delete(keys.state(user_id)).zrem(keys.ALBUMS, user_id).execute()

    # ------------------------------------------------------------------ the inbox
    def _inbox_keys(self, user_id: int) -> list[str]:
        return [keys.inbox(user_id), keys.INBOXES, keys.last_update(user_id)]

    async def accept(self, user_id: int, update_id: int, update_json: str) -> bool:
        """Put the update in the user's inbox; False if it was handled already."""
        args = [update_id, update_json, time.time(), user_id, INBOX_KEPT_S]
        return bool(await self._accept(keys=self._inbox_keys(user_id), args=args))

    async def unhandled(self, user_id: int, before: int | None) -> tuple[int, list[str]]:
        """(the last handled update_id, the inbox's later entries below ``before``, oldest first)."""
        last = int(await self.redis.get(keys.last_update(user_id)) or 0)
        upper = "+inf" if before is None else f"({before}"
        entries = await self.redis.zrangebyscore(keys.inbox(user_id), f"({last}", upper)
        return last, [entry.decode() for entry in entries]

    async def handling(self, user_id: int, update_id: int) -> None:
        args = [update_id, time.time(), user_id, INBOX_KEPT_S]
        await self._handling(keys=self._inbox_keys(user_id), args=args)

    async def left_alone(self, older_than_s: float) -> list[int]:
        """Users whose inbox has held an entry for longer than that."""
        return await self._older(keys.INBOXES, older_than_s)

    async def albums_left_alone(self, older_than_s: float) -> list[int]:
        """Users whose unfinished album has not grown for longer than that."""
        return await self._older(keys.ALBUMS, older_than_s)

    async def _older(self, key: str, older_than_s: float) -> list[int]:
        users = await self.redis.zrangebyscore(key, "-inf", time.time() - older_than_s)
        return [int(user_id) for user_id in users]


class RedisUpdateProcessor(PerUserUpdateProcessor):
    """One user's updates in order and one at a time, across all front ends."""

    def __init__(self, store: RedisUserStore) -> None:
        super().__init__()
        self.store = store
        self.application: Application | None = None  # set once the Application is built
        self._looking: asyncio.Task | None = None

    async def accept(self, update: Update) -> None:
        """The webhook's intake: the update is in Redis before Telegram hears 200."""
        user_id = user_of(update)
        if user_id is None or await self.store.accept(user_id, update.update_id, update.to_json()):
            await self.application.update_queue.put(update)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        user_id = user_of(update)
        if user_id is not None:
            coroutine = self._with_state(user_id, update, coroutine)
        await super().do_process_update(update, coroutine)

    async def _with_state(self, user_id: int, update: object, coroutine: Awaitable[Any]) -> None:
        application = self.application
        async with self.store.locked(user_id):
            application.user_data[user_id].replace_with(await self.store.load(user_id))
            try:
                await self._in_order(user_id, update, coroutine)
            finally:
                if user_id in application.user_data:
                    await self.store.save(user_id, application.user_data[user_id])
                    application.drop_user_data(user_id)  # this front end keeps nothing between updates
                else:  # the handlers dropped it: /forget
                    await self.store.delete(user_id)

    async def _in_order(self, user_id: int, update: object, coroutine: Awaitable[Any]) -> None:
        """Earlier inbox entries first (another front end accepted them and is slow, or gone), then
        this update, unless it was handled already. Each leaves the inbox before it is handled."""
        own = update.update_id if isinstance(update, Update) else None
        if own is not None or isinstance(update, InboxDue):
            last, waiting = await self.store.unhandled(user_id, own)
            handled = last
            for text in waiting:
                earlier = Update.de_json(json.loads(text), self.application.bot)
                if earlier.update_id > handled:  # Telegram may have sent one twice, differently
                    handled = earlier.update_id
                    await self.store.handling(user_id, handled)
                    await self.application.process_update(earlier)
            if own is not None and own <= last:
                coroutine.close()  # a repeat: handled by another front end already
                return
        if own is not None:
            await self.store.handling(user_id, own)
        await coroutine

    async def _look_for_work_left_alone(self) -> None:
        """Inboxes, and albums (their timer lives in the front end that got the last picture)."""
        await asyncio.sleep(LOOK_EVERY_S)
        for user_id in await self.store.left_alone(LEFT_ALONE_S):
            await self.application.update_queue.put(InboxDue(user_id))
        for user_id in await self.store.albums_left_alone(LEFT_ALONE_S):
            await self.application.update_queue.put(AlbumLeftAlone(user_id))

    async def initialize(self) -> None:
        self._looking = asyncio.create_task(repeat(self._look_for_work_left_alone), name="left-alone")

    async def shutdown(self) -> None:
        if self._looking is not None:
            await cancel_and_wait([self._looking])
