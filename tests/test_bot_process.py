"""The bot as operators run it: ``python -m bot`` in its own process group, signalled and killed for real."""

from __future__ import annotations

import os
import signal
import time

import pytest

from testkit.emulator import BotAPIEmulator
from testkit.local_run import BotProcess
from testkit.pictures import picture
from tests.bot_helpers import TEST_DEFAULTS


@pytest.fixture()
def emulator():
    with BotAPIEmulator() as api:
        yield api


def _busy_queue(emulator: BotAPIEmulator, running_id: int, queued_id: int):
    """One HQ job running in the only worker, one fast job queued behind it."""
    running, queued = emulator.user(running_id), emulator.user(queued_id)
    running.send_text("/hq")
    running.send_photo(picture(seed=1))
    running.send_photo(picture(seed=2))
    running.wait_text("% done")
    queued.send_photo(picture(120, 90, seed=3))
    queued.send_photo(picture(seed=4))
    queued.wait_text("ahead of you")
    return running, queued


def _both_finish_once(emulator, tmp_path, running, queued) -> None:
    bot = BotProcess(emulator, tmp_path / "data", **TEST_DEFAULTS)
    try:
        queued.wait_photos(1)
        running.wait_photos(1)
        time.sleep(0.5)  # anything sent twice would be here by now
    finally:
        bot.kill_group()
    assert len(queued.photos()) == 1 and len(running.photos()) == 1
    assert not any("crashed" in text or "went wrong" in text for text in running.texts() + queued.texts())


def test_ctrl_c_and_a_second_sigterm_keep_every_job(emulator, tmp_path):
    bot = BotProcess(emulator, tmp_path / "data", **(TEST_DEFAULTS | {"shutdown_grace_s": 1.0}))
    bot.wait_ready(emulator)
    running, queued = _busy_queue(emulator, 6001, 6002)
    os.killpg(bot.process.pid, signal.SIGINT)  # Ctrl+C: the whole group, workers included
    time.sleep(0.3)
    bot.process.send_signal(signal.SIGTERM)  # impatient: a second signal inside the grace period
    assert bot.wait() == 0
    output = bot.output()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    _both_finish_once(emulator, tmp_path, running, queued)


def test_kill_9_loses_nothing_and_sends_nothing_twice(emulator, tmp_path):
    bot = BotProcess(emulator, tmp_path / "data", **TEST_DEFAULTS)
    bot.wait_ready(emulator)
    running, queued = _busy_queue(emulator, 6101, 6102)
    bot.kill_group()
    _both_finish_once(emulator, tmp_path, running, queued)


def test_a_rejected_token_is_never_printed(emulator, tmp_path):
    token = "424242:NEVER-PRINT-THIS-TOKEN"
    bot = BotProcess(emulator, tmp_path / "data", **TEST_DEFAULTS, bot_token=token)
    assert bot.wait() == 2
    output = bot.output()
    assert "rejected BOT_TOKEN" in output
    assert "NEVER-PRINT" not in output and "424242" not in output


def test_configuration_errors_never_print_secrets(emulator, tmp_path):
    bot = BotProcess(
        emulator, tmp_path / "data", **TEST_DEFAULTS, bot_token="515151:ANOTHER-SECRET", webhook_url="https://example.org/hook",
        webhook_secret="leaky secret with spaces!",
    )  # fmt: skip
    assert bot.wait() == 2
    output = bot.output()
    assert "WEBHOOK_SECRET" in output
    assert "leaky" not in output and "515151" not in output and "ANOTHER" not in output
