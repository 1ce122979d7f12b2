"""Building and running the bot: handlers, persistence, rate limiting, polling or webhook, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    Defaults,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import handlers
from bot.config import Settings
from bot.delivery import make_notifier
from bot.files import FileStore
from bot.flood import FloodGuard, LocalFloodGuard, RedisFloodGuard
from bot.health import beat_forever, heartbeat_path
from bot.jobs import JobBackend
from bot.persistence import SQLitePersistence
from bot.pool import EmbeddedPool
from bot.ratelimit import PriorityRateLimiter
from bot.redis_backend import RedisBackend
from bot.redis_jobs import connect
from bot.redis_state import RedisUpdateProcessor, RedisUserStore
from bot.services import CONTEXT_TYPES, Services
from bot.storage import Database
from bot.updates import AlbumDue, AlbumLeftAlone, PerUserUpdateProcessor
from bot.webhook import WebhookServer

logger = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 3600.0
PERSISTENCE_INTERVAL_S = 1.0  # a kill loses at most this much of the conversations' last changes

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


class RedactingFormatter(logging.Formatter):
    """Log lines never show the bot token or the webhook secret, whatever library wrote them."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self.secrets = [secret for secret in secrets if secret]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


def configure_logging(settings: Settings) -> None:
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    formatter = RedactingFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", [settings.bot_token.get_secret_value(), secret]
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    for name in ("httpx", "httpcore"):  # they log every request URL, which contains the token
        logging.getLogger(name).setLevel(logging.WARNING)


def add_handlers(application: Application) -> None:
    application.add_handler(TypeHandler(Update, handlers.gate), group=-1)
    for name in [*(name for name, _ in COMMANDS), "stats"]:  # /stats: admins only, not in the menu
        application.add_handler(CommandHandler(name, getattr(handlers, f"{name}_command")))
    application.add_handler(MessageHandler(filters.COMMAND, handlers.unknown_command))
    pictures = filters.PHOTO | (filters.Document.ALL & ~filters.ANIMATION)  # a GIF comes as both
    application.add_handler(MessageHandler(pictures, handlers.on_picture))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handlers.on_text))
    application.add_handler(CallbackQueryHandler(handlers.on_button))
    application.add_handler(TypeHandler(AlbumDue, handlers.on_album_due))
    application.add_handler(TypeHandler(AlbumLeftAlone, handlers.on_album_left_alone))
    application.add_handler(MessageHandler(filters.ALL & ~filters.StatusUpdate.ALL, handlers.on_other_media))
    application.add_error_handler(handlers.on_error)


@dataclass
class _Parts:
    """What differs between one process (the embedded pool) and a front end of many (Redis)."""

    processor: PerUserUpdateProcessor
    persistence: SQLitePersistence | None
    flood: FloodGuard
    strangers: FloodGuard
    make_backend: Callable[[Application, FileStore], JobBackend]
    close: Callable[[], Awaitable[None]]


def _embedded_parts(settings: Settings) -> _Parts:
    database = Database(settings.database_path)

    async def close() -> None:
        database.close()

    return _Parts(
        PerUserUpdateProcessor(),
        SQLitePersistence(database, update_interval=PERSISTENCE_INTERVAL_S),
        LocalFloodGuard(settings.flood_messages, settings.flood_window_s),
        LocalFloodGuard(1, settings.flood_window_s),
        lambda application, files: EmbeddedPool(settings, make_notifier(application), database, files),
        close,
    )


def _redis_parts(settings: Settings) -> _Parts:
    redis = connect(settings.redis_url)
    window = settings.flood_window_s
    return _Parts(
        RedisUpdateProcessor(RedisUserStore(redis)),
        None,
        RedisFloodGuard(redis, settings.redis_url, "messages", settings.flood_messages, window),
        RedisFloodGuard(redis, settings.redis_url, "strangers", 1, window),
        lambda application, files: RedisBackend(settings, make_notifier(application), files, redis),
        redis.aclose,
    )


def build_application(settings: Settings, backend: JobBackend | None = None) -> Application:
    """The real Application; ``backend`` defaults to the one ``settings.backend`` names."""
    parts = _redis_parts(settings) if settings.backend == "redis" else _embedded_parts(settings)
    files = FileStore(settings.data_dir, settings.retention_hours * 3600)

    housekeeping: list[asyncio.Task] = []

    async def post_init(application: Application) -> None:
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        await application.bot_data.services.backend.start()
        for user_id, state in application.user_data.items():  # saved mid-album: its timer died with us
            if state.album is not None:
                settling = handlers.album_settling(application, user_id, state.album)
                housekeeping.append(asyncio.create_task(settling))
        housekeeping.append(asyncio.create_task(_sweep_forever(files), name="sweep"))
        heartbeat = heartbeat_path(settings.data_dir)
        housekeeping.append(asyncio.create_task(beat_forever(heartbeat), name="heartbeat"))

    async def post_stop(application: Application) -> None:
        for task in housekeeping:
            task.cancel()
        await application.bot_data.services.backend.stop()

    async def post_shutdown(application: Application) -> None:
        await parts.close()

    builder = (
        ApplicationBuilder()
        .token(settings.bot_token.get_secret_value())
        .base_url(settings.bot_api_url)
        .base_file_url(settings.bot_file_url)
        .local_mode(settings.local_bot_api)
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .context_types(CONTEXT_TYPES)
        .rate_limiter(PriorityRateLimiter(max_retries=3))
        .concurrent_updates(parts.processor)
        .post_init(post_init)
        .post_stop(post_stop)
        .post_shutdown(post_shutdown)
    )
    if parts.persistence is not None:
        builder = builder.persistence(parts.persistence)
    application = builder.build()
    if isinstance(parts.processor, RedisUpdateProcessor):
        parts.processor.application = application
    backend = backend or parts.make_backend(application, files)
    application.bot_data.services = Services(settings, backend, files, parts.flood, parts.strangers)
    add_handlers(application)
    return application


async def _sweep_forever(files: FileStore) -> None:
    """Pictures and results expire after the retention period (README: what is stored, how long)."""
    while True:
        removed = await asyncio.to_thread(files.sweep)
        if removed:
            logger.info("swept %d expired picture(s) and result(s)", removed)
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def start_bot(application: Application, settings: Settings) -> WebhookServer | None:
    """Initialize, start the pool, then receive updates by long polling or on the webhook."""
    await application.initialize()
    await application.post_init(application)
    server = None
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value()
        processor = application.update_processor
        accept = (
            processor.accept if isinstance(processor, RedisUpdateProcessor) else application.update_queue.put
        )
        server = WebhookServer(
            application, settings.webhook_listen, settings.webhook_port, urlparse(settings.webhook_url).path,
            secret, accept,
        )  # fmt: skip
        server.start()
        await application.bot.set_webhook(
            settings.webhook_url, allowed_updates=Update.ALL_TYPES, secret_token=secret
        )
    else:
        await application.updater.start_polling(
            poll_interval=0.0, timeout=settings.poll_timeout_s, allowed_updates=Update.ALL_TYPES
        )
    await application.start()
    return server


async def stop_bot(application: Application, server: WebhookServer | None) -> None:
    """Stop taking updates, let the pool finish or keep its jobs, then close everything."""
    if application.updater.running:
        await application.updater.stop()
    if server is not None:
        await server.stop()
    if application.running:
        await application.stop()
    await application.post_stop(application)
    await application.shutdown()
    await application.post_shutdown(application)


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM. A second signal during the shutdown grace changes nothing: the
    shutdown already under way finishes, and the journal holds every unfinished job regardless."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        if stopping.is_set():
            logger.warning("%s again: already stopping, please wait", signal.Signals(number).name)
        stopping.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    application = build_application(settings)
    server = None
    try:
        server = await start_bot(application, settings)
        logger.info("Atelier is running (%s)", "webhook" if server else "long polling")
        await stopping.wait()
    finally:
        logger.info("stopping")
        try:
            await stop_bot(application, server)
        except Exception:
            logger.exception("stopping did not finish cleanly")
