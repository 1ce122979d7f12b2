"""Per-user conversation state, kept in PTB's ``user_data`` and persisted as one JSON row per user.

Only Telegram file ids are stored, never image bytes: they are small, survive restarts, and
Telegram keeps the files for us. Each result's buttons name the render that made it (``renders``,
keyed by job id), so a button under an older result acts on that result, not on the newest one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from nst_core.options import RenderOptions

Awaiting = Literal["content", "style", "mix_styles", "mix_weights"]
STATE_KEY = "atelier"
ALPHA_STEP = 0.25
KEPT_RENDERS = 8  # results whose buttons still work
MAX_WEIGHT = 1000.0


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
    renders: dict[str, Render] = field(default_factory=dict)  # job id -> render, oldest first
    mix_requested: bool = False  # /mix before the photo: styles to blend come after it
    refused: Render | None = None  # the render the queue refused, for its "Try again" button

    @property
    def last(self) -> Render | None:
        return next(reversed(self.renders.values()), None)

    def remember(self, job_id: str, render: Render) -> None:
        """Record an accepted render; only the newest ``KEPT_RENDERS`` stay reachable from buttons."""
        self.renders[job_id] = render
        for old in list(self.renders)[:-KEPT_RENDERS]:
            del self.renders[old]

    def reset(self) -> None:
        """Forget the pictures in flight, keep the settings."""
        self.awaiting, self.content, self.styles, self.mix_requested = "content", None, [], False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> UserState:
        data = json.loads(text)

        def render(fields: dict) -> Render:
            refs = {
                "content": ImageRef(**fields["content"]),
                "styles": [ImageRef(**r) for r in fields["styles"]],
            }
            return Render(**(fields | refs))

        return cls(
            awaiting=data["awaiting"],
            content=ImageRef(**data["content"]) if data["content"] else None,
            styles=[ImageRef(**ref) for ref in data["styles"]],
            settings=UserSettings(**data["settings"]),
            renders={job_id: render(fields) for job_id, fields in data["renders"].items()},
            mix_requested=data["mix_requested"],
            refused=render(data["refused"]) if data["refused"] else None,
        )


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
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(
            f"Alpha must be between 0 (photo only) and 1 (full style); {text} is outside. Example: /alpha 0.5"
        )
    return round(value, 3) + 0.0  # + 0.0 turns -0 into 0


def parse_weights(text: str, count: int) -> list[float]:
    """'0.7 0.3' or '70/30' or '2,1' -> weights; ValueError with a sentence."""
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
    if not all(0 <= w <= MAX_WEIGHT for w in weights) or math.fsum(weights) <= 0:  # also refuses nan
        raise ValueError(
            f"Weights must be zero or positive (at most {MAX_WEIGHT:g}), and at least one must be above zero."
        )
    return weights
