"""Run the real Application in a background thread (its own event loop) against any Bot API URL.

Used by ``make demo``, the end-to-end tests and the load scenario: it performs the same start and
stop sequence as ``run_polling``/``run_webhook`` (initialize, post_init, polling or webhook, start /
stop, post_stop, shutdown) without taking over the main thread or its signals.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path

from telegram.ext import Application

from bot.app import build_application, start_bot, stop_bot
from bot.config import Settings
from bot.emulator import BotAPIEmulator
from bot.webhook import WebhookServer


def emulator_settings(emulator: BotAPIEmulator, data_dir: Path, **overrides) -> Settings:
    """Settings that point the bot at a local emulator; a developer's ``.env`` is ignored."""
    return Settings(
        _env_file=None, bot_token=emulator.token, bot_api_url=emulator.base_url,
        bot_file_url=emulator.base_file_url, data_dir=data_dir, poll_timeout_s=1, **overrides,
    )  # fmt: skip


class LocalBot:
    def __init__(self, settings: Settings, backend=None) -> None:
        self.settings = settings
        self.backend = backend
        self.application: Application | None = None
        self._server: WebhookServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="local-bot")

    def __enter__(self) -> LocalBot:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _call(self, coroutine, timeout: float = 300.0):
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def start(self) -> LocalBot:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self.application = build_application(self.settings, self.backend)
        self._server = await start_bot(self.application, self.settings)

    def stop(self) -> None:
        if self.application is not None:
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _stop(self) -> None:
        await stop_bot(self.application, self._server)

    def run(self, coroutine, timeout: float = 60.0):
        """Run a coroutine on the bot's loop (e.g. to inspect the backend) and return its result."""
        return self._call(coroutine, timeout)
