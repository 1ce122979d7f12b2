"""Per-user state in Redis, for front ends that keep none: each update of a user runs under that
user's Redis lock, with their state loaded before the handlers and saved after.

PTB's persistence loads ``user_data`` once at start and writes it back on an interval, so two
replicas would overwrite each other's changes; here the handlers still see ``context.user_data``
(a ``UserState``) exactly as with one process, but it is read fresh for every update.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from redis.asyncio import Redis
from telegram import Update
from telegram.ext import Application

from bot import redis_keys as keys
from bot.state import UserState
from bot.updates import AlbumDue, PerUserUpdateProcessor

LOCK_HELD_S = 120.0  # longer than any handler (a download included); a crashed holder frees it then
LOCK_WAIT_S = 120.0


class RedisUserStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

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
        await self.redis.set(keys.state(user_id), state.to_json())

    async def delete(self, user_id: int) -> None:
        await self.redis.delete(keys.state(user_id))


def _user_of(update: object) -> int | None:
    if isinstance(update, AlbumDue):
        return update.user_id
    if isinstance(update, Update) and update.effective_user is not None:
        return update.effective_user.id
    return None


class RedisUpdateProcessor(PerUserUpdateProcessor):
    """One user's updates in order on this front end (the parent class), and one at a time across all."""

    def __init__(self, store: RedisUserStore) -> None:
        super().__init__()
        self.store = store
        self.application: Application | None = None  # set once the Application is built

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        user_id = _user_of(update)
        if user_id is not None:
            coroutine = self._with_state(user_id, coroutine)
        await super().do_process_update(update, coroutine)

    async def _with_state(self, user_id: int, coroutine: Awaitable[Any]) -> None:
        application = self.application
        async with self.store.locked(user_id):
            application.user_data[user_id].replace_with(await self.store.load(user_id))
            try:
                await coroutine
            finally:
                if user_id in application.user_data:
                    await self.store.save(user_id, application.user_data[user_id])
                    application.drop_user_data(user_id)  # this front end keeps nothing between updates
                else:  # the handlers dropped it: /forget
                    await self.store.delete(user_id)
