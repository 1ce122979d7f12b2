"""Process-wide helpers the handlers share (kept in ``bot_data``, which is never persisted)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from bot.config import Settings
from bot.jobs import JobBackend

SERVICES_KEY = "services"


class BytesCache:
    """LRU of downloaded pictures by Telegram's file_unique_id, bounded in bytes.

    Re-rendering (another alpha, HQ, colours) reuses the same pictures; this saves the downloads.
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if key in self._items:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self.max_bytes and self._items:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)


class FloodGuard:
    """Sliding-window message counter per user."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: dict[int, deque[float]] = {}
        self._warned: dict[int, float] = {}

    def allow(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn): warn once per window when a user starts being throttled."""
        now = time.monotonic()
        times = self._times.setdefault(user_id, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            warn = now - self._warned.get(user_id, -1e9) > self.window_s
            if warn:
                self._warned[user_id] = now
            return False, warn
        times.append(now)
        return True, False


@dataclass
class Services:
    settings: Settings
    backend: JobBackend
    files: BytesCache = field(default_factory=BytesCache)
    flood: FloodGuard | None = None
    albums: dict = field(default_factory=dict)  # (user id, media group id) -> collected pictures

    def __post_init__(self) -> None:
        if self.flood is None:
            self.flood = FloodGuard(self.settings.flood_messages, self.settings.flood_window_s)


def services(bot_data: dict) -> Services:
    return bot_data[SERVICES_KEY]
