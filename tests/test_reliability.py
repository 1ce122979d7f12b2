"""Races, hostile input and lost work, end to end: the real bot over HTTP, real worker processes.

Each test here reproduces a failure found in the reliability review; the races are made deterministic
with the stub engine's slow colour (a fast job that takes a while and ignores cancel, like AdaIN) and
the per-chat delays of the emulator, not with sleeps.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from bot import texts
from testkit.emulator import BotAPIEmulator
from testkit.local_run import LocalBot
from testkit.pictures import picture
from testkit.stubs import SLOW_COLOUR, SLOW_S
from tests.bot_helpers import USER_IDS, bot_settings, image_size


@pytest.fixture(autouse=True)
def telegram_accepted_everything(emulator):
    """Whatever a test does, the bot never sends what real Telegram would refuse."""
    before = len(emulator.rejected)
    yield
    assert emulator.rejected[before:] == []


def idle(bot, user_id: int) -> None:
    """Wait until the pool has nothing for the user: no queued, running or undelivered job."""

    async def busy() -> bool:
        pool = bot.application.bot_data.services.backend
        delivering = any(job.user_id == user_id for job, _ in pool._deliveries.values())
        return await pool.active_job(user_id) is not None or delivering

    wait_until(lambda: not bot.run(busy()))


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def slow_style(seed: int) -> bytes:
    return picture(seed=seed, corner=SLOW_COLOUR)


# ---------------------------------------------------------------------------- 1. cancel and forget
def test_cancel_right_after_the_style_holds_for_a_fast_job(user, bot):
    user.send_photo(picture(seed=1))
    user.send_photo(slow_style(2))
    user.send_text("/cancel")  # handled after the job was queued, while the worker renders it
    user.wait_text(texts.CANCELLED_NOTHING, timeout=SLOW_S + 10)
    idle(bot, user.user_id)
    assert user.photos() == []


def test_forget_right_after_the_style_delivers_and_writes_nothing(user, bot):
    user.send_photo(picture(seed=3))
    user.send_photo(slow_style(4))
    user.send_text("/forget")
    done = user.wait_message(texts.FORGET_DONE)
    idle(bot, user.user_id)
    assert user.photos() == []
    assert all(s.message["message_id"] <= done.message["message_id"] for s in user.log() if s.message)
    data = bot.settings.data_dir
    assert not (data / "results" / str(user.user_id)).exists()
    assert not (data / "pictures" / str(user.user_id)).exists()
    with sqlite3.connect(bot.settings.database_path) as db:
        assert db.execute("SELECT count(*) FROM jobs WHERE user_id = ?", (user.user_id,)).fetchone()[0] == 0


# ---------------------------------------------------------------------------- 2. albums in order
def test_album_then_a_photo_keeps_the_order(user):
    user.send_album([picture(200, 150, seed=5), picture(seed=6)])
    user.send_photo(picture(120, 90, seed=7))  # arrives before the album has settled
    photo = user.wait_photos(1)[0]
    assert image_size(photo.files["photo"]) == (200, 150)
    assert "mixed" not in photo.params["caption"]
    user.wait_text(texts.ASK_STYLE)  # the single photo started a new pair


def test_album_then_reset_renders_the_album_first(user):
    user.send_album([picture(200, 150, seed=8), picture(seed=9)])
    user.send_text("/reset")
    assert image_size(user.wait_photos(1)[0].files["photo"]) == (200, 150)
    user.wait_text("Started over")


def test_album_then_forget_leaves_nothing(user, bot):
    user.send_album([picture(seed=10), slow_style(11)])
    user.send_text("/forget")
    user.wait_text(texts.FORGET_DONE)
    idle(bot, user.user_id)
    assert user.photos() == []
    assert user.user_id not in bot.application.user_data


# ---------------------------------------------------------------------------- 3. buttons
def _button(sent, action: str) -> str:
    rows = sent.message["reply_markup"]["inline_keyboard"]
    return next(b["callback_data"] for row in rows for b in row if b["callback_data"].split(":")[1] == action)


def test_buttons_act_on_their_own_result(user):
    user.send_photo(picture(200, 150, seed=12))
    user.send_photo(picture(seed=13))
    first = user.wait_photos(1)[0]
    user.send_photo(picture(120, 90, seed=14))
    user.send_photo(picture(seed=15))
    user.wait_photos(2)
    user.press(first.message, _button(first, "file"))
    document = user.api.wait_for(lambda: next((s for s in user.log() if s.method == "sendDocument"), None))
    assert image_size(document.files["document"]) == (200, 150)
    user.press(first.message, _button(first, "less"))
    third = user.wait_photos(3)[2]
    assert image_size(third.files["photo"]) == (200, 150) and "style 0.75" in third.params["caption"]


def test_a_refused_job_is_not_what_the_buttons_repaint(user):
    user.send_text("/hq")
    user.send_photo(picture(200, 150, seed=16))
    user.send_photo(picture(seed=17))
    user.wait_text("% done")
    user.send_photo(picture(120, 90, seed=18))
    user.send_photo(picture(seed=19))
    user.wait_text(texts.BUSY)
    hq = user.wait_photos(1)[0]
    user.press(hq.message, _button(hq, "less"))
    again = user.wait_photos(2)[1]
    assert image_size(again.files["photo"]) == (200, 150)


def test_a_forgotten_result_says_so(user):
    user.press(user.send_text("hi"), "re:less:0123456789ab")
    user.api.wait_for(
        lambda: any(
            s.method == "answerCallbackQuery" and s.params.get("text") == texts.RESULT_GONE
            for s in user.api.sent
        )
    )


# ---------------------------------------------------------------------------- 4. slow uploads
def test_a_slow_upload_is_sent_once_and_does_not_hold_the_worker(emulator, bot, user):
    emulator.delay("sendPhoto", 6.0, chat_id=user.user_id)  # past PTB's 5 s read timeout
    uploads_before = emulator.calls.get("sendPhoto", 0)  # counted as requests arrive
    try:
        user.send_photo(picture(seed=20))
        user.send_photo(picture(seed=21))
        wait_until(lambda: emulator.calls.get("sendPhoto", 0) > uploads_before)
        other = emulator.user(next(USER_IDS))
        other.send_photo(picture(seed=22))
        other.send_photo(picture(seed=23))
        other.wait_photos(1, timeout=4)  # the only worker is free while the first upload hangs
        idle(bot, user.user_id)  # the first delivery has given up
    finally:
        emulator.delay("sendPhoto", 0.0, chat_id=user.user_id)
    assert emulator.calls["sendPhoto"] - uploads_before == 2  # one each: the time-out was not retried


# ---------------------------------------------------------------------------- 12. user text is escaped
@pytest.mark.parametrize(
    ("send", "fragment"),
    [
        (lambda u: u.send_document(b"%PDF", "<b>report</b>.pdf", "application/<x>"), "&lt;b&gt;report"),
        (lambda u: u.send_text("/alpha <b>"), "&lt;b&gt;"),
        (lambda u: u.send_text("/alpha 1&2"), "1&amp;2"),
        (lambda u: u.send_text("/frob<i>nicate"), "/frob&lt;i&gt;nicate"),
    ],
)
def test_user_text_is_escaped(user, send, fragment):
    send(user)
    user.wait_text(fragment)


# ---------------------------------------------------------------------------- 15. forged buttons
@pytest.mark.parametrize(
    "data",
    [
        "set:size:0",
        "set:size:²",
        "alpha:abc",
        "set:alpha:nan",
        "set:alpha:0.3",
        "re:zzz:1",
        "cancel:x:1",
        "?",
    ],
)
def test_forged_button_data_is_refused_and_changes_nothing(user, data):
    user.send_text("/settings")
    menu = user.wait_message("Your settings")
    user.press(menu.message, data)
    user.api.wait_for(
        lambda: any(
            s.method == "answerCallbackQuery" and s.params.get("text") == texts.BUTTON_UNKNOWN
            for s in user.api.sent
            if s.params.get("callback_query_id")
        )
    )
    user.send_photo(picture(1000, 800, seed=24))
    user.send_photo(picture(seed=25))
    assert image_size(user.wait_photos(1)[0].files["photo"]) == (768, 614)
    assert not any(texts.SOMETHING_WENT_WRONG in t for t in user.texts())


def test_huge_mix_weights_are_refused(user):
    user.send_text("/mix")
    user.send_photo(picture(seed=26))
    user.send_album([picture(seed=27), picture(seed=28)])
    user.wait_text("Style 2 received")
    user.send_text("1e308 1e308")
    user.wait_text("at most 1000")


# ---------------------------------------------------------------------------- 10. thin pictures
def test_a_thin_picture_is_refused_at_intake(user):
    user.send_document(picture(16, 1600, seed=29), "strip.png", "image/png")
    user.wait_text("too long and thin")


# ---------------------------------------------------------------------------- 18. smaller things
def test_a_gif_animation_is_named_as_such(user):
    user.send_animation(b"\x00\x00\x00\x18ftypmp42")
    user.wait_text("I can't use GIF animations")


def test_alpha_minus_zero_reads_zero(user):
    user.send_text("/alpha -0")
    assert user.wait_text("Style strength set to") == "Style strength set to 0."


# ---------------------------------------------------------------------------- 16. bursts and load
def test_pictures_are_fetched_a_few_at_a_time_and_commands_do_not_wait_for_them(tmp_path):
    """With one download slot, a second user's picture waits while the first is fetched; /help does not."""
    with BotAPIEmulator() as api, LocalBot(bot_settings(api, tmp_path, concurrent_downloads=1)):
        first, second, asker = api.user(8101), api.user(8102), api.user(8103)
        api.delay("getFile", 2.0)
        first.send_photo(picture(seed=60))
        api.wait_for(lambda: api.calls.get("getFile") == 1)
        second.send_photo(picture(seed=61))
        asker.send_text("/help")
        asker.wait_text("/hq", timeout=1.5)  # answered while the first picture is still being fetched
        assert api.calls["getFile"] == 1 and first.texts() == [] and second.texts() == []
        second.wait_text(texts.ASK_STYLE[:20], timeout=10)
        assert api.calls["getFile"] == 2
