"""Shared pieces of the bot tests: settings pointed at the emulator, and small pictures as bytes."""

from __future__ import annotations

import io
import itertools
import sqlite3

from PIL import Image

from bot.config import Settings
from testkit.emulator import BotAPIEmulator
from testkit.local_run import emulator_settings

USER_IDS = itertools.count(1001)  # each test's users are new to the bot it talks to

TEST_DEFAULTS = {
    "engine_factory": "testkit.stubs:load_stub_engine",
    "progress_edit_interval_s": 0.0,
    "fast_timeout_s": 6.0,
    "hq_time_budget_s": 30.0,
    "shutdown_grace_s": 0.5,
    "flood_messages": 1000,
}


def bot_settings(emulator: BotAPIEmulator, data_dir, **overrides) -> Settings:
    """The stub engine and short timeouts, so the bot tests are fast and can trigger faults."""
    return emulator_settings(emulator, data_dir, **(TEST_DEFAULTS | overrides))


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def journaled_jobs(settings: Settings) -> int:
    """How many jobs the bot's journal holds (read straight from its SQLite file)."""
    with sqlite3.connect(settings.database_path) as db:
        return db.execute("SELECT count(*) FROM jobs").fetchone()[0]
