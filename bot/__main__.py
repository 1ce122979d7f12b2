"""``python -m bot`` / ``atelier-bot``: run the bot with settings from the environment and .env."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from bot.app import quiet_noisy_loggers, run
from bot.config import Settings

MISSING_TOKEN = """BOT_TOKEN is not set.

To get one: open Telegram, talk to @BotFather, send /newbot and follow the prompts;
it replies with a token like 123456:ABC-DEF... Then either
  export BOT_TOKEN=123456:ABC-DEF...
or copy .env.example to .env and put it there. (make demo runs the bot offline with no token.)"""


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        if any(error["loc"] == ("bot_token",) for error in exc.errors()):
            print(MISSING_TOKEN, file=sys.stderr)
        else:
            print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=settings.log_level)
    quiet_noisy_loggers()
    run(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
