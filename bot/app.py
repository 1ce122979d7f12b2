"""Building and running the bot: handlers, persistence, rate limiting, polling or webhook."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    PersistenceInput,
    PicklePersistence,
    TypeHandler,
    filters,
)

from bot import handlers
from bot.config import Settings
from bot.delivery import make_notifier
from bot.jobs import JobBackend
from bot.pool import EmbeddedPool
from bot.services import SERVICES_KEY, Services
from bot.updates import PerUserUpdateProcessor

logger = logging.getLogger(__name__)

COMMANDS = [
    ("start", "how to use me"),
    ("help", "everything I can do"),
    ("alpha", "how much style, 0 to 1"),
    ("mix", "blend several styles"),
    ("hq", "high quality (slow) mode"),
    ("settings", "size, colours, style strength"),
    ("cancel", "stop the current step or picture"),
    ("reset", "start over"),
    ("forget", "delete everything about me"),
]


def quiet_noisy_loggers() -> None:
    """httpx logs every request URL at INFO, and those URLs contain the bot token."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def add_handlers(application: Application) -> None:
    application.add_handler(TypeHandler(Update, handlers.gate), group=-1)
    for name, callback in (
        ("start", handlers.start), ("help", handlers.help_command), ("alpha", handlers.alpha),
        ("mix", handlers.mix), ("hq", handlers.hq), ("settings", handlers.settings_command),
        ("cancel", handlers.cancel), ("reset", handlers.reset), ("forget", handlers.forget),
        ("stats", handlers.stats),
    ):  # fmt: skip
        application.add_handler(CommandHandler(name, callback))
    application.add_handler(MessageHandler(filters.COMMAND, handlers.unknown_command))
    application.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, handlers.on_picture))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handlers.on_text))
    application.add_handler(CallbackQueryHandler(handlers.on_button))
    application.add_handler(MessageHandler(filters.ALL & ~filters.StatusUpdate.ALL, handlers.on_other_media))
    application.add_error_handler(handlers.on_error)


def build_application(settings: Settings, backend: JobBackend | None = None) -> Application:
    """The real Application; ``backend`` defaults to the embedded pool (a Redis one can replace it)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    persistence = PicklePersistence(
        filepath=settings.persistence_path,
        store_data=PersistenceInput(bot_data=False, chat_data=False, user_data=True, callback_data=False),
        update_interval=5,
    )

    async def post_init(application: Application) -> None:
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        await application.bot_data[SERVICES_KEY].backend.start()

    async def post_stop(application: Application) -> None:
        await application.bot_data[SERVICES_KEY].backend.stop()

    application = (
        ApplicationBuilder()
        .token(settings.bot_token.get_secret_value())
        .base_url(settings.bot_api_url)
        .base_file_url(settings.bot_file_url)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(PerUserUpdateProcessor())
        .persistence(persistence)
        .post_init(post_init)
        .post_stop(post_stop)
        .build()
    )
    if backend is None:
        backend = EmbeddedPool(settings, make_notifier(application))
    application.bot_data[SERVICES_KEY] = Services(settings, backend)
    add_handlers(application)
    return application


def webhook_options(settings: Settings) -> dict[str, Any]:
    """``run_webhook``/``start_webhook`` arguments: serve the public URL's own path, check the secret."""
    assert settings.webhook_url and settings.webhook_secret  # Settings enforces the pair
    return {
        "listen": settings.webhook_listen,
        "port": settings.webhook_port,
        "url_path": urlparse(settings.webhook_url).path.lstrip("/"),
        "webhook_url": settings.webhook_url,
        "secret_token": settings.webhook_secret.get_secret_value(),
        "allowed_updates": Update.ALL_TYPES,
    }


def run(settings: Settings) -> None:
    """Long polling by default; a webhook server when WEBHOOK_URL is set."""
    application = build_application(settings)
    if settings.webhook_url:
        application.run_webhook(**webhook_options(settings))
    else:
        application.run_polling(allowed_updates=Update.ALL_TYPES)
