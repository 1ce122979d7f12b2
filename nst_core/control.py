"""How a caller steers a running render from another thread, without importing the engine (or torch)."""

from __future__ import annotations

import threading


class CancelToken:
    """Set from any thread; the optimizer checks it after every loss evaluation."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
