"""Process-wide helpers the handlers share, and the typed context every handler receives.

``context.user_data`` is the user's ``UserState``; ``context.bot_data.services`` holds the helpers
(``bot_data`` is never persisted).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from telegram.ext import CallbackContext, ContextTypes, ExtBot

from bot.config import Settings
from bot.files import FileStore
from bot.flood import FloodGuard
from bot.jobs import JobBackend
from bot.state import UserState


@dataclass
class Services:
    settings: Settings
    backend: JobBackend
    files: FileStore
    flood: FloodGuard  # messages per user and window
    strangers: FloodGuard  # "this bot is private" at most once per window
    # A burst of pictures (50 users at once) fetched all at once would fill every turn of the event
    # loop, and a /help sent meanwhile would wait for all of them; a few at a time keeps it quick.
    downloads: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.downloads = asyncio.Semaphore(self.settings.concurrent_downloads)


class BotData:
    """PTB's ``bot_data``: PTB makes it empty; ``build_application`` sets ``services`` before any update."""

    services: Services


Context = CallbackContext[ExtBot, UserState, dict, BotData]
CONTEXT_TYPES = ContextTypes(user_data=UserState, bot_data=BotData)
