"""Run the real bot against any Bot API URL: in a background thread, or as its own process.

``LocalBot`` (``make demo``, the end-to-end tests, the load scenario) runs the same start and stop
sequence as ``python -m bot`` (``bot.app.start_bot``/``stop_bot``) without taking over the main
thread or its signals. ``BotProcess`` runs ``python -m bot`` itself, for signals and kill -9.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from telegram.ext import Application

from bot.app import build_application, start_bot, stop_bot
from bot.config import Settings
from bot.webhook import WebhookServer
from testkit.emulator import BotAPIEmulator

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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


class BotProcess:
    """``python -m bot`` against an emulator, in a fresh session (signals can reach its whole process group).

    For the tests of signals and kill -9, and for benchmarks that measure the bot process alone;
    ``module="bot.render_worker"`` runs a render worker with the same settings instead.
    """

    def __init__(self, emulator: BotAPIEmulator, data_dir: Path, module: str = "bot", **settings) -> None:
        values = {
            "bot_token": emulator.token, "bot_api_url": emulator.base_url,
            "bot_file_url": emulator.base_file_url, "data_dir": data_dir, "poll_timeout_s": 1,
        } | settings  # fmt: skip
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BOT_", "WEBHOOK_", "REDIS"))
        }
        env |= {key.upper(): str(value) for key, value in values.items()}
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=data_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, emulator: BotAPIEmulator, timeout: float = 60.0) -> None:
        emulator.wait_for(lambda: emulator.commands or self.process.poll() is not None, timeout)
        assert self.process.poll() is None, self.output()

    def wait_for_output(self, fragment: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.output():
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill_group(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.wait()
