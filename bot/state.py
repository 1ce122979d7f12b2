"""Per-user conversation state, kept in PTB's persisted ``user_data``.

Only Telegram file ids are stored, never image bytes: they are small, survive restarts, and
Telegram keeps the files for us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nst_core.options import RenderOptions

Awaiting = Literal["content", "style", "mix_styles", "mix_weights"]
STATE_KEY = "atelier"
ALPHA_STEP = 0.25


@dataclass(frozen=True)
class ImageRef:
    """A picture the user sent: Telegram's ids plus what we know about its size."""

    file_id: str
    unique_id: str
    width: int = 0
    height: int = 0


@dataclass
class UserSettings:
    alpha: float = 1.0
    preserve_color: str = "none"  # none | luminance | histogram
    max_side: int = 768
    hq_next: bool = False  # /hq armed: the next job runs Gatys


@dataclass
class Render:
    """What produced the last result, so buttons can re-render it with one setting changed."""

    content: ImageRef
    styles: list[ImageRef]
    weights: list[float] | None
    alpha: float
    preserve_color: str
    max_side: int
    hq: bool = False

    def options(self, hq_steps: int, hq_max_side: int, hq_time_budget_s: float) -> RenderOptions:
        return RenderOptions(
            weights=self.weights, alpha=self.alpha, preserve_color=self.preserve_color,
            max_side=min(self.max_side, hq_max_side) if self.hq else self.max_side,
            hq=self.hq, steps=hq_steps if self.hq else None,
            time_budget_s=hq_time_budget_s if self.hq else None,
        )  # fmt: skip


@dataclass
class UserState:
    awaiting: Awaiting = "content"
    content: ImageRef | None = None
    styles: list[ImageRef] = field(default_factory=list)  # /mix collects several
    settings: UserSettings = field(default_factory=UserSettings)
    last: Render | None = None
    mix_requested: bool = False  # /mix before the photo: styles to blend come after it

    def reset(self) -> None:
        """Forget the pictures in flight, keep the settings."""
        self.awaiting, self.content, self.styles, self.mix_requested = "content", None, [], False


def get_state(user_data: dict) -> UserState:
    state = user_data.get(STATE_KEY)
    if not isinstance(state, UserState):
        state = UserState()
        user_data[STATE_KEY] = state
    return state


def parse_alpha(text: str) -> float:
    """'0.5', '0,5', '50%' -> 0.5; raises ValueError with a helpful sentence."""
    cleaned = text.strip().replace(",", ".")
    percent = cleaned.endswith("%")
    try:
        value = float(cleaned.rstrip("%"))
    except ValueError:
        raise ValueError(f"“{text}” is not a number. Use a value from 0 to 1, e.g. /alpha 0.5") from None
    if percent:
        value /= 100
    if not 0.0 <= value <= 1.0 or value != value:
        raise ValueError(
            f"Alpha must be between 0 (photo only) and 1 (full style); {text} is outside. Example: /alpha 0.5"
        )
    return round(value, 3)


def parse_weights(text: str, count: int) -> list[float]:
    """'0.7 0.3' or '70/30' or '2,1' -> weights (normalized later); ValueError with a sentence."""
    text = text.strip()
    text = text.replace(",", ".") if " " in text else text.replace(",", " ")  # "0,7 0,3" or "2,1"
    parts = text.replace("/", " ").replace(";", " ").split()
    try:
        weights = [float(part.rstrip("%")) for part in parts]
    except ValueError:
        raise ValueError(
            f"Send {count} numbers, one per style, like “{' '.join(['1'] * count)}” or “0.7 0.3”."
        ) from None
    if len(weights) != count:
        raise ValueError(
            f"You sent {len(weights)} weight(s) but there are {count} styles. "
            f"Send {count} numbers, e.g. “{' '.join(['1'] * count)}”."
        )
    if any(w < 0 or w != w or w == float("inf") for w in weights) or sum(weights) <= 0:
        raise ValueError("Weights must be zero or positive, and at least one must be above zero.")
    return weights
