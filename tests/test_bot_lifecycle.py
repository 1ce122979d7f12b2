"""Bot restarts, graceful shutdown with work in flight, and webhook mode, over real HTTP."""

from __future__ import annotations

import http.client
import socket

import pytest

from bot import handlers
from testkit.emulator import BotAPIEmulator
from testkit.local_run import LocalBot
from testkit.pictures import picture
from tests.bot_helpers import bot_settings, image_size, journaled_jobs


@pytest.fixture()
def emulator():
    """Each test here restarts bots, so each gets a fresh emulator (overrides the module one)."""
    with BotAPIEmulator() as api:
        yield api


def test_conversation_and_settings_survive_a_restart(emulator, tmp_path):
    user = emulator.user(2001)
    with LocalBot(bot_settings(emulator, tmp_path)):
        user.send_text("/alpha 0.3")
        user.wait_text("Style strength set to 0.3.")
        user.send_photo(picture(140, 100, seed=1))
        user.wait_text("Now send the <b>style</b>")
    with LocalBot(bot_settings(emulator, tmp_path)):
        user.send_photo(picture(seed=2))  # the style: the content is remembered across the restart
        photo = user.wait_photos(1)[0]
        assert image_size(photo.files["photo"]) == (140, 100)
        assert "style 0.3" in photo.params["caption"]


def test_an_album_cut_short_by_a_restart_is_handed_over_after_it(emulator, tmp_path, monkeypatch):
    user = emulator.user(2002)
    monkeypatch.setattr(handlers, "ALBUM_SETTLE_S", 5.0)  # still settling when the bot stops
    with LocalBot(bot_settings(emulator, tmp_path)) as running:
        user.send_album([picture(140, 100, seed=1), picture(seed=2)])
        state = running.application.user_data[2002]
        emulator.wait_for(lambda: state.album is not None and len(state.album.pictures) == 2)
    assert user.photos() == []
    monkeypatch.setattr(handlers, "ALBUM_SETTLE_S", 0.2)
    with LocalBot(bot_settings(emulator, tmp_path)):
        photo = user.wait_photos(1)[0]  # content then style, as sent
        assert image_size(photo.files["photo"]) == (140, 100)


def test_shutdown_keeps_unfinished_jobs_and_the_next_start_finishes_them(emulator, tmp_path):
    settings = bot_settings(emulator, tmp_path, shutdown_grace_s=0.0, workers_per_device=1)
    slow, queued = emulator.user(2101), emulator.user(2102)
    with LocalBot(settings):
        slow.send_text("/hq")
        slow.send_photo(picture(seed=3))
        slow.send_photo(picture(seed=4))
        slow.wait_text("% done")  # running in the only worker
        queued.send_photo(picture(120, 90, seed=5))
        queued.send_photo(picture(seed=6))
        queued.wait_text("ahead of you")
    assert journaled_jobs(settings) == 2
    assert slow.photos() == [] and queued.photos() == []
    with LocalBot(settings):
        assert image_size(queued.wait_photos(1)[0].files["photo"]) == (120, 90)
        assert slow.wait_photos(1)[0].params["caption"].startswith("High quality")
    assert journaled_jobs(settings) == 0


def _declare_huge_body(port: int, path: str, secret: str) -> int:
    """POST headers announcing 50 MB and a few bytes of it: the answer must come before the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(50 * 1024 * 1024))
    connection.putheader("X-Telegram-Bot-Api-Secret-Token", secret)
    connection.endheaders(b"{}")
    status = connection.getresponse().status
    connection.close()
    return status


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_webhook_mode_serves_updates_and_rejects_a_wrong_secret(emulator, tmp_path):
    port = _free_port()
    settings = bot_settings(
        emulator, tmp_path, webhook_url=f"http://127.0.0.1:{port}/atelier-hook", webhook_listen="127.0.0.1",
        webhook_port=port, webhook_secret="s3cret-token",
    )  # fmt: skip
    with LocalBot(settings):
        assert emulator.webhook["url"].endswith("/atelier-hook")
        user = emulator.user(2201)
        user.send_text("/help")  # delivered by POST to the webhook with the secret header
        user.wait_text("How it works")
        forged = {"update_id": 99999, "message": emulator.new_message(2201, user.sender, text="/start")}
        assert emulator.post_to_webhook(forged, secret="wrong") == 403
        assert emulator.post_to_webhook(forged, secret=None) == 403
        assert _declare_huge_body(port, "/atelier-hook", "s3cret-token") == 413
        assert _declare_huge_body(port, "/atelier-hook", "wrong") == 403
        assert not any("Send me a photo" in text for text in user.texts())
        user.send_photo(picture(100, 80, seed=7))
        user.send_photo(picture(seed=8))
        assert image_size(user.wait_photos(1)[0].files["photo"]) == (100, 80)


def test_webhook_url_without_a_secret_is_refused(emulator, tmp_path):
    with pytest.raises(ValueError, match="WEBHOOK_SECRET is required"):
        bot_settings(emulator, tmp_path, webhook_url="https://example.org/hook")
