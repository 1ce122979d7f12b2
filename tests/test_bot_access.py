"""Who may talk to the bot, how floods are damped, and the admins' /stats, over real HTTP."""

from __future__ import annotations

import sqlite3
import time

import pytest

from bot import texts
from bot.app import PERSISTENCE_INTERVAL_S
from testkit.local_run import LocalBot
from testkit.pictures import picture
from tests.bot_helpers import bot_settings

MEMBER, ADMIN, STRANGER = 3001, 3002, 3003
FLOOD_LIMIT, FLOOD_WINDOW_S = 3, 4.0


@pytest.fixture(scope="module")
def bot(emulator, tmp_path_factory):
    settings = bot_settings(
        emulator, tmp_path_factory.mktemp("data"), allowed_user_ids=[MEMBER], admin_ids=[ADMIN],
        flood_messages=FLOOD_LIMIT, flood_window_s=FLOOD_WINDOW_S,
    )  # fmt: skip
    with LocalBot(settings) as running:
        yield running


def test_strangers_are_turned_away_and_admins_are_let_in(emulator, bot):
    stranger = emulator.user(STRANGER)
    stranger.send_photo(picture(seed=1))
    stranger.wait_text(texts.NOT_ALLOWED)
    admin = emulator.user(ADMIN)
    admin.send_text("/start")
    admin.wait_text("Send me a photo")


def test_a_flood_is_warned_once_then_ignored_until_the_window_passes(emulator, bot):
    member = emulator.user(MEMBER)
    for _ in range(FLOOD_LIMIT + 3):
        member.send_text("/help")
    member.wait_text(texts.FLOOD)
    time.sleep(0.5)  # anything answered late would show up by now
    replies = member.texts()
    assert sum("How it works" in t for t in replies) == FLOOD_LIMIT
    assert replies.count(texts.FLOOD) == 1
    time.sleep(FLOOD_WINDOW_S)
    member.send_text("/alpha")
    member.wait_text("Style strength (alpha) is")


def test_stats_are_for_admins_only(emulator, bot):
    admin = emulator.user(ADMIN)
    admin.send_photo(picture(seed=2))
    admin.send_photo(picture(seed=3))
    admin.wait_photos(1)
    time.sleep(PERSISTENCE_INTERVAL_S * 1.5)  # the admin's state reaches the database
    admin.send_text("/stats")
    report = admin.wait_text("Atelier status")
    assert "0 waiting, 0 painting on 1 worker(s)" in report
    assert "1 done, 0 failed, 0 worker restart(s)" in report
    with sqlite3.connect(bot.settings.database_path) as db:
        saved = {user_id for (user_id,) in db.execute("SELECT user_id FROM users")}
    assert ADMIN in saved
    assert f"Users with saved state: {len(saved)}" in report
    stranger_in_allowlist = emulator.user(MEMBER)
    stranger_in_allowlist.send_text("/stats")
    stranger_in_allowlist.wait_text("I don't know /stats")


def test_a_stranger_is_told_once_and_cannot_press_buttons(emulator, bot):
    stranger = emulator.user(STRANGER + 100)
    for _ in range(FLOOD_LIMIT - 1):
        stranger.send_text("/start")
    stranger.wait_text(texts.NOT_ALLOWED)
    member_message = emulator.new_message(MEMBER, emulator.user(MEMBER).sender, text="a result")
    member_chat_before = len(emulator.chat_log(MEMBER))
    stranger.press(member_message, "re:less:0123456789ab")
    emulator.wait_for(
        lambda: any(
            s.method == "answerCallbackQuery" and s.params.get("text") == texts.NOT_ALLOWED
            for s in emulator.sent
        )
    )
    time.sleep(0.3)  # anything answered late would show up by now
    assert stranger.texts().count(texts.NOT_ALLOWED) == 1
    assert len(emulator.chat_log(MEMBER)) == member_chat_before


def test_forget_also_forgets_the_flood_record(emulator, bot):
    member = emulator.user(MEMBER)
    time.sleep(FLOOD_WINDOW_S)  # earlier tests' messages have left the window
    floods_before = member.texts().count(texts.FLOOD)
    for _ in range(FLOOD_LIMIT - 1):
        member.send_text("/settings")
    member.send_text("/forget")
    member.wait_text(texts.FORGET_DONE)
    member.send_text("/help")
    member.wait_message("How it works", after=member.wait_message(texts.FORGET_DONE).message["message_id"])
    assert member.texts().count(texts.FLOOD) == floods_before
