"""A local HTTP emulator of the Telegram Bot API, for end-to-end tests and ``make demo``.

It speaks real HTTP with Telegram's JSON shapes, so the real ``Application`` (httpx transport,
rate limiter, retries) runs against it unchanged via ``base_url``/``base_file_url``. Tests act as
users through ``EmulatedUser`` (text, commands, photos, documents, albums, stickers, button
presses) and read what the bot sent from ``chat_log``. Fault injection: ``fail_next`` (429 with
retry_after, 5xx) and ``delay`` (slow responses). It is as strict as Telegram where a lenient
emulator would hide a bug: HTML that Telegram cannot parse, texts over 4096 and captions over 1024
characters, callback data over 64 bytes and alert texts over 200 characters are refused with
Telegram's 400 errors (``rejected`` lists them). Once the bot calls ``setWebhook``, updates are
POSTed to its URL with the ``X-Telegram-Bot-Api-Secret-Token`` header, as Telegram does.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import html
import io
import itertools
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from PIL import Image

BOT_USER = {
    "id": 777000,
    "is_bot": True,
    "first_name": "Atelier",
    "username": "atelier_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
PHOTO_SIZES = (90, 320, 800, 1280)  # Telegram's thumbnail ladder; the largest is what bots should take
MAX_TEXT, MAX_CAPTION, MAX_CALLBACK_DATA, MAX_ALERT = 4096, 1024, 64, 200
HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "tg-emoji",
    "code", "pre", "blockquote",
}  # fmt: skip
HTML_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[A-Za-z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*>"
)
CANT_PARSE = "Bad Request: can't parse entities"
HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9A-Fa-f]+);")


def telegram_html_text(markup: str) -> str:
    """The visible text of Telegram-HTML ``markup``; raises ``_ApiError`` where Telegram answers 400."""
    visible, stack, index = [], [], 0
    while index < len(markup):
        char = markup[index]
        if char == "<":
            tag = HTML_TAG.match(markup, index)
            if tag is None or tag.group(2).lower() not in HTML_TAGS:
                name = tag.group(2) if tag else markup[index + 1 : index + 10]
                raise _ApiError(400, f'{CANT_PARSE}: Unsupported start tag "{name}" '
                                     f"at byte offset {len(markup[:index].encode())}")  # fmt: skip
            closing, name = tag.group(1), tag.group(2).lower()
            if not closing:
                stack.append(name)
            elif not stack or stack.pop() != name:
                raise _ApiError(
                    400, f"{CANT_PARSE}: Unexpected end tag at byte offset {len(markup[:index].encode())}"
                )
            index = tag.end()
        elif char == "&":
            entity = HTML_ENTITY.match(markup, index)
            if entity is None:
                raise _ApiError(
                    400,
                    f"{CANT_PARSE}: Character '&' is reserved at byte offset {len(markup[:index].encode())}",
                )
            visible.append(html.unescape(entity.group()))
            index = entity.end()
        else:
            visible.append(char)
            index += 1
    if stack:
        raise _ApiError(
            400,
            f'{CANT_PARSE}: Can\'t find end tag corresponding to start tag "{stack[-1]}"',
        )
    return "".join(visible)


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def check_like_telegram(method: str, params: dict) -> None:
    """Refuse what Telegram refuses: unparsable HTML, over-long texts, oversized callback data."""
    html_mode = str(params.get("parse_mode", "")).upper() == "HTML"
    if method in ("sendMessage", "editMessageText"):
        text = params.get("text") or ""
        shown = telegram_html_text(text) if html_mode else text
        if not shown.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if _utf16_length(shown) > MAX_TEXT:
            raise _ApiError(400, "Bad Request: message is too long")
    if method in ("sendPhoto", "sendDocument", "editMessageCaption") and params.get("caption"):
        caption = params["caption"]
        shown = telegram_html_text(caption) if html_mode else caption
        if _utf16_length(shown) > MAX_CAPTION:
            raise _ApiError(400, "Bad Request: message caption is too long")
    if method == "answerCallbackQuery" and _utf16_length(params.get("text") or "") > MAX_ALERT:
        raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
    for row in (params.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


@dataclass
class Sent:
    """One call the bot made: method, its parameters, and uploaded files (name -> bytes)."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    message: dict | None = None  # the message it produced, if any
    at: float = field(default_factory=time.monotonic)  # when the bot made the call


@dataclass
class _Fault:
    method: str
    status: int
    retry_after: int
    remaining: int


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of users must not find the listen queue full (default 5)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (the bot stopping mid long-poll) is normal, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class BotAPIEmulator:
    """Threaded HTTP server; all state is guarded by one condition variable."""

    def __init__(self, token: str = "123456:TEST-TOKEN") -> None:
        self.token = token
        self._cond = threading.Condition()
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (path, bytes)
        self.messages: dict[tuple[int, int], dict] = {}  # (chat, message id) -> current message
        self.sent: list[Sent] = []
        self._sent_to: dict[str, list[Sent]] = {}  # chat id -> its part of ``sent``: tests poll it often
        self.calls: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._delays: dict[tuple[str, int | None], float] = {}
        self.webhook: dict | None = None
        self.commands: list[dict] = []
        self.rejected: list[tuple[str, str]] = []  # (method, Telegram's error) for every 400 we gave
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BotAPIEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes; with Nagle on, the body waits for the client's
            # delayed ACK (~40 ms on Linux) on every reply: a delay Telegram does not have.
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                emulator._handle(self, "GET")

            def do_POST(self) -> None:
                emulator._handle(self, "POST")

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="bot-api-emulator").start()
        return self

    def __enter__(self) -> BotAPIEmulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            with self._cond:
                self._cond.notify_all()
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/file/bot"

    # ------------------------------------------------------------------ fault injection
    def fail_next(self, method: str, status: int = 429, retry_after: int = 1, count: int = 1) -> None:
        with self._cond:
            self._faults.append(_Fault(method, status, retry_after, count))

    def delay(self, method: str, seconds: float, chat_id: int | None = None) -> None:
        """Answer ``method`` (for one chat, or all) only after ``seconds``; the call still takes effect."""
        with self._cond:
            self._delays[(method, chat_id)] = seconds

    # ------------------------------------------------------------------ acting as users
    def user(self, user_id: int, first_name: str = "Ada") -> EmulatedUser:
        return EmulatedUser(self, user_id, first_name)

    def numbered(self, update: dict) -> dict:
        """The update with the next update_id, as Telegram numbers them."""
        with self._cond:
            update["update_id"] = next(self._update_ids)
        return update

    def push_update(self, update: dict) -> None:
        with self._cond:  # numbered and queued at once: getUpdates hands them out in order
            self.numbered(update)
            webhook = self.webhook
            if webhook is None:
                self._updates.append(update)
                self._cond.notify_all()
        if webhook is not None:
            self.post_to_webhook(update, webhook.get("secret_token"))

    def post_to_webhook(self, update: dict, secret: str | None) -> int:
        """Deliver one update to the registered webhook; returns the HTTP status the bot answered."""
        request = urllib.request.Request(
            self.webhook["url"],
            data=json.dumps(update).encode(),
            headers={"Content-Type": "application/json"},
        )
        if secret is not None:
            request.add_header("X-Telegram-Bot-Api-Secret-Token", secret)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def store_file(self, data: bytes, suffix: str) -> tuple[str, str]:
        with self._cond:
            number = next(self._file_ids)
        file_id = f"file{number}-{hashlib.sha1(data).hexdigest()[:8]}"
        self.files[file_id] = (f"documents/{file_id}{suffix}", data)
        return file_id, hashlib.sha1(data).hexdigest()[:16]

    def new_message(self, chat_id: int, sender: dict, **content: Any) -> dict:
        with self._cond:
            message_id = next(self._message_ids)
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": sender.get("first_name", "")},
            "from": sender,
            **content,
        }
        self.messages[(chat_id, message_id)] = message
        return message

    # ------------------------------------------------------------------ reading what the bot did
    def chat_log(self, chat_id: int) -> list[Sent]:
        with self._cond:
            return list(self._sent_to.get(str(chat_id), ()))

    def wait_for(self, predicate, timeout: float = 30.0, poll: float = 0.05):
        """Block until ``predicate()`` returns a truthy value (returned), else raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError("condition not reached in time")

    # ------------------------------------------------------------------ HTTP
    def _handle(self, request: BaseHTTPRequestHandler, verb: str) -> None:
        path = unquote(urlparse(request.path).path)
        body = b""
        if verb == "POST":
            body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        file_prefix = f"/file/bot{self.token}/"
        if path.startswith(file_prefix):
            self._serve_file(request, path[len(file_prefix) :])
            return
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            self._reply(request, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        method = path[len(prefix) :]
        params, files = self._parse(request, body)
        with self._cond:
            self.calls[method] = self.calls.get(method, 0) + 1
            fault = next((f for f in self._faults if f.method == method and f.remaining > 0), None)
            if fault:
                fault.remaining -= 1
            chat = params.get("chat_id")
            pause = self._delays.get((method, int(chat) if chat else None)) or self._delays.get(
                (method, None), 0.0
            )
        if pause:
            time.sleep(pause)
        if fault is not None:
            self._reply(request, fault.status, self._fault_body(fault))
            return
        try:
            result = self._dispatch(method, params, files)
        except _ApiError as exc:
            self._reply(
                request, exc.code, {"ok": False, "error_code": exc.code, "description": exc.description}
            )
            return
        self._reply(request, 200, {"ok": True, "result": result})

    @staticmethod
    def _fault_body(fault: _Fault) -> dict:
        if fault.status == 429:
            return {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {fault.retry_after}",
                "parameters": {"retry_after": fault.retry_after},
            }
        return {"ok": False, "error_code": fault.status, "description": "Internal Server Error"}

    def _serve_file(self, request: BaseHTTPRequestHandler, file_path: str) -> None:
        match = next((data for path, data in self.files.values() if path == file_path), None)
        if match is None:
            self._reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(len(match)))
        request.end_headers()
        request.wfile.write(match)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    @staticmethod
    def _parse(request: BaseHTTPRequestHandler, body: bytes) -> tuple[dict, dict[str, bytes]]:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            return (json.loads(body) if body else {}), {}
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            params, files = {}, {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename() is not None:
                    files[name] = payload
                else:
                    params[name] = payload.decode()
            return params, files
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}, {}

    # ------------------------------------------------------------------ Bot API methods
    def _dispatch(self, method: str, params: dict, files: dict[str, bytes]) -> Any:
        for key in ("reply_markup", "media", "allowed_updates", "commands"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        try:
            check_like_telegram(method, params)
        except _ApiError as exc:
            with self._cond:
                self.rejected.append((method, exc.description))
            raise
        if method == "getUpdates":
            return self._get_updates(params)
        simple = {
            "getMe": BOT_USER,
            "sendChatAction": True,
            "answerCallbackQuery": True,
            "close": True,
            "logOut": True,
            "getMyCommands": self.commands,
        }
        if method in simple:
            self._record(method, params, files)
            return simple[method]
        if method == "setMyCommands":
            self.commands = params.get("commands", [])
            return True
        if method == "setWebhook":
            self.webhook = params
            return True
        if method == "deleteWebhook":
            self.webhook = None
            return True
        if method == "getWebhookInfo":
            return {
                "url": (self.webhook or {}).get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
        if method == "getFile":
            return self._get_file(params)
        if method in ("sendMessage", "sendPhoto", "sendDocument"):
            return self._send(method, params, files)
        if method == "sendMediaGroup":
            return [self._send("sendPhoto", {**params, **item}, files) for item in params.get("media", [])]
        if method in ("editMessageText", "editMessageReplyMarkup", "editMessageCaption"):
            return self._edit(method, params)
        if method == "deleteMessage":
            self._record(method, params, files)
            if self.messages.pop((int(params["chat_id"]), int(params["message_id"])), None) is None:
                raise _ApiError(400, "Bad Request: message to delete not found")
            return True
        raise _ApiError(404, f"Not Found: method {method} is not emulated")

    def _record(
        self, method: str, params: dict, files: dict[str, bytes], message: dict | None = None
    ) -> None:
        with self._cond:
            sent = Sent(method, params, files, message)
            self.sent.append(sent)
            self._sent_to.setdefault(str(params.get("chat_id")), []).append(sent)
            self._cond.notify_all()

    def _get_updates(self, params: dict) -> list[dict]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones go
            while not self._updates and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            return self._updates[:limit]

    def _get_file(self, params: dict) -> dict:
        file_id = params.get("file_id")
        if file_id not in self.files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": hashlib.sha1(data).hexdigest()[:16],
            "file_size": len(data),
            "file_path": path,
        }

    def _send(self, method: str, params: dict, files: dict[str, bytes]) -> dict:
        chat_id = int(params["chat_id"])
        content: dict[str, Any] = {}
        if method == "sendMessage":
            content["text"] = params.get("text", "")
        else:
            field_name = "photo" if method == "sendPhoto" else "document"
            data = files.get(field_name) or next(iter(files.values()), b"")
            file_id, unique = self.store_file(data, ".jpg" if field_name == "photo" else ".bin")
            if field_name == "photo":
                width, height = Image.open(io.BytesIO(data)).size
                content["photo"] = [
                    {
                        "file_id": file_id,
                        "file_unique_id": unique,
                        "width": width,
                        "height": height,
                        "file_size": len(data),
                    }
                ]
            else:
                content["document"] = {
                    "file_id": file_id,
                    "file_unique_id": unique,
                    "file_size": len(data),
                    "file_name": params.get("filename", "file"),
                }
            if params.get("caption"):
                content["caption"] = params["caption"]
        if params.get("reply_markup"):
            content["reply_markup"] = params["reply_markup"]
        message = self.new_message(chat_id, BOT_USER, **content)
        self._record(method, params, files, message)
        return message

    def _edit(self, method: str, params: dict) -> dict:
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self.messages.get(key)
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if method == "editMessageText":
            if message.get("text") == params.get("text") and message.get("reply_markup") == params.get(
                "reply_markup"
            ):
                raise _ApiError(400, "Bad Request: message is not modified")
            message["text"] = params.get("text", "")
        if method == "editMessageCaption":
            message["caption"] = params.get("caption", "")
        message.pop("reply_markup", None)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        self._record(method, params, {}, message)
        return message


class _ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


@dataclass
class EmulatedUser:
    """A Telegram user in a private chat with the bot (chat id == user id, as in Telegram)."""

    api: BotAPIEmulator
    user_id: int
    first_name: str = "Ada"
    _groups: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def sender(self) -> dict:
        return {"id": self.user_id, "is_bot": False, "first_name": self.first_name, "language_code": "en"}

    def _push_message(self, **content: Any) -> dict:
        message = self.api.new_message(self.user_id, self.sender, **content)
        self.api.push_update({"message": message})
        return message

    def send_text(self, text: str) -> dict:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return self._push_message(**content)

    def _photo_sizes(self, data: bytes) -> list[dict]:
        width, height = Image.open(io.BytesIO(data)).size
        file_id, unique = self.api.store_file(data, ".jpg")
        sizes = []
        for side in PHOTO_SIZES:  # thumbnails share the file here; only the largest must be used
            scale = min(1.0, side / max(width, height))
            sizes.append(
                {
                    "file_id": f"thumb{side}-{file_id}" if side != PHOTO_SIZES[-1] else file_id,
                    "file_unique_id": f"{unique}{side}",
                    "width": round(width * scale),
                    "height": round(height * scale),
                    "file_size": len(data),
                }
            )
        return sizes

    def undelivered_photo(self, data: bytes) -> dict:
        """A photo update made and numbered like any, but never delivered: what a front end that
        accepted it and then died leaves behind."""
        message = self.api.new_message(self.user_id, self.sender, photo=self._photo_sizes(data))
        return self.api.numbered({"message": message})

    def send_photo(self, data: bytes, media_group_id: str | None = None) -> dict:
        extra = {"media_group_id": media_group_id} if media_group_id else {}
        return self._push_message(photo=self._photo_sizes(data), **extra)

    def send_document(
        self, data: bytes, file_name: str, mime_type: str, declared_size: int | None = None
    ) -> dict:
        file_id, unique = self.api.store_file(data, "." + file_name.rsplit(".", 1)[-1])
        document = {
            "file_id": file_id,
            "file_unique_id": unique,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": declared_size if declared_size is not None else len(data),
        }
        return self._push_message(document=document)

    def send_album(self, pictures: list[bytes]) -> list[dict]:
        group = f"album-{self.user_id}-{next(self._groups)}"
        return [self.send_photo(data, media_group_id=group) for data in pictures]

    def send_sticker(self) -> dict:
        return self._push_message(
            sticker={
                "file_id": "sticker1",
                "file_unique_id": "st1",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "type": "regular",
            }
        )

    def send_animation(self, data: bytes) -> dict:
        """A GIF as Telegram delivers it: an ``animation`` and, for old clients, a ``document`` too."""
        file_id, unique = self.api.store_file(data, ".mp4")
        media = {"file_id": file_id, "file_unique_id": unique, "file_name": "funny.mp4",
                 "mime_type": "video/mp4", "file_size": len(data)}  # fmt: skip
        animation = {**media, "width": 320, "height": 240, "duration": 2}
        return self._push_message(animation=animation, document=media)

    def send_video(self) -> dict:
        return self._push_message(
            video={"file_id": "video1", "file_unique_id": "v1", "width": 640, "height": 480, "duration": 3}
        )

    def press(self, message: dict, data: str) -> None:
        """Press an inline button (by its callback data) under one of the bot's messages."""
        self.api.push_update(
            {
                "callback_query": {
                    "id": str(time.time_ns()),
                    "from": self.sender,
                    "chat_instance": str(self.user_id),
                    "message": message,
                    "data": data,
                }
            }
        )

    # --------------------------------------------------------------- reading the chat
    def log(self) -> list[Sent]:
        return self.api.chat_log(self.user_id)

    def texts(self) -> list[str]:
        """Every text the bot sent or edited into this chat, in order."""
        return [
            s.params.get("text") or s.params.get("caption") or ""
            for s in self.log()
            if s.method in ("sendMessage", "editMessageText", "sendPhoto", "sendDocument")
        ]

    def photos(self) -> list[Sent]:
        return [s for s in self.log() if s.method == "sendPhoto"]

    def wait_text(self, fragment: str, timeout: float = 30.0) -> str:
        return self.api.wait_for(lambda: next((t for t in self.texts() if fragment in t), None), timeout)

    def wait_message(self, fragment: str, after: int = 0, timeout: float = 30.0) -> Sent:
        """The first bot message newer than message id ``after`` whose text contains ``fragment``."""

        def find() -> Sent | None:
            return next(
                (
                    s
                    for s in self.log()
                    if s.message
                    and s.message["message_id"] > after
                    and fragment in (s.params.get("text") or "")
                ),
                None,
            )

        return self.api.wait_for(find, timeout)

    def wait_photos(self, count: int = 1, timeout: float = 60.0) -> list[Sent]:
        return self.api.wait_for(lambda: (p := self.photos()) and len(p) >= count and p, timeout)
