"""Workers that die while idle or cannot be restarted; what a restart and a shutdown do with the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bot import texts
from testkit.emulator import BotAPIEmulator
from testkit.local_run import LocalBot
from testkit.pictures import picture
from testkit.stubs import START_FAILS_VARIABLE
from tests.bot_helpers import bot_settings, image_size, journaled_jobs


@pytest.fixture()
def emulator():
    with BotAPIEmulator() as api:
        yield api


def pool(bot):
    return bot.application.bot_data.services.backend


async def _worker_pid(bot) -> int:
    return pool(bot)._workers[0].process.pid


async def _restarts(bot) -> int:
    return pool(bot).restarts


def test_a_worker_that_dies_while_idle_is_replaced_before_anyone_needs_it(emulator, tmp_path):
    with LocalBot(bot_settings(emulator, tmp_path)) as bot:
        os.kill(bot.run(_worker_pid(bot)), signal.SIGKILL)
        emulator.wait_for(lambda: bot.run(_restarts(bot)) == 1, timeout=30)
        user = emulator.user(4001)
        user.send_photo(picture(seed=1))
        user.send_photo(picture(seed=2))
        user.wait_photos(1)
        assert not any("crashed" in text for text in user.texts())


def test_when_workers_cannot_be_restarted_queued_users_are_told(emulator, tmp_path, monkeypatch):
    marker = tmp_path / "no-start"
    monkeypatch.setenv(START_FAILS_VARIABLE, str(marker))
    with LocalBot(bot_settings(emulator, tmp_path / "data")) as bot:
        marker.touch()
        user = emulator.user(4002)
        os.kill(bot.run(_worker_pid(bot)), signal.SIGKILL)
        user.send_photo(picture(seed=3))
        user.send_photo(picture(seed=4))
        user.wait_text(texts.PAINTER_DOWN, timeout=30)
        late = emulator.user(4003)
        late.send_photo(picture(seed=5))
        late.send_photo(picture(seed=6))
        late.wait_text(texts.PAINTER_DOWN)
        assert journaled_jobs(bot.settings) == 0


def test_restored_jobs_are_checked_against_the_allowlist_and_edit_their_old_message(emulator, tmp_path):
    settings = bot_settings(emulator, tmp_path, shutdown_grace_s=0.0)
    busy, kept, banned = emulator.user(4101), emulator.user(4102), emulator.user(4103)
    with LocalBot(settings):
        busy.send_text("/hq")
        busy.send_photo(picture(seed=7))
        busy.send_photo(picture(seed=8))
        busy.wait_text("% done")
        for user, seed in ((kept, 9), (banned, 11)):
            user.send_photo(picture(120, 90, seed=seed))
            user.send_photo(picture(seed=seed + 1))
            user.wait_text("ahead of you")
    assert journaled_jobs(settings) == 3
    status = kept.wait_message("ahead of you")
    allowlisted = settings.model_copy(update={"allowed_user_ids": [busy.user_id, kept.user_id]})
    with LocalBot(allowlisted):
        assert image_size(kept.wait_photos(1)[0].files["photo"]) == (120, 90)
        busy.wait_photos(1)
    edits = [s for s in kept.log() if s.method == "editMessageText"]
    assert any(int(s.params["message_id"]) == status.message["message_id"] for s in edits)
    assert banned.photos() == [] and journaled_jobs(settings) == 0


def test_no_queued_job_starts_once_shutdown_has_begun(emulator, tmp_path):
    settings = bot_settings(emulator, tmp_path, shutdown_grace_s=10.0)
    running, queued = emulator.user(4201), emulator.user(4202)
    with LocalBot(settings):
        running.send_text("/hq")
        running.send_photo(picture(seed=13))
        running.send_photo(picture(seed=14))
        running.wait_text("% done")
        queued.send_photo(picture(seed=15))
        queued.send_photo(picture(seed=16))
        queued.wait_text("ahead of you")
    assert running.photos() and queued.photos() == []  # the running one finished within the grace
    assert journaled_jobs(settings) == 1


def test_an_hq_render_stopped_by_its_time_budget_says_so(emulator, tmp_path):
    user = emulator.user(4301)
    with LocalBot(bot_settings(emulator, tmp_path, hq_time_budget_s=0.5)):
        user.send_text("/hq")
        user.send_photo(picture(seed=17))
        user.send_photo(picture(seed=18))
        (photo,) = user.wait_photos(1)
    assert photo.params["caption"].startswith("High quality")
    assert "Stopped at the 1 s time limit: this is the best version so far." in photo.params["caption"]


@pytest.mark.parametrize(
    ("program", "who"), [("bot", "inference worker"), ("bot.render_worker", "render worker")]
)
def test_a_bot_whose_models_cannot_load_says_why_and_exits(emulator, tmp_path, program, who):
    """The real engine, configured for a fast model that is not there: no bot that fails every job."""
    missing = tmp_path / "student.safetensors"
    environment = os.environ | {
        "BOT_TOKEN": emulator.token, "BOT_API_URL": emulator.base_url, "DATA_DIR": str(tmp_path / "data"),
        "MODEL": "fast", "STUDENT_PATH": str(missing),
    }  # fmt: skip
    command = [sys.executable, "-m", program]
    finished = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert finished.returncode == 2
    assert f"{who} cannot load the models: fast model weights file not found: {missing}" in finished.stderr
