"""PTB persistence for ``user_data`` backed by the SQLite ``users`` table, one JSON row per user.

PTB's ``PicklePersistence`` rewrites one pickle of every user, in place and on the event loop, each
time any user changes: a kill mid-write leaves a file the bot cannot start with, and 10,000 users
cost seconds of a blocked loop per cycle. Here PTB hands over each changed user, and that user's row
is written on the database thread.
"""

from __future__ import annotations

import sqlite3
import time

from telegram.ext import BasePersistence, PersistenceInput

from bot.state import UserState
from bot.storage import Database


def count_saved_users(db: sqlite3.Connection) -> int:
    return db.execute("SELECT count(*) FROM users").fetchone()[0]


class SQLitePersistence(BasePersistence[UserState, dict, dict]):
    def __init__(self, database: Database, update_interval: float = 5.0) -> None:
        super().__init__(
            store_data=PersistenceInput(bot_data=False, chat_data=False, user_data=True, callback_data=False),
            update_interval=update_interval,
        )
        self.database = database

    async def get_user_data(self) -> dict[int, UserState]:
        rows = await self.database.run(lambda db: db.execute("SELECT user_id, state FROM users").fetchall())
        return {user_id: UserState.from_json(state) for user_id, state in rows}

    async def update_user_data(self, user_id: int, data: UserState) -> None:
        state = data.to_json()
        await self.database.run(
            lambda db: db.execute(
                "INSERT INTO users (user_id, state, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(user_id) DO UPDATE SET state = excluded.state, updated = excluded.updated",
                (user_id, state, time.time()),
            )
        )

    async def drop_user_data(self, user_id: int) -> None:
        await self.database.run(lambda db: db.execute("DELETE FROM users WHERE user_id = ?", (user_id,)))

    async def refresh_user_data(self, user_id: int, user_data: UserState) -> None:
        """Nothing to do: this process is the only writer."""

    async def flush(self) -> None:
        """Nothing to do: every update is committed as it is made."""

    # Only user data is persisted; PTB asks for the rest all the same.
    async def get_chat_data(self) -> dict[int, dict]:
        return {}

    async def get_bot_data(self) -> dict:
        return {}

    async def get_callback_data(self) -> None:
        return None

    async def get_conversations(self, name: str) -> dict:
        return {}

    async def update_conversation(self, name: str, key: tuple, new_state: object) -> None:
        """Conversations are not used."""

    async def update_chat_data(self, chat_id: int, data: dict) -> None:
        """Chat data is not persisted."""

    async def update_bot_data(self, data: dict) -> None:
        """Bot data is not persisted."""

    async def update_callback_data(self, data: object) -> None:
        """Callback data is not persisted."""

    async def drop_chat_data(self, chat_id: int) -> None:
        """Chat data is not persisted."""

    async def refresh_chat_data(self, chat_id: int, chat_data: dict) -> None:
        """Chat data is not persisted."""

    async def refresh_bot_data(self, bot_data: dict) -> None:
        """Bot data is not persisted."""
