"""The webhook endpoint: Telegram POSTs updates here (behind your HTTPS reverse proxy).

Checked before the body is read: the path, the secret header (compared in constant time) and the
declared size; the body is read with a hard cap. Telegram sends updates of a few kB, so anything
over ``MAX_BODY_BYTES`` is refused with 413 without being buffered.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

import tornado.web
from telegram import Update
from telegram.ext import Application
from tornado.httpserver import HTTPServer

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
Accept = Callable[[Update], Awaitable[None]]  # takes an update in; once it returns, Telegram hears 200


@tornado.web.stream_request_body
class _UpdateHandler(tornado.web.RequestHandler):
    def initialize(self, bot_application: Application, accept: Accept, secret: str) -> None:
        self.bot_application, self.accept = bot_application, accept
        self.secret = secret.encode()
        self.body = bytearray()

    def prepare(self) -> None:
        """Runs once the headers are in, before any of the body is read."""
        if self.request.method != "POST":
            raise tornado.web.HTTPError(405)
        given = self.request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret):
            raise tornado.web.HTTPError(403)
        try:
            declared = int(self.request.headers.get("Content-Length", "0"))
        except ValueError:
            raise tornado.web.HTTPError(400) from None
        if declared > MAX_BODY_BYTES:
            raise tornado.web.HTTPError(413)
        self.request.connection.set_max_body_size(MAX_BODY_BYTES)

    def data_received(self, chunk: bytes) -> None:
        self.body.extend(chunk)
        if len(self.body) > MAX_BODY_BYTES:
            raise tornado.web.HTTPError(413)

    async def post(self) -> None:
        try:
            update = Update.de_json(json.loads(self.body), self.bot_application.bot)
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("webhook: an update that could not be read (%s)", type(exc).__name__)
            raise tornado.web.HTTPError(400) from None
        await self.accept(update)  # if this fails, Telegram gets a 500 and sends the update again
        self.set_status(200)

    def log_exception(self, typ, value, tb) -> None:  # 403s and 413s are expected; no tracebacks
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)


class WebhookServer:
    def __init__(
        self, application: Application, listen: str, port: int, path: str, secret: str, accept: Accept
    ) -> None:
        arguments = {"bot_application": application, "accept": accept, "secret": secret}
        routes = [(f"/{path.lstrip('/')}", _UpdateHandler, arguments)]
        self._server = HTTPServer(tornado.web.Application(routes), max_body_size=MAX_BODY_BYTES)
        self.listen, self.port = listen, port

    def start(self) -> None:
        self._server.listen(self.port, address=self.listen)

    async def stop(self) -> None:
        self._server.stop()
        await self._server.close_all_connections()
