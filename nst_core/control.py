"""How a caller steers and watches a running render from another thread, without importing the engine.

The bot's workers import this module, not Gatys (or torch): a ``CancelToken`` to stop a render, a
``Progress`` report for each step, and ``Rendered``: the picture and how the render ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

StopReason = Literal["done", "cancelled", "time_budget"]


class CancelToken:
    """Set from any thread; the optimizer checks it after every loss evaluation."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    loss: float
    fraction: float  # share of the estimated work done (coarse steps are cheaper)
    seconds_left: float | None = None  # the engine's forecast, where it has one


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Rendered:
    """A render's picture and how it ended: an HQ render stopped early still has its best image."""

    image: Image.Image
    stopped: StopReason = "done"
