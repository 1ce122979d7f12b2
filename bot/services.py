"""Process-wide helpers the handlers share, and the typed context every handler receives.

``context.user_data`` is the user's ``UserState``; ``context.bot_data.services`` holds the helpers
(``bot_data`` is never persisted).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from telegram.ext import CallbackContext, ContextTypes, ExtBot

from bot.config import Settings
from bot.files import FileStore
from bot.jobs import JobBackend
from bot.state import ImageRef, UserState


@dataclass
class Album:
    """Pictures of one media group, collected until the group is complete (see ``handlers``)."""

    group_id: str
    chat_id: int
    pictures: list[tuple[int, ImageRef]] = field(default_factory=list)  # (message id, picture)


class FloodGuard:
    """Sliding-window message counter per user."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: dict[int, deque[float]] = {}
        self._warned: dict[int, float] = {}

    def allow(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn): warn once per window when a user starts being throttled."""
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

    def forget(self, user_id: int) -> None:
        self._times.pop(user_id, None)
        self._warned.pop(user_id, None)


@dataclass
class Services:
    settings: Settings
    backend: JobBackend
    files: FileStore
    flood: FloodGuard = field(init=False)
    strangers: FloodGuard = field(init=False)  # "this bot is private" at most once per window
    albums: dict[int, Album] = field(default_factory=dict)  # user id -> the album being collected
    # A burst of pictures (50 users at once) fetched all at once would fill every turn of the event
    # loop, and a /help sent meanwhile would wait for all of them; a few at a time keeps it quick.
    downloads: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.downloads = asyncio.Semaphore(self.settings.concurrent_downloads)
        self.flood = FloodGuard(self.settings.flood_messages, self.settings.flood_window_s)
        self.strangers = FloodGuard(1, self.settings.flood_window_s)


class BotData:
    """PTB's ``bot_data``: PTB makes it empty; ``build_application`` sets ``services`` before any update."""

    services: Services


Context = CallbackContext[ExtBot, UserState, dict, BotData]
CONTEXT_TYPES = ContextTypes(user_data=UserState, bot_data=BotData)
