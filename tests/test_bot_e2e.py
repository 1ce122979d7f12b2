"""The real Application over real HTTP against the Bot API emulator, with the stub engine in real workers."""

from __future__ import annotations

import re

import pytest

from bot import texts
from testkit.pictures import picture
from testkit.stubs import CRASH_COLOUR, HANG_COLOUR
from tests.bot_helpers import USER_IDS, image_size


def button(sent, action: str) -> str:
    """The callback data of the button whose data starts with ``<verb>:<action>`` under a bot message."""
    rows = sent.message["reply_markup"]["inline_keyboard"]
    return next(b["callback_data"] for row in rows for b in row if b["callback_data"].split(":")[1] == action)


def result_photo(user, count: int = 1):
    photo = user.wait_photos(count)[count - 1]
    return photo, image_size(photo.files["photo"])


def test_two_pictures_give_a_result_of_the_right_size(user):
    user.send_text("/start")
    user.wait_text("Send me a photo")
    user.send_photo(picture(200, 150, seed=1))
    user.wait_text("Now send the <b>style</b>")
    user.send_photo(picture(90, 90, seed=2))
    photo, size = result_photo(user)
    assert size == (200, 150)
    assert photo.params["caption"].startswith("Fast")
    buttons = [b["callback_data"] for row in photo.message["reply_markup"]["inline_keyboard"] for b in row]
    assert {f"re:{action}:" for action in ("less", "more", "color", "hq", "file")} == {
        data[: data.rindex(":") + 1] for data in buttons
    }


def test_large_photo_is_downscaled_to_the_output_size(user):
    user.send_photo(picture(1600, 1200, seed=3, fmt="JPEG"))
    user.send_photo(picture(100, 100, seed=4))
    _, size = result_photo(user)
    assert size == (768, 576)


def test_documents_and_albums(user):
    user.send_document(picture(120, 80, seed=5), "photo.png", "image/png")
    user.wait_text("Now send")
    user.send_document(picture(64, 64, seed=6, fmt="WEBP"), "style.webp", "image/webp")
    _, size = result_photo(user)
    assert size == (120, 80)
    user.send_album([picture(100, 60, seed=7), picture(50, 50, seed=8)])
    _, size = result_photo(user, 2)
    assert size == (100, 60)
    user.send_album([picture(90, 60, seed=9), picture(50, 50, seed=10), picture(40, 40, seed=11)])
    photo, _ = result_photo(user, 3)
    assert "2 styles mixed" in photo.params["caption"]


def test_alpha_command(user):
    user.send_text("/alpha abc")
    user.wait_text("is not a number")
    user.send_text("/alpha 7")
    user.wait_text("between 0 (photo only) and 1")
    user.send_text("/alpha")
    user.wait_text("Style strength (alpha) is 1")
    user.send_text("/alpha 0.5")
    user.wait_text("Style strength set to 0.5.")
    user.send_photo(picture(seed=12))
    user.send_photo(picture(seed=13))
    photo, _ = result_photo(user)
    assert "style 0.5" in photo.params["caption"]
    user.send_text("/alpha 0.25")
    offer = user.wait_message("Repaint your last")
    user.press(offer.message, "alpha:rerender")
    photo, _ = result_photo(user, 2)
    assert "style 0.25" in photo.params["caption"]


def test_mix_flow(user):
    user.send_text("/mix")
    user.wait_text("First send the <b>photo</b>")
    user.send_photo(picture(seed=20))
    user.wait_text("send 2–4 style pictures")
    user.send_photo(picture(seed=21))
    user.wait_text("Style 1 received")
    user.send_text("0.7 0.3")
    user.wait_text("Send at least one more style")
    user.send_photo(picture(seed=22))
    user.wait_text("Style 2 received")
    user.send_text("0.7")
    user.wait_text("You sent 1 weight(s) but there are 2 styles")
    user.send_text("1 -1")
    user.wait_text("zero or positive")
    user.send_text("0.7 0.3")
    photo, size = result_photo(user)
    assert "2 styles mixed" in photo.params["caption"] and size == (160, 120)
    user.send_text("/mix")
    user.wait_text("Mixing styles")
    user.send_album([picture(seed=23), picture(seed=24)])
    prompt = user.wait_message("Style 2 received", after=photo.message["message_id"])
    user.press(prompt.message, "mix:equal")
    result_photo(user, 2)


def test_hq_progress_and_result(user):
    user.send_text("/hq")
    user.wait_text("High quality mode is on")
    user.send_photo(picture(seed=30))
    user.send_photo(picture(seed=31))
    user.wait_text("% done")
    photo, size = result_photo(user)
    assert photo.params["caption"].startswith("High quality") and size == (160, 120)
    started, *reports = [t for t in user.texts() if "% done" in t]
    assert "0% done, about … left" in started  # before the engine's forecast
    assert reports
    forecasts = [int(re.search(r"about (\d+) s left", t).group(1)) for t in reports]  # type: ignore[union-attr]
    assert forecasts[0] == 3  # the stub's job takes 3 s, and says so before its first step
    assert forecasts == sorted(forecasts, reverse=True)


@pytest.mark.parametrize(
    ("choice", "expected"), [("keep", texts.CANCELLED_KEEP), ("drop", texts.CANCELLED_NOTHING)]
)
def test_hq_cancel(user, choice, expected):
    user.send_text("/hq")
    user.send_photo(picture(seed=32))
    user.send_photo(picture(seed=33))
    user.wait_text("% done")
    user.send_text("/cancel")
    question = user.wait_message(texts.CANCEL_HQ_ASK)
    user.press(question.message, button(question, choice))
    user.wait_text(expected)
    if choice == "keep":
        assert user.photos()[-1].params["caption"] == texts.CANCELLED_KEEP


def test_second_job_while_one_runs_is_refused(user):
    user.send_text("/hq")
    user.send_photo(picture(seed=34))
    user.send_photo(picture(seed=35))
    user.wait_text("% done")
    user.send_photo(picture(seed=36))
    user.send_photo(picture(seed=37))
    user.wait_text(texts.BUSY)
    result_photo(user)


def test_result_buttons(user):
    user.send_photo(picture(seed=40))
    user.send_photo(picture(seed=41))
    first, _ = result_photo(user)
    user.press(first.message, button(first, "less"))
    second, _ = result_photo(user, 2)
    assert "style 0.75" in second.params["caption"]
    user.press(second.message, button(second, "color"))
    third, _ = result_photo(user, 3)
    assert "photo colours" in third.params["caption"]
    user.press(third.message, button(third, "file"))
    document = user.api.wait_for(lambda: next((s for s in user.log() if s.method == "sendDocument"), None))
    assert image_size(document.files["document"]) == (160, 120)
    assert document.files["document"].startswith(b"\x89PNG")
    user.press(third.message, button(third, "hq"))
    hq, _ = result_photo(user, 4)
    assert hq.params["caption"].startswith("High quality")


@pytest.mark.parametrize(
    ("send", "reply"),
    [
        (lambda u: u.send_text("hello"), "I was expecting a picture"),
        (lambda u: u.send_sticker(), "I can't use stickers"),
        (lambda u: u.send_video(), "I can't use videos"),
        (
            lambda u: u.send_document(b"%PDF-1.4 fake", "report.pdf", "application/pdf"),
            "doesn't look like an image",
        ),
        (lambda u: u.send_document(_truncated_jpeg(), "broken.jpg", "image/jpeg"), "damaged or truncated"),
        (lambda u: u.send_document(b"just text", "notes.png", "image/png"), "not an image"),
        (
            lambda u: u.send_document(b"x" * 100, "huge.png", "image/png", declared_size=25 * 1024 * 1024),
            "at most 20.0 MB",
        ),
        (lambda u: u.send_document(_bomb_png(), "bomb.png", "image/png"), "image too large"),
        (lambda u: u.send_text("/frobnicate"), "I don't know /frobnicate"),
        (lambda u: u.send_text("/cancel"), "There's nothing to cancel"),
    ],
)
def test_bad_input_gets_a_helpful_reply(user, send, reply):
    send(user)
    text = user.wait_text(reply)
    assert "Traceback" not in text


def _truncated_jpeg() -> bytes:
    data = picture(400, 300, fmt="JPEG")
    return data[: len(data) // 2]


def _bomb_png() -> bytes:
    from tests.test_images import png_declaring

    return png_declaring(30000, 30000)


def test_reset_and_forget(user, bot):
    user.send_photo(picture(seed=50))
    user.wait_text("Now send")
    user.send_text("/reset")
    user.wait_text("Started over")
    user.send_photo(picture(seed=51))
    user.wait_text("Now send")
    user.send_photo(picture(seed=52))
    photo, _ = result_photo(user)
    user.send_text("/forget")
    user.wait_text(texts.FORGET_DONE)
    assert not (bot.settings.data_dir / "results" / str(user.user_id)).exists()
    calls_before = user.api.calls.get("answerCallbackQuery", 0)
    user.press(photo.message, button(photo, "file"))
    user.api.wait_for(lambda: user.api.calls.get("answerCallbackQuery", 0) > calls_before)
    assert not any(s.method == "sendDocument" for s in user.log())


def test_concurrent_users_do_not_share_state(emulator, bot):
    alice, bob = emulator.user(next(USER_IDS), "Alice"), emulator.user(next(USER_IDS), "Bob")
    alice.send_photo(picture(120, 90, seed=60))
    bob.send_photo(picture(80, 120, seed=61))
    alice.wait_text("Now send")
    bob.wait_text("Now send")
    alice.send_photo(picture(seed=62))
    _, alice_size = result_photo(alice)
    assert alice_size == (120, 90)
    assert bob.photos() == []
    bob.send_photo(picture(seed=63))
    _, bob_size = result_photo(bob)
    assert bob_size == (80, 120)


def test_crashed_worker_is_reported_and_replaced(user, bot):
    restarts = bot.run(_restarts(bot))
    user.send_photo(picture(seed=70))
    user.send_photo(picture(seed=71, corner=CRASH_COLOUR))
    user.wait_text("The painter crashed")
    user.send_photo(picture(seed=72))
    user.send_photo(picture(seed=73))
    result_photo(user)
    assert bot.run(_restarts(bot)) == restarts + 1


def test_hung_worker_times_out_and_is_replaced(user):
    user.send_photo(picture(seed=74))
    user.send_photo(picture(seed=75, corner=HANG_COLOUR))
    user.wait_text("took too long", timeout=30)
    user.send_photo(picture(seed=76))
    user.send_photo(picture(seed=77))
    result_photo(user)


async def _restarts(bot) -> int:
    return bot.application.bot_data.services.backend.restarts


def test_telegram_429_and_5xx_are_survived(user, emulator):
    emulator.fail_next("sendPhoto", status=429, retry_after=1)
    user.send_photo(picture(seed=80))
    user.send_photo(picture(seed=81))
    result_photo(user)
    emulator.fail_next("sendPhoto", status=502)
    user.send_photo(picture(seed=82))
    user.send_photo(picture(seed=83))
    result_photo(user, 2)
    assert emulator.calls["sendPhoto"] >= 4


def test_settings_keyboard(user):
    user.send_text("/settings")
    menu = user.wait_message("Your settings")
    user.press(menu.message, "set:color:luminance")
    user.wait_text("Keep photo colours: on (luminance)")
    user.press(menu.message, "set:size:512")
    user.wait_text("Output size: 512px")
    user.send_photo(picture(1000, 800, seed=84))
    user.send_photo(picture(seed=85))
    photo, size = result_photo(user)
    assert size == (512, 410) and "photo colours" in photo.params["caption"]


def test_commands_are_registered(emulator, bot):
    assert {c["command"] for c in emulator.commands} >= {"start", "help", "alpha", "mix", "hq", "cancel"}


def test_help_mentions_every_feature(user):
    user.send_text("/help")
    text = user.wait_text("How it works")
    for command in ("/alpha", "/mix", "/hq", "/settings", "/cancel", "/reset", "/forget", "0.7 0.3"):
        assert command in text
