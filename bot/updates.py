"""Update processing: users are served concurrently, each user's own updates strictly in order.

Besides Telegram's updates, the queue carries ``AlbumDue`` (put there by the album timer), so an
album's hand-over takes its place in the user's order like any message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.ratelimit import PICTURE_ANSWER, REPLY, answering


@dataclass(frozen=True)
class AlbumDue:
    """The album ``group_id`` of ``user_id`` had ``seen`` pictures a while ago: if no new one came
    since, it is complete and is handed over."""

    user_id: int
    group_id: str
    seen: int


@dataclass(frozen=True)
class InboxDue:
    """Updates of ``user_id`` that a front end accepted a while ago are still not handled (that front
    end is stuck or gone): whoever gets this handles them, in order (``BACKEND=redis`` only)."""

    user_id: int


@dataclass(frozen=True)
class AlbumLeftAlone:
    """The album of ``user_id`` stopped growing a while ago and is still not handed over (the front end
    whose timer would have done it is gone): whoever gets this hands it over (``BACKEND=redis`` only)."""

    user_id: int


# What the bot puts on its update queue itself; each has a user_id.
OWN_UPDATES = (AlbumDue, InboxDue, AlbumLeftAlone)


def user_of(update: object) -> int | None:
    """The user an update is from (or for, for the bot's own), if any."""
    if isinstance(update, OWN_UPDATES):
        return update.user_id
    if isinstance(update, Update) and update.effective_user is not None:
        return update.effective_user.id
    return None


def _carries_pictures(update: object) -> bool:
    """Pictures come in bursts (pairs, albums, many users at once); their answers yield to commands."""
    if isinstance(update, (AlbumDue, AlbumLeftAlone)):
        return True
    message = update.effective_message if isinstance(update, Update) else None
    return message is not None and bool(message.photo or message.document)


class PerUserUpdateProcessor(BaseUpdateProcessor):
    """PTB handles updates one at a time by default, so one slow download delays every other user.

    Here each user (or chat, for updates without a user) has a lock: different users run in
    parallel, while one user's photo-then-style arrive at the handlers in the order they were sent.
    asyncio locks are FIFO, and PTB starts update tasks in arrival order. The global concurrency
    slot is taken only once it is the user's turn, so one user's burst, waiting on its own lock,
    holds no slot that another user needs.
    """

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._holders: dict[int, int] = {}
        self._slots = asyncio.BoundedSemaphore(max_concurrent_updates)

    @staticmethod
    def _key(update: object) -> int | None:
        user_id = user_of(update)
        if user_id is not None or not isinstance(update, Update):
            return user_id
        return update.effective_chat.id if update.effective_chat is not None else None

    async def process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for the user's turn first, then for a global slot (PTB's default takes the slot first)."""
        await self.do_process_update(update, coroutine)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = self._key(update)
        if key is None:
            async with self._slots:
                await coroutine
            return
        answering.set(PICTURE_ANSWER if _carries_pictures(update) else REPLY)  # this task's own context
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with lock, self._slots:
                await coroutine
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:  # nobody waits: drop the lock so the dict stays small
                del self._holders[key], self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""
