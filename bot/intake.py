"""Turning an incoming message into a validated picture, or a clear reply saying why not."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import PurePath

from telegram import Bot, Message
from telegram.error import TelegramError

from bot import texts
from bot.services import Services
from bot.state import ImageRef
from nst_core.errors import ImageError
from nst_core.images import ImageLimits, decode_image

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".jfif"}


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
        looks_like_image = mime.startswith("image/") or PurePath(name).suffix.lower() in IMAGE_EXTENSIONS
        if not looks_like_image:
            raise IntakeError(texts.NOT_AN_IMAGE_DOCUMENT.format(name=name, mime=mime))
        incoming = Incoming(ImageRef(document.file_id, document.file_unique_id), document.file_size)
    else:
        raise IntakeError(texts.NOT_A_PICTURE)
    if incoming.file_size and incoming.file_size > max_bytes:
        raise IntakeError(
            texts.FILE_TOO_BIG.format(
                size=texts.human_size(incoming.file_size), limit=texts.human_size(max_bytes)
            )
        )
    return incoming


async def fetch(bot: Bot, ref: ImageRef, services: Services) -> bytes:
    """The picture's bytes, from the cache or Telegram; raises IntakeError on failure."""
    cached = services.files.get(ref.unique_id)
    if cached is not None:
        return cached
    try:
        telegram_file = await bot.get_file(ref.file_id)
        if telegram_file.file_size and telegram_file.file_size > services.settings.max_download_bytes:
            raise IntakeError(
                texts.FILE_TOO_BIG.format(
                    size=texts.human_size(telegram_file.file_size),
                    limit=texts.human_size(services.settings.max_download_bytes),
                )
            )
        data = bytes(await telegram_file.download_as_bytearray())
    except TelegramError as exc:
        logger.warning("download of %s failed: %s", ref.unique_id, exc)
        raise IntakeError(texts.DOWNLOAD_FAILED) from exc
    services.files.put(ref.unique_id, data)
    return data


async def receive_picture(message: Message, bot: Bot, services: Services) -> ImageRef:
    """Download and fully decode (in a thread) the message's picture, so bad files are caught now."""
    settings = services.settings
    incoming = describe(message, settings.max_download_bytes)
    data = await fetch(bot, incoming.ref, services)
    limits = ImageLimits(max_bytes=settings.max_download_bytes, max_pixels=settings.max_pixels)
    try:
        image = await asyncio.to_thread(decode_image, data, limits)
    except ImageError as exc:
        raise IntakeError(texts.BAD_IMAGE.format(reason=exc)) from exc
    ref = incoming.ref
    return ImageRef(ref.file_id, ref.unique_id, image.width, image.height)
