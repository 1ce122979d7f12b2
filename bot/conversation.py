"""The conversation as a state machine: what the bot waits for next, and every event that changes it.

::

        ┌──── after a render starts; from any state: /cancel · /reset · /forget ───┐
        ▼                                                                          │
    content ──photo──▶ style ──style picture(s)─────────────────────────▶ render ─┤
       │                 │                                                         │
       │ photo after /mix│ /mix                                                    │
       ▼                 ▼                                                         │
    mix_styles ◀─── style picture (up to max_mix_styles) ───┐                      │
       │  └─────────────────────────────────────────────────┘                      │
       └──── weights ("0.7 0.3") or the "Equal weights" button ─────────▶ render ─┘

/mix with a photo at hand (the pending one, or the last result's) goes to ``mix_styles`` from any
state; without one it is remembered (``mix_requested``) until the photo comes. /hq, /alpha and
/settings change options, not the state; result buttons act on their own render in any state.

Why not PTB's ``ConversationHandler``: an album is several updates that must count as one step, the
state also carries the pictures and the renders behind each result's buttons (one persisted record
per user, ``bot.state.UserState``), and most commands work the same in every state. So the handlers
share that record and every transition is in the table below.
"""

from __future__ import annotations

from typing import Literal, get_args

Awaiting = Literal["content", "style", "mix_styles"]
Event = Literal["photo", "photo_for_mix", "style_picture", "mix", "weights", "restart"]

TRANSITIONS: dict[tuple[Awaiting, Event], Awaiting] = {
    ("content", "photo"): "style",
    ("content", "photo_for_mix"): "mix_styles",
    ("style", "style_picture"): "content",  # and the render starts
    ("mix_styles", "style_picture"): "mix_styles",
    ("mix_styles", "weights"): "content",  # and the render starts
    **{(state, "mix"): "mix_styles" for state in get_args(Awaiting)},
    **{(state, "restart"): "content" for state in get_args(Awaiting)},
}


def advance(current: Awaiting, event: Event) -> Awaiting:
    """The next state; an event the table does not allow here is a bug in a handler."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise LookupError(f"no transition from {current!r} on {event!r}") from None
