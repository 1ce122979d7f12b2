"""Turning an incoming message into a validated picture, or a clear reply saying why not."""

from __future__ import annotations

import asyncio
import html
import logging
from dataclasses import dataclass
from pathlib import Path, PurePath

from telegram import Bot, Message
from telegram.error import TelegramError

from bot import texts
from bot.files import write_atomically
from bot.retries import with_retries
from bot.services import Services
from bot.state import ImageRef
from nst_core.errors import ImageError
from nst_core.images import IMAGE_SUFFIXES, ImageLimits, inspect_image, megabytes

logger = logging.getLogger(__name__)


class IntakeError(Exception):
    """The picture can't be used; ``str(exc)`` is the reply for the user."""


@dataclass(frozen=True)
class Incoming:
    ref: ImageRef
    file_size: int | None


def describe(message: Message, max_bytes: int) -> Incoming:
    """What picture this message carries; raises IntakeError for anything that isn't one."""
    if message.photo:
        largest = message.photo[-1]
        incoming = Incoming(
            ImageRef(largest.file_id, largest.file_unique_id, largest.width, largest.height),
            largest.file_size,
        )
    elif message.document:
        document = message.document
        name = document.file_name or "file"
        mime = document.mime_type or "unknown type"
        looks_like_image = mime.startswith("image/") or PurePath(name).suffix.lower() in IMAGE_SUFFIXES
        if not looks_like_image:
            raise IntakeError(
                texts.NOT_AN_IMAGE_DOCUMENT.format(name=html.escape(name), mime=html.escape(mime))
            )
        incoming = Incoming(ImageRef(document.file_id, document.file_unique_id), document.file_size)
    else:
        raise IntakeError(texts.NOT_A_PICTURE)
    if incoming.file_size and incoming.file_size > max_bytes:
        raise IntakeError(too_big(incoming.file_size, max_bytes))
    return incoming


def too_big(size: int, limit: int) -> str:
    return texts.FILE_TOO_BIG.format(size=megabytes(size), limit=megabytes(limit))


async def fetch(bot: Bot, ref: ImageRef, user_id: int, services: Services) -> Path:
    """The picture's file on disk, downloaded from Telegram unless already there; IntakeError on failure."""
    path = services.files.picture_path(user_id, ref.unique_id)
    if path.exists():
        path.touch()  # used again: keep it for another retention period
        return path
    limit = services.settings.max_download_bytes

    async def download() -> bytes:
        telegram_file = await bot.get_file(ref.file_id)
        if telegram_file.file_size and telegram_file.file_size > limit:
            raise IntakeError(too_big(telegram_file.file_size, limit))
        return bytes(await telegram_file.download_as_bytearray())

    try:
        data = await with_retries(download, idempotent=True)
    except TelegramError as exc:
        logger.warning("download of %s failed: %s", ref.unique_id, exc)
        raise IntakeError(texts.DOWNLOAD_FAILED) from exc
    await asyncio.to_thread(write_atomically, path, data)
    return path


def _inspect_file(path: Path, limits: ImageLimits) -> tuple[int, int]:
    return inspect_image(path.read_bytes(), limits)


async def receive_picture(message: Message, bot: Bot, services: Services) -> ImageRef:
    """Download the message's picture and check it (header and structure, in a thread), so bad files
    are caught now; the pixels are decoded later, in a worker, at the size the render needs."""
    settings = services.settings
    incoming = describe(message, settings.max_download_bytes)
    limits = ImageLimits(max_bytes=settings.max_download_bytes, max_pixels=settings.max_pixels)
    async with services.downloads:
        path = await fetch(bot, incoming.ref, message.from_user.id, services)
        try:
            width, height = await asyncio.to_thread(_inspect_file, path, limits)
        except ImageError as exc:
            path.unlink(missing_ok=True)
            raise IntakeError(texts.failure("bad_picture", str(exc))) from exc
    ref = incoming.ref
    return ImageRef(ref.file_id, ref.unique_id, width, height)
