"""Per-user conversation state: PTB's ``user_data`` is a ``UserState``, persisted as one JSON row per user.

Only Telegram file ids are stored, never image bytes: they are small, survive restarts, and
Telegram keeps the files for us. Each result's buttons name the render that made it (``renders``,
keyed by job id), so a button under an older result acts on that result, not on the newest one.
The user's settings are the ``RenderOptions`` of their next picture; a ``Render`` holds the options
it was made with. Where the conversation goes next is ``bot.conversation``'s table.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from bot.conversation import Awaiting, Event, advance
from nst_core.options import RenderOptions

ALPHA_STEP = 0.25
KEPT_RENDERS = 8  # results whose buttons still work
MAX_WEIGHT = 1000.0
DEFAULT_MAX_SIDE = 768
STATE_VERSION = 2


@dataclass(frozen=True)
class ImageRef:
    """A picture the user sent: Telegram's ids plus what we know about its size."""

    file_id: str
    unique_id: str
    width: int = 0
    height: int = 0


@dataclass
class Render:
    """What produced a result, so its buttons can render it again with one option changed."""

    content: ImageRef
    styles: list[ImageRef]
    options: RenderOptions

    @classmethod
    def from_dict(cls, fields: dict) -> Render:
        return cls(
            ImageRef(**fields["content"]),
            [ImageRef(**ref) for ref in fields["styles"]],
            RenderOptions(**fields["options"]),
        )


@dataclass
class Album:
    """Pictures of one media group, collected until the group is complete (see ``handlers``).

    Part of the user's state, so an album whose pictures reach different front ends is still one."""

    group_id: str
    chat_id: int
    pictures: list[tuple[int, ImageRef]] = field(default_factory=list)  # (message id, picture)

    @classmethod
    def from_dict(cls, fields: dict) -> Album:
        pictures = [(message_id, ImageRef(**ref)) for message_id, ref in fields["pictures"]]
        return cls(fields["group_id"], fields["chat_id"], pictures)


@dataclass
class UserState:
    awaiting: Awaiting = "content"
    content: ImageRef | None = None
    styles: list[ImageRef] = field(default_factory=list)  # /mix collects several
    # The user's settings: alpha, colours, size, and ``hq`` while /hq is armed for the next picture.
    options: RenderOptions = field(default_factory=lambda: RenderOptions(max_side=DEFAULT_MAX_SIDE))
    renders: dict[str, Render] = field(default_factory=dict)  # job id -> render, oldest first
    mix_requested: bool = False  # /mix before the photo: styles to blend come after it
    refused: Render | None = None  # the render the queue refused, for its "Try again" button
    album: Album | None = None  # an album still arriving

    @property
    def last(self) -> Render | None:
        return next(reversed(self.renders.values()), None)

    def advance(self, event: Event) -> None:
        self.awaiting = advance(self.awaiting, event)

    def remember(self, job_id: str, render: Render) -> None:
        """Record an accepted render; only the newest ``KEPT_RENDERS`` stay reachable from buttons."""
        self.renders[job_id] = render
        for old in list(self.renders)[:-KEPT_RENDERS]:
            del self.renders[old]

    def clear_pictures(self) -> None:
        self.content, self.styles, self.mix_requested = None, [], False

    def reset(self) -> None:
        """Forget the pictures in flight, keep the settings."""
        self.advance("restart")
        self.clear_pictures()

    def replace_with(self, other: UserState) -> None:
        """Take every field of ``other`` (PTB hands handlers this object; a front end fills it from Redis)."""
        for item in fields(self):
            setattr(self, item.name, getattr(other, item.name))

    def to_json(self) -> str:
        return json.dumps({"v": STATE_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> UserState:
        data = json.loads(text)
        if data.get("v") != STATE_VERSION:
            data = _from_version_1(data)
        return cls(
            awaiting=data["awaiting"],
            content=ImageRef(**data["content"]) if data["content"] else None,
            styles=[ImageRef(**ref) for ref in data["styles"]],
            options=RenderOptions(**data["options"]),
            renders={job_id: Render.from_dict(fields) for job_id, fields in data["renders"].items()},
            mix_requested=data["mix_requested"],
            refused=Render.from_dict(data["refused"]) if data["refused"] else None,
            album=Album.from_dict(data["album"]) if data.get("album") else None,
        )


def _from_version_1(data: dict) -> dict:
    """Rows written before options were one record: settings and renders held the fields flat."""
    settings = data.pop("settings")
    hq = settings.pop("hq_next")
    data["options"] = settings | {"hq": hq}

    def render(fields: dict) -> dict:
        content, styles = fields.pop("content"), fields.pop("styles")
        return {"content": content, "styles": styles, "options": fields}

    data["renders"] = {job_id: render(fields) for job_id, fields in data["renders"].items()}
    data["refused"] = render(data["refused"]) if data["refused"] else None
    data["awaiting"] = "mix_styles" if data["awaiting"] == "mix_weights" else data["awaiting"]
    return data


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
