"""``python -m bot`` / ``atelier-bot``: run the bot with settings from the environment and .env."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError
from telegram.error import InvalidToken, NetworkError

from bot.app import configure_logging, serve
from bot.config import Settings
from bot.pool import EngineUnavailable

MISSING_TOKEN = """BOT_TOKEN is not set.

To get one: open Telegram, talk to @BotFather, send /newbot and follow the prompts;
it replies with a token like 123456:ABC-DEF... Then either
  export BOT_TOKEN=123456:ABC-DEF...
or copy .env.example to .env and put it there. (make demo runs the bot offline with no token.)"""

REJECTED_TOKEN = """The Bot API at {url} rejected BOT_TOKEN (401 Unauthorized or 404 Not Found).

Check the token @BotFather gave you (/mybots → your bot → API Token), and BOT_API_URL if you set it."""


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, naming the variable, never echoing its value (it may be a secret)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        lines.append(f"  {name}: {error['msg']}")
    return "\n".join(lines)


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"Invalid configuration (see .env.example):\n{describe_errors(exc)}", file=sys.stderr)
        return 2
    if not settings.bot_token.get_secret_value():
        print(MISSING_TOKEN, file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except InvalidToken:
        print(REJECTED_TOKEN.format(url=settings.bot_api_url), file=sys.stderr)
        return 2
    except NetworkError as exc:
        print(f"Cannot reach the Bot API at {settings.bot_api_url}: {exc}", file=sys.stderr)
        return 2
    except EngineUnavailable as exc:
        print(f"The inference worker cannot load the models: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
