"""Everything the bot says, in one place, so tone and wording stay consistent."""

from __future__ import annotations

import html

from bot.conversation import Awaiting
from bot.jobs import Refusal
from bot.messages import Failure
from nst_core.options import PreserveColor, RenderOptions

WELCOME = (
    "Hi! I repaint your photo in the style of any picture. 🎨\n\n"
    "1. Send me a photo.\n"
    "2. Send me a picture whose style you like (a painting, a poster, a texture).\n"
    "I send back your photo painted in that style, in a few seconds.\n\n"
    "Tip: send both as an album to do it in one go. /help shows everything I can do."
)

HELP = (
    "<b>How it works</b>\n"
    "Send a <b>photo</b>, then a <b>style picture</b>: I paint the photo in that style. "
    "Photos, image files (PNG, JPEG, WebP…) and albums all work.\n\n"
    "<b>Commands</b>\n"
    "/alpha 0.5 — how much style: 0 = your photo, 1 = full style (now {alpha})\n"
    "/mix — blend several styles: send 2–{max_mix} style pictures, then weights like <code>0.7 0.3</code>\n"
    "/hq — high quality mode (Gatys): slower, finer detail; you can /cancel it any time\n"
    "/settings — size, colours, style strength\n"
    "/cancel — stop the current step or picture\n"
    "/reset — start over (keeps your settings)\n"
    "/forget — delete everything I store about you\n\n"
    "<b>Example</b>: send a photo of your cat, then Van Gogh's Starry Night, then try /alpha 0.6."
)

ASK_STYLE = "Got your photo. 📷 Now send the <b>style</b> picture (a painting, a poster, any image)."
NOT_A_PICTURE = "I can only work with pictures: send a photo or an image file (JPEG, PNG, WebP…)."
UNSUPPORTED_KIND = "I can't use {kind}. Send a photo or an image file instead."
MEDIA_KINDS = {  # Message attribute -> what the user sent
    "sticker": "stickers",
    "animation": "GIF animations",
    "video": "videos",
    "voice": "voice messages",
    "audio": "audio",
    "video_note": "video messages",
    "location": "locations",
    "contact": "contacts",
    "poll": "polls",
}
OTHER_MEDIA_KIND = "that kind of message"
TEXT_WHEN_PICTURE_EXPECTED = "I was expecting a picture. {next_step}"
FILE_TOO_BIG = (
    "That file is {size}. Telegram lets me download at most {limit}; "
    "send it as a photo (compressed) or a smaller file."
)
NOT_AN_IMAGE_DOCUMENT = "“{name}” doesn't look like an image ({mime}). Send a photo or an image file."
BAD_IMAGE = "I couldn't use that picture: {detail}."
DOWNLOAD_FAILED = "I couldn't download that picture from Telegram. Please send it again."
UNKNOWN_COMMAND = "I don't know {command}. /help lists what I can do."
NOT_ALLOWED = "Sorry, this bot is private."
FLOOD = "Whoa, that's a lot of messages. I'll ignore new ones for a few seconds."
BUSY = "You already have a picture in progress. Wait for it, or /cancel it first."
QUEUE_FULL = "I'm very busy right now ({waiting} pictures waiting). Please try again in a minute."
SHUTTING_DOWN = "I'm restarting right now; please send that again in a minute."
PAINTER_DOWN = (
    "My painter is out of order right now, so I can't paint your picture. "
    "Please try again later; the people who run me have been told."
)
CRASHED = "The painter crashed while working on your picture. I've restarted it; please try again."
GENERIC_FAILURE = "Something went wrong while painting this one. Please try again, maybe with other pictures."
OUT_OF_MEMORY = "That was too big for me to paint (out of memory). Try a smaller size in /settings."
TIMED_OUT = "Your picture took too long and was stopped. Try a smaller size or fewer styles."
INVALID_REQUEST = "I couldn't do that: {detail}."
FAILURES: dict[Failure, str] = {
    "bad_picture": BAD_IMAGE,
    "invalid_request": INVALID_REQUEST,
    "out_of_memory": OUT_OF_MEMORY,
    "generic": GENERIC_FAILURE,
    "crashed": CRASHED,
    "timed_out": TIMED_OUT,
    "painter_down": PAINTER_DOWN,
}
REFUSALS: dict[Refusal, str] = {
    "busy": BUSY,
    "queue_full": QUEUE_FULL,
    "shutting_down": SHUTTING_DOWN,
    "painter_down": PAINTER_DOWN,
}

QUEUED_AHEAD = "Queued: {ahead} ahead of you, about {eta} to go. ⏳"
PAINTING = "Painting… 🎨"
HQ_PROGRESS = "High quality painting: {percent}% done, about {eta} left.\n/cancel to stop."
HQ_ARMED = "High quality mode is on for your next picture. Send the photo, then the style."
RESULT_CAPTION = "{mode} · style {alpha}{mix}{color}"
RESULT_MODES = {False: "Fast", True: "High quality"}
RESULT_MIX = " · {count} styles mixed"
RESULT_PHOTO_COLOURS = " · photo colours"
TIME_BUDGET_NOTE = "\nStopped at the {budget} time limit: this is the best version so far."
CANCEL_HQ_ASK = "Stop the high quality painting?"
CANCELLED_NOTHING = "Stopped. Nothing was sent."
CANCELLED_KEEP = "Stopped early: here's the best version so far."
CANCELLED_STEP = "OK, cancelled. {next_step}"
NOTHING_TO_CANCEL = "There's nothing to cancel. {next_step}"
STATS = (
    "<b>Atelier status</b>\n"
    "Queue: {queued} waiting, {running} painting on {workers} worker(s)\n"
    "Since start: {done} done, {failed} failed, {restarts} worker restart(s)\n"
    "Users with saved state: {users}"
)
RESET_DONE = "Started over (your settings are kept). Send the photo you want to repaint."
FORGET_DONE = "Done: I deleted your pictures, settings and results."

ALPHA_NOW = "Style strength (alpha) is {alpha}: 0 = your photo, 1 = full style. Pick one or send /alpha 0.7."
ALPHA_SET = "Style strength set to {alpha}."
ALPHA_RERENDER = "Style strength set to {alpha}. Repaint your last picture with it?"

MIX_START = (
    "Mixing styles: send 2–{max_mix} style pictures (one by one or as an album). "
    "Then send their weights, e.g. <code>0.7 0.3</code>, or tap “Equal weights”."
)
MIX_NEED_CONTENT = (
    "Let's blend styles. First send the <b>photo</b> to repaint; then I'll ask for the style pictures."
)
MIX_GOT_STYLE = "Style {count} received. Send another, or send weights (like <code>{example}</code>)."
MIX_ENOUGH = (
    "That's {max_mix} styles, the most I can blend. "
    "Send the weights (like <code>{example}</code>) or tap a button."
)
MIX_NEED_MORE = "Send at least one more style picture to blend (you have {count})."

SETTINGS = (
    "<b>Your settings</b>\n"
    "Style strength (alpha): {alpha}\n"
    "Keep photo colours: {color}\n"
    "Output size: {size}px (longest side)\n"
    "Next picture in high quality: {hq}"
)
SETTING_SAVED = "Saved."
BUTTON_UNKNOWN = "That button doesn't work (any more). Send /help to see what I can do."
RESULT_GONE = "That result is too old: I no longer have its settings. Send the photo and style again."
ALREADY_FINISHED = "That picture is already finished."
STOPPING = "Stopping…"
SOMETHING_WENT_WRONG = "Sorry, something went wrong on my side. Please try again."
FILE_GONE = "That full-size file is no longer available; repaint the picture to get it again."
NOTHING_TO_RERENDER = "I no longer have the pictures for that. Send a new photo and style."

COLOR_NAMES: dict[PreserveColor, str] = {
    "none": "off",
    "luminance": "on (luminance)",
    "histogram": "on (colour match)",
}
COLOR_BUTTONS: dict[PreserveColor, str] = {
    "none": "Style colours",
    "luminance": "Keep colours",
    "histogram": "Match colours",
}


def result_caption(options: RenderOptions, style_count: int) -> str:
    return RESULT_CAPTION.format(
        mode=RESULT_MODES[options.hq],
        alpha=format_alpha(options.alpha),
        mix=RESULT_MIX.format(count=style_count) if style_count > 1 else "",
        color=RESULT_PHOTO_COLOURS if options.preserve_color != "none" else "",
    )


def failure(kind: Failure, detail: str = "") -> str:
    """Why a job failed, for the user; ``detail`` is the engine's sentence (escaped here)."""
    return FAILURES[kind].format(detail=html.escape(detail.rstrip("."), quote=False))


def refusal(kind: Refusal, waiting: int = 0) -> str:
    return REFUSALS[kind].format(waiting=waiting)


def human_duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s" if minutes < 10 else f"{minutes} min"


def format_alpha(alpha: float) -> str:
    return f"{alpha:g}"


def next_step(awaiting: Awaiting) -> str:
    return {
        "content": "Send the photo you want to repaint.",
        "style": "Now send the style picture.",
        "mix_styles": "Send another style picture, or the weights.",
    }[awaiting]
