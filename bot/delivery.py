"""Turning job events into what the user sees: queue notes, HQ progress, results, failures."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiofiles
from PIL import Image
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.ext import Application

from bot import texts
from bot.jobs import EventSink, JobEvent, RenderJob
from bot.keyboards import cancel_hq_keyboard, result_keyboard
from bot.services import services

logger = logging.getLogger(__name__)
T = TypeVar("T")


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    """Retry transient network failures (and 429s the rate limiter gave up on) with backoff."""
    for attempt in range(attempts):
        try:
            return await call()
        except RetryAfter as exc:
            if attempt == attempts - 1:
                raise
            delay = exc.retry_after
            await asyncio.sleep(delay.total_seconds() if hasattr(delay, "total_seconds") else float(delay))
        except (TimedOut, NetworkError) as exc:
            if attempt == attempts - 1 or isinstance(exc, BadRequest):
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def result_path(results_dir: Path, user_id: int) -> Path:
    return results_dir / f"{user_id}.png"


def _to_jpeg(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=93)
        return buffer.getvalue()


def caption(job: RenderJob) -> str:
    options = job.options
    mix = f" · {len(job.styles)} styles mixed" if len(job.styles) > 1 else ""
    color = " · photo colours" if options.preserve_color != "none" else ""
    mode = "High quality" if options.hq else "Fast"
    return texts.RESULT_CAPTION.format(
        mode=mode, alpha=texts.format_alpha(options.alpha), mix=mix, color=color
    )


def make_notifier(application: Application) -> Callable[[RenderJob], EventSink]:
    """Factory the backend calls per job; it needs only the job, so kept jobs work after a restart."""

    def notifier(job: RenderJob) -> EventSink:
        return _JobMessages(application, job).handle

    return notifier


class _JobMessages:
    """The messages of one job: a status message that is edited, then the result."""

    def __init__(self, application: Application, job: RenderJob) -> None:
        self.application = application
        self.bot = application.bot
        self.job = job
        self.status_message_id: int | None = job.meta.get("status_message_id")
        self.started_at = time.monotonic()
        self.last_edit = 0.0

    async def handle(self, event: JobEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}")
        await handler(event)

    async def _status(self, text: str, keyboard=None) -> None:
        """Edit the status message, or send one if there is none yet."""
        chat_id = self.job.chat_id
        if self.status_message_id is not None:
            try:
                await with_retries(
                    lambda: self.bot.edit_message_text(
                        text, chat_id=chat_id, message_id=self.status_message_id, reply_markup=keyboard
                    )
                )
                return
            except BadRequest as exc:  # "message is not modified" or deleted by the user
                if "not modified" in str(exc).lower():
                    return
        message = await with_retries(lambda: self.bot.send_message(chat_id, text, reply_markup=keyboard))
        self.status_message_id = message.message_id

    async def _on_queued(self, event: JobEvent) -> None:
        if event.position > 0 or self.job.options.hq:
            eta = texts.human_duration(event.eta_s or 0)
            await self._status(
                texts.QUEUED_AHEAD.format(ahead=event.position, eta=eta),
                cancel_hq_keyboard() if self.job.options.hq else None,
            )

    async def _on_started(self, event: JobEvent) -> None:
        self.started_at = time.monotonic()
        if self.job.options.hq:
            await self._status(texts.HQ_PROGRESS.format(percent=0, eta="…"), cancel_hq_keyboard())
        elif self.status_message_id is not None:
            await self._status(texts.PAINTING)
        else:
            await self.bot.send_chat_action(self.job.chat_id, "upload_photo")

    async def _on_progress(self, event: JobEvent) -> None:
        now = time.monotonic()
        interval = services(self.application.bot_data).settings.progress_edit_interval_s
        if not self.job.options.hq or now - self.last_edit < interval or event.fraction <= 0:
            return
        self.last_edit = now
        elapsed = now - self.started_at
        eta = texts.human_duration(elapsed / event.fraction - elapsed)
        await self._status(
            texts.HQ_PROGRESS.format(percent=int(event.fraction * 100), eta=eta), cancel_hq_keyboard()
        )

    async def _on_done(self, event: JobEvent) -> None:
        await self._deliver(event.image, caption(self.job))

    async def _on_cancelled(self, event: JobEvent) -> None:
        if event.image is not None:
            await self._deliver(event.image, texts.CANCELLED_KEEP)
        else:
            await self._status(texts.CANCELLED_NOTHING)

    async def _on_failed(self, event: JobEvent) -> None:
        await self._status(event.message)

    async def _deliver(self, png: bytes, text: str) -> None:
        settings = services(self.application.bot_data).settings
        path = result_path(settings.results_dir, self.job.user_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiofiles.open(path, "wb") as handle:
            await handle.write(png)
        jpeg = await asyncio.to_thread(_to_jpeg, png)
        options = self.job.options
        keyboard = result_keyboard(options.alpha, options.preserve_color, options.hq)
        await with_retries(
            lambda: self.bot.send_photo(self.job.chat_id, jpeg, caption=text, reply_markup=keyboard)
        )
        if self.status_message_id is not None:
            try:
                await self.bot.delete_message(self.job.chat_id, self.status_message_id)
            except (BadRequest, NetworkError):
                logger.debug("could not delete status message", exc_info=True)
