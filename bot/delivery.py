"""Turning job events into what the user sees: queue notes, HQ progress, results, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from telegram.error import BadRequest, NetworkError
from telegram.ext import Application

from bot import texts
from bot.jobs import EventSink, JobEvent, RenderJob
from bot.keyboards import cancel_hq_keyboard, result_keyboard
from bot.ratelimit import BACKGROUND
from bot.retries import with_retries
from nst_core.images import encode_image

logger = logging.getLogger(__name__)


def _jpeg_of(path: Path) -> bytes:
    with Image.open(path) as image:
        return encode_image(image, "JPEG")


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
        self.cancel_keyboard = cancel_hq_keyboard(job.job_id) if job.options.hq else None

    async def handle(self, event: JobEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}")
        await handler(event)

    async def _status(self, text: str, keyboard=None, priority: int | None = BACKGROUND) -> None:
        """Edit the status message, or send one if there is none yet (``priority`` None: that of the
        update being handled)."""
        chat_id = self.job.chat_id
        if self.status_message_id is not None:
            try:
                await with_retries(
                    lambda: self.bot.edit_message_text(
                        text,
                        chat_id=chat_id,
                        message_id=self.status_message_id,
                        reply_markup=keyboard,
                        rate_limit_args=priority,
                    ),
                    idempotent=True,
                )
                return
            except BadRequest as exc:  # "message is not modified" or deleted by the user
                if "not modified" in str(exc).lower():
                    return
        message = await with_retries(
            lambda: self.bot.send_message(chat_id, text, reply_markup=keyboard, rate_limit_args=priority),
            idempotent=False,
        )
        self.status_message_id = message.message_id
        self.job.meta["status_message_id"] = message.message_id  # journaled: a restart edits it

    async def _on_queued(self, event: JobEvent) -> None:
        """Said while the picture that started the job is handled: it answers that picture."""
        if event.position > 0 or self.job.options.hq:
            eta = texts.human_duration(event.eta_s or 0)
            await self._status(
                texts.QUEUED_AHEAD.format(ahead=event.position, eta=eta), self.cancel_keyboard, None
            )

    async def _on_started(self, event: JobEvent) -> None:
        if self.job.options.hq:
            await self._status(texts.HQ_PROGRESS.format(percent=0, eta="…"), self.cancel_keyboard)
        elif self.status_message_id is not None:
            await self._status(texts.PAINTING)
        else:
            await self.bot.send_chat_action(self.job.chat_id, "upload_photo", rate_limit_args=BACKGROUND)

    async def _on_progress(self, event: JobEvent) -> None:
        """Reports arrive already throttled by the worker (``progress_edit_interval_s``); the ETA is
        the engine's forecast (calibrated on the device, capped by the time budget)."""
        if not self.job.options.hq:
            return
        eta = "…" if event.eta_s is None else texts.human_duration(event.eta_s)
        await self._status(
            texts.HQ_PROGRESS.format(percent=int(event.fraction * 100), eta=eta), self.cancel_keyboard
        )

    async def _on_done(self, event: JobEvent) -> None:
        text = texts.result_caption(self.job.options, len(self.job.styles))
        if event.stopped == "time_budget":
            budget = texts.human_duration(self.job.options.time_budget_s or 0)
            text += texts.TIME_BUDGET_NOTE.format(budget=budget)
        await self._deliver(event.image, text)

    async def _on_cancelled(self, event: JobEvent) -> None:
        if event.image is not None:
            await self._deliver(event.image, texts.CANCELLED_KEEP)
        else:
            await self._status(texts.CANCELLED_NOTHING)

    async def _on_failed(self, event: JobEvent) -> None:
        await self._status(texts.failure(event.failure, event.detail))

    async def _deliver(self, png: Path, text: str) -> None:
        """Send the result as a photo, then hand the PNG to the backend to keep for "Full-size file"."""
        job = self.job
        if not png.exists():  # sent before a restart (the PNG was kept); only the journal lagged
            return
        jpeg = await asyncio.to_thread(_jpeg_of, png)
        keyboard = result_keyboard(job.job_id, job.options.preserve_color, job.options.hq)
        await with_retries(
            lambda: self.bot.send_photo(
                job.chat_id, jpeg, caption=text, reply_markup=keyboard, rate_limit_args=BACKGROUND
            ),
            idempotent=False,
        )
        await self.application.bot_data.services.backend.keep_result(job, png)
        if self.status_message_id is not None:
            try:
                await self.bot.delete_message(
                    self.job.chat_id, self.status_message_id, rate_limit_args=BACKGROUND
                )
            except (BadRequest, NetworkError):
                logger.debug("could not delete status message", exc_info=True)
