"""The bot's parts on their own: state store, files, cancel listener, update order, Telegram's rules."""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import replace
from typing import get_args

import numpy as np
import pytest
from PIL import Image

from bot import texts
from bot.conversation import TRANSITIONS, advance
from bot.files import FileStore
from bot.jobs import Refusal
from bot.messages import Cancel, Failed, Failure
from bot.persistence import SQLitePersistence
from bot.state import ImageRef, Render, UserState, parse_alpha
from bot.storage import Database
from bot.tasks import cancel_and_wait
from bot.updates import PerUserUpdateProcessor
from bot.worker import _CancelListener, failure_of, throttled
from nst_core.control import Progress
from nst_core.errors import ImageError, OptionsError
from nst_core.images import decode_image, inspect_image
from nst_core.options import RenderOptions
from testkit.emulator import BotAPIEmulator, _ApiError, check_like_telegram, telegram_html_text
from testkit.local_run import LocalBot
from tests.bot_helpers import bot_settings


# ---------------------------------------------------------------------------- state store
def test_user_state_survives_json_round_trip():
    state = UserState(awaiting="style", content=ImageRef("f1", "u1", 10, 20))
    options = RenderOptions(weights=(0.7, 0.3), alpha=0.5, preserve_color="luminance", max_side=512, hq=True)
    render = Render(ImageRef("c", "cu"), [ImageRef("s", "su"), ImageRef("t", "tu")], options)
    state.remember("job1", render)
    state.refused = render
    state.options = replace(state.options, alpha=0.25)
    assert UserState.from_json(state.to_json()) == state


def test_rows_written_before_options_were_one_record_still_load():
    picture = {"file_id": "c", "unique_id": "cu", "width": 0, "height": 0}
    render = {"content": picture, "styles": [picture, picture], "weights": [3, 1], "alpha": 0.5,
              "preserve_color": "none", "max_side": 512, "hq": False}  # fmt: skip
    old = {"awaiting": "mix_weights", "content": None, "styles": [], "mix_requested": False,
           "settings": {"alpha": 0.75, "preserve_color": "luminance", "max_side": 1024, "hq_next": True},
           "renders": {"job1": render}, "refused": None}  # fmt: skip
    state = UserState.from_json(json.dumps(old))
    assert state.awaiting == "mix_styles"
    assert state.options == RenderOptions(alpha=0.75, preserve_color="luminance", max_side=1024, hq=True)
    assert state.renders["job1"].options.weights == (0.75, 0.25)


def test_every_conversation_transition_is_in_the_table():
    assert advance("content", "photo") == "style"
    assert advance("style", "style_picture") == "content"
    assert advance("mix_styles", "weights") == "content"
    assert all(advance(state, "restart") == "content" for state in ("content", "style", "mix_styles"))
    assert set(TRANSITIONS.values()) <= {"content", "style", "mix_styles"}
    with pytest.raises(LookupError, match="no transition from 'style' on 'weights'"):
        advance("style", "weights")


def test_each_user_is_one_row_written_off_the_event_loop(tmp_path):
    database = Database(tmp_path / "state.sqlite3")
    persistence = SQLitePersistence(database)

    async def scenario() -> tuple[dict, str]:
        for user_id in (1, 2):
            state = UserState(options=RenderOptions(alpha=user_id / 4))
            await persistence.update_user_data(user_id, state)
        await persistence.drop_user_data(1)
        writer = await database.run(lambda db: threading.current_thread().name)
        return await persistence.get_user_data(), writer

    stored, writer = asyncio.run(scenario())
    database.close()
    assert list(stored) == [2] and stored[2].options.alpha == 0.5
    assert writer.startswith("atelier-db") and writer != threading.main_thread().name


def test_an_unreadable_state_file_is_moved_aside_and_the_bot_starts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "atelier.sqlite3").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    with BotAPIEmulator() as emulator, LocalBot(bot_settings(emulator, data)):
        user = emulator.user(7001)
        user.send_text("/help")
        user.wait_text("How it works")
    assert [p.name for p in data.glob("atelier.sqlite3.corrupt-*")]


# ---------------------------------------------------------------------------- files
def test_sweep_removes_only_expired_pictures_and_results(tmp_path):
    files = FileStore(tmp_path, retention_s=3600)
    old, fresh = files.picture_path(1, "old"), files.result_path(1, "fresh")
    for path in (old, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert files.sweep() == 1
    assert not old.exists() and fresh.exists()


# ---------------------------------------------------------------------------- worker cancels
def test_a_cancel_that_arrives_before_its_job_still_cancels_it():
    receiving, sending = multiprocessing.Pipe(duplex=False)
    listener = _CancelListener(receiving)
    listener.start()
    sending.send(Cancel("job-b", keep_partial=True))
    deadline = time.monotonic() + 5
    while "job-b" not in listener._early and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not listener.begin("job-a").cancelled
    token = listener.begin("job-b")
    assert token.cancelled and listener.keep_partial


# ---------------------------------------------------------------------------- update order
def test_one_users_burst_holds_no_slot_another_user_needs():
    async def scenario() -> bool:
        processor = PerUserUpdateProcessor(max_concurrent_updates=2)
        release = asyncio.Event()

        async def blocked() -> None:
            await release.wait()

        async def quick() -> None:
            return None

        burst = [asyncio.create_task(processor.process_update(_update(1), blocked())) for _ in range(5)]
        await asyncio.sleep(0)
        other = asyncio.create_task(processor.process_update(_update(2), quick()))
        done, _ = await asyncio.wait({other}, timeout=1.0)
        release.set()
        await asyncio.gather(*burst, other)
        return other in done

    assert asyncio.run(scenario())


def _update(user_id: int):
    from telegram import Chat, Message, Update, User

    user = User(user_id, "u", is_bot=False)
    message = Message(1, date=None, chat=Chat(user_id, "private"), from_user=user, text="hi")
    return Update(user_id, message=message)


# ---------------------------------------------------------------------------- Telegram's rules
@pytest.mark.parametrize(
    "markup", ["<b>open", "a <script> b", "fish & chips", "</i>", "<b><i>x</b></i>", "<font>x</font>"]
)
def test_the_emulator_refuses_html_telegram_cannot_parse(markup):
    with pytest.raises(_ApiError, match="can't parse entities"):
        telegram_html_text(markup)


def test_the_emulator_accepts_escaped_text_and_counts_what_is_shown():
    assert telegram_html_text("<b>1 &lt; 2</b> &amp; <code>x</code>") == "1 < 2 & x"
    check_like_telegram("sendMessage", {"text": "&lt;" * 4096, "parse_mode": "HTML"})


@pytest.mark.parametrize(
    ("method", "params", "error"),
    [
        ("sendMessage", {"text": "x" * 4097}, "message is too long"),
        ("sendMessage", {"text": "<b> </b>", "parse_mode": "HTML"}, "message text is empty"),
        ("sendPhoto", {"caption": "y" * 1025}, "caption is too long"),
        ("answerCallbackQuery", {"text": "z" * 201}, "MESSAGE_TOO_LONG"),
        (
            "sendMessage",
            {"text": "ok", "reply_markup": {"inline_keyboard": [[{"text": "b", "callback_data": "d" * 65}]]}},
            "BUTTON_DATA_INVALID",
        ),
    ],
)
def test_the_emulator_refuses_what_telegram_refuses(method, params, error):
    with pytest.raises(_ApiError, match=error):
        check_like_telegram(method, params)


def test_minus_zero_alpha_is_zero():
    assert str(parse_alpha("-0")) == "0.0"


# ---------------------------------------------------------------------------- memory of the bot process
def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_inspecting_a_huge_16_bit_png_decodes_no_pixels():
    data = _encoded(Image.fromarray(np.zeros((6300, 6300), dtype=np.uint16)), "PNG")
    tracemalloc.start()
    size = inspect_image(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size == (6300, 6300) and peak < 8 * 1024 * 1024


def test_a_large_jpeg_is_decoded_at_reduced_scale_for_its_render():
    data = _encoded(Image.new("RGB", (4000, 3000), (10, 120, 200)), "JPEG")
    tracemalloc.start()
    image = decode_image(data, max_side=500)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image.size == (500, 375) and peak < 12 * 1024 * 1024  # full size would be 36 MB


def test_thin_pictures_are_refused_with_a_reason():
    with pytest.raises(ImageError, match="too long and thin"):
        inspect_image(_encoded(Image.new("RGB", (16, 1600)), "PNG"))


def test_the_bot_process_never_imports_torch():
    code = "import sys, bot.app, bot.__main__; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------------- worker messages
def test_progress_is_throttled_in_the_worker_before_it_crosses_the_pipe():
    sent = []
    report = throttled(sent.append, interval_s=60.0)
    for step in range(1, 501):
        report(Progress(step, 500, 0.0, step / 500))
    assert [progress.step for progress in sent] == [1]  # one report a minute; the first goes at once


def test_every_failure_and_refusal_kind_has_words_and_details_are_escaped():
    assert set(texts.FAILURES) == set(get_args(Failure))
    assert set(texts.REFUSALS) == set(get_args(Refusal))
    assert (
        texts.failure("bad_picture", "image too <large>.")
        == "I couldn't use that picture: image too &lt;large&gt;."
    )
    assert texts.refusal("queue_full", waiting=7) == texts.QUEUE_FULL.format(waiting=7)


@pytest.mark.parametrize(
    ("error", "failure", "detail"),
    [
        (ImageError("not an image"), "bad_picture", "not an image"),
        (OptionsError("alpha must be between 0 and 1"), "invalid_request", "alpha must be between 0 and 1"),
        (RuntimeError("CUDA out of memory"), "out_of_memory", ""),
        (KeyError("bug"), "generic", ""),
    ],
)
def test_worker_failures_are_kinds_not_sentences(error, failure, detail):
    assert failure_of("job", error) == Failed("job", failure, detail)


def test_a_task_that_swallows_a_cancel_is_still_stopped():
    """As redis-py now and then does mid-command: the first cancel is caught and the loop goes on."""
    swallowed = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    async def run() -> bool:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0.02)
        await asyncio.wait_for(cancel_and_wait([task]), timeout=2)
        return task.cancelled()

    assert asyncio.run(run())
    assert swallowed == [True]  # a single cancel would have left it running
