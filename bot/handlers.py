"""Conversation handlers: pictures in, commands, buttons. Each handler is short and never runs torch."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, replace

from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import texts
from bot.delivery import result_path
from bot.intake import IntakeError, fetch, receive_picture
from bot.jobs import BackendError, RenderJob
from bot.keyboards import (
    alpha_keyboard,
    cancel_hq_keyboard,
    mix_keyboard,
    rerender_keyboard,
    retry_keyboard,
    settings_keyboard,
)
from bot.services import Services, services
from bot.state import ALPHA_STEP, ImageRef, Render, UserState, get_state, parse_alpha, parse_weights

logger = logging.getLogger(__name__)
Context = ContextTypes.DEFAULT_TYPE
ALBUM_SETTLE_S = 1.2  # an album's pictures arrive as separate updates within about a second


def _state(context: Context) -> UserState:
    return get_state(context.user_data)


def _services(context: Context) -> Services:
    return services(context.bot_data)


async def _reply(update: Update, text: str, **kwargs) -> Message:
    return await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, **kwargs)


# ---------------------------------------------------------------------------- gate
async def gate(update: Update, context: Context) -> None:
    """Runs before every handler: the allowlist and the flood guard."""
    user = update.effective_user
    if user is None or update.edited_message is not None:  # edits would replay old steps
        raise ApplicationHandlerStop
    svc = _services(context)
    if not svc.settings.is_allowed(user.id):
        if update.effective_message:
            await update.effective_message.reply_text(texts.NOT_ALLOWED)
        raise ApplicationHandlerStop
    allowed, warn = svc.flood.allow(user.id)
    if not allowed:
        if warn and update.effective_message:
            await update.effective_message.reply_text(texts.FLOOD)
        if update.callback_query:
            await update.callback_query.answer(texts.FLOOD)
        raise ApplicationHandlerStop


# ---------------------------------------------------------------------------- rendering
async def start_render(context: Context, chat_id: int, user_id: int, render: Render) -> None:
    """Download the pictures (cached), queue the job, and remember the render for the buttons."""
    svc, state = _services(context), _state(context)
    settings = svc.settings
    state.last = render
    try:
        content = await fetch(context.bot, render.content, svc)
        styles = tuple([await fetch(context.bot, ref, svc) for ref in render.styles])
    except IntakeError as exc:
        await context.bot.send_message(chat_id, str(exc))
        return
    options = render.options(settings.hq_steps, settings.hq_max_side, settings.hq_time_budget_s)
    job = RenderJob(user_id=user_id, chat_id=chat_id, content=content, styles=styles, options=options)
    try:
        await svc.backend.submit(job)
    except BackendError as exc:
        await context.bot.send_message(chat_id, str(exc), reply_markup=retry_keyboard())


async def _render_pending(update: Update, context: Context, weights: list[float] | None) -> None:
    """The user has a photo and style(s): build the render from their settings and start it."""
    state = _state(context)
    user_settings = state.settings
    render = Render(
        content=state.content, styles=list(state.styles), weights=weights, alpha=user_settings.alpha,
        preserve_color=user_settings.preserve_color, max_side=user_settings.max_side,
        hq=user_settings.hq_next,
    )  # fmt: skip
    user_settings.hq_next = False
    state.reset()
    await start_render(context, update.effective_chat.id, update.effective_user.id, render)


async def accept_pictures(update: Update, context: Context, refs: list[ImageRef]) -> None:
    """The conversation's core: where new pictures go depends on what we are waiting for."""
    state, max_mix = _state(context), _services(context).settings.max_mix_styles
    if state.awaiting == "content":
        state.content, refs = refs[0], refs[1:]
        state.awaiting = "mix_styles" if state.mix_requested else "style"
        state.mix_requested = False
        if not refs:
            mixing = state.awaiting == "mix_styles"
            await _reply(update, texts.MIX_START.format(max_mix=max_mix) if mixing else texts.ASK_STYLE)
            return
    if state.awaiting == "style":
        state.styles = refs[:max_mix]
        await _render_pending(update, context, None)
        return
    state.styles = (state.styles + refs)[:max_mix]
    state.awaiting = "mix_styles"
    count = len(state.styles)
    example = " ".join(["1"] * count) if count > 1 else "0.7 0.3"
    if count >= max_mix:
        await _reply(
            update, texts.MIX_ENOUGH.format(max_mix=max_mix, example=example), reply_markup=mix_keyboard()
        )
    else:
        await _reply(
            update,
            texts.MIX_GOT_STYLE.format(count=count, example=example),
            reply_markup=mix_keyboard() if count >= 2 else None,
        )


# ---------------------------------------------------------------------------- pictures
async def on_picture(update: Update, context: Context) -> None:
    message = update.effective_message
    svc = _services(context)
    try:
        ref = await receive_picture(message, context.bot, svc)
    except IntakeError as exc:
        await _reply(update, str(exc))
        return
    if message.media_group_id is None:
        await accept_pictures(update, context, [ref])
        return
    key = (update.effective_user.id, message.media_group_id)
    album = svc.albums.setdefault(key, {"refs": [], "task": None})
    album["refs"].append((message.message_id, ref))
    if album["task"] is not None:
        album["task"].cancel()
    album["task"] = asyncio.create_task(_flush_album(update, context, key))


async def _flush_album(update: Update, context: Context, key: tuple) -> None:
    """After the album's last picture settles, hand all of them over in order."""
    await asyncio.sleep(ALBUM_SETTLE_S)
    album = _services(context).albums.pop(key)
    refs = [ref for _, ref in sorted(album["refs"], key=lambda item: item[0])]
    await accept_pictures(update, context, refs)


async def on_other_media(update: Update, context: Context) -> None:
    message = update.effective_message
    kinds = [
        ("sticker", "stickers"),
        ("video", "videos"),
        ("animation", "GIF animations"),
        ("voice", "voice messages"),
        ("audio", "audio"),
        ("video_note", "video messages"),
        ("location", "locations"),
        ("contact", "contacts"),
        ("poll", "polls"),
    ]
    kind = next((label for attr, label in kinds if getattr(message, attr, None)), "that kind of message")
    await _reply(update, texts.UNSUPPORTED_KIND.format(kind=kind))


async def on_text(update: Update, context: Context) -> None:
    state = _state(context)
    if state.awaiting in ("mix_styles", "mix_weights"):
        if len(state.styles) < 2:
            await _reply(update, texts.MIX_NEED_MORE.format(count=len(state.styles)))
            return
        try:
            weights = parse_weights(update.effective_message.text, len(state.styles))
        except ValueError as exc:
            await _reply(update, str(exc))
            return
        await _render_pending(update, context, weights)
        return
    await _reply(update, texts.TEXT_WHEN_PICTURE_EXPECTED.format(next_step=texts.next_step(state.awaiting)))


# ---------------------------------------------------------------------------- commands
async def start(update: Update, context: Context) -> None:
    await _reply(update, texts.WELCOME)


async def help_command(update: Update, context: Context) -> None:
    state = _state(context)
    await _reply(
        update,
        texts.HELP.format(
            alpha=texts.format_alpha(state.settings.alpha), max_mix=_services(context).settings.max_mix_styles
        ),
    )


async def alpha(update: Update, context: Context) -> None:
    state = _state(context)
    if not context.args:
        await _reply(
            update,
            texts.ALPHA_NOW.format(alpha=texts.format_alpha(state.settings.alpha)),
            reply_markup=alpha_keyboard(state.settings.alpha),
        )
        return
    try:
        value = parse_alpha(" ".join(context.args))
    except ValueError as exc:
        await _reply(update, str(exc))
        return
    await _set_alpha(update, context, value)


async def _set_alpha(update: Update, context: Context, value: float) -> None:
    state = _state(context)
    state.settings.alpha = value
    shown = texts.format_alpha(value)
    if state.last is not None and abs(state.last.alpha - value) > 1e-9:
        await _reply(update, texts.ALPHA_RERENDER.format(alpha=shown), reply_markup=rerender_keyboard())
    else:
        await _reply(update, texts.ALPHA_SET.format(alpha=shown))


async def mix(update: Update, context: Context) -> None:
    state = _state(context)
    max_mix = _services(context).settings.max_mix_styles
    if state.content is None and state.last is not None:
        state.content = state.last.content  # blend styles on the photo of the last result
    if state.content is None:
        state.mix_requested = True
        await _reply(update, texts.MIX_NEED_CONTENT)
        return
    state.awaiting, state.styles = "mix_styles", []
    await _reply(update, texts.MIX_START.format(max_mix=max_mix))


async def hq(update: Update, context: Context) -> None:
    state = _state(context)
    if state.content is not None and state.styles and state.awaiting in ("mix_styles", "mix_weights"):
        state.settings.hq_next = True
        await _reply(update, texts.HQ_ARMED)
        return
    if state.awaiting == "content" and state.last is not None:
        render = replace(state.last, hq=True)
        await start_render(context, update.effective_chat.id, update.effective_user.id, render)
        return
    state.settings.hq_next = True
    await _reply(update, texts.HQ_ARMED)


async def cancel(update: Update, context: Context) -> None:
    svc, state = _services(context), _state(context)
    job = svc.backend.active_job(update.effective_user.id)
    if job is not None:
        if job.options.hq:
            await _reply(update, texts.CANCEL_HQ_ASK, reply_markup=cancel_hq_keyboard())
        else:
            await svc.backend.cancel(update.effective_user.id)
        return
    if state.awaiting != "content" or state.content is not None or state.settings.hq_next:
        state.reset()
        state.settings.hq_next = False
        await _reply(update, texts.CANCELLED_STEP.format(next_step=texts.next_step("content")))
        return
    await _reply(update, texts.NOTHING_TO_CANCEL.format(next_step=texts.next_step(state.awaiting)))


async def reset(update: Update, context: Context) -> None:
    _state(context).reset()
    await _reply(update, texts.RESET_DONE)


async def forget(update: Update, context: Context) -> None:
    svc = _services(context)
    user_id = update.effective_user.id
    await svc.backend.cancel(user_id)
    result_path(svc.settings.results_dir, user_id).unlink(missing_ok=True)
    context.user_data.clear()
    context.application.drop_user_data(user_id)
    await _reply(update, texts.FORGET_DONE)


async def stats(update: Update, context: Context) -> None:
    """Admins see the pool's load and health; for everyone else the command does not exist."""
    svc = _services(context)
    if update.effective_user.id not in svc.settings.admin_ids:
        await unknown_command(update, context)
        return
    users = len(context.application.user_data)
    await _reply(update, texts.STATS.format(**asdict(svc.backend.stats()), users=users))


async def settings_command(update: Update, context: Context) -> None:
    await _reply(
        update, _settings_text(_state(context)), reply_markup=settings_keyboard(_state(context).settings)
    )


def _settings_text(state: UserState) -> str:
    s = state.settings
    return texts.SETTINGS.format(
        alpha=texts.format_alpha(s.alpha),
        color=texts.COLOR_NAMES[s.preserve_color],
        size=s.max_side,
        hq="yes" if s.hq_next else "no",
    )


async def unknown_command(update: Update, context: Context) -> None:
    command = (update.effective_message.text or "").split()[0]
    await _reply(update, texts.UNKNOWN_COMMAND.format(command=command))


# ---------------------------------------------------------------------------- buttons
async def on_button(update: Update, context: Context) -> None:
    query = update.callback_query
    verb, _, argument = (query.data or "").partition(":")
    handler = BUTTONS.get(verb)
    if handler is None:
        await query.answer()
        return
    await handler(update, context, argument)


async def _rerender_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, _state(context)
    if argument == "file":
        await _send_result_file(update, context)
        return
    if state.last is None:
        await query.answer(texts.NOTHING_TO_RERENDER, show_alert=True)
        return
    last = state.last
    changes = {
        "less": {"alpha": max(0.0, round(last.alpha - ALPHA_STEP, 3)), "hq": False},
        "more": {"alpha": min(1.0, round(last.alpha + ALPHA_STEP, 3)), "hq": False},
        "color": {"preserve_color": "none" if last.preserve_color != "none" else "luminance", "hq": False},
        "hq": {"hq": True},
    }.get(argument)
    if changes is None:
        await query.answer()
        return
    render = replace(last, **changes)
    state.settings.alpha, state.settings.preserve_color = render.alpha, render.preserve_color
    await query.answer()
    await start_render(context, update.effective_chat.id, update.effective_user.id, render)


async def _send_result_file(update: Update, context: Context) -> None:
    query = update.callback_query
    path = result_path(_services(context).settings.results_dir, update.effective_user.id)
    if not path.exists():
        await query.answer(texts.FILE_GONE, show_alert=True)
        return
    await query.answer()
    await context.bot.send_document(update.effective_chat.id, path.read_bytes(), filename="atelier.png")


async def _alpha_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, _state(context)
    await query.answer()
    if argument == "rerender":
        if state.last is None:
            await context.bot.send_message(update.effective_chat.id, texts.NOTHING_TO_RERENDER)
            return
        render = replace(state.last, alpha=state.settings.alpha, hq=False)
        await start_render(context, update.effective_chat.id, update.effective_user.id, render)
        return
    await _set_alpha(update, context, parse_alpha(argument))


async def _mix_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, _state(context)
    if state.awaiting not in ("mix_styles", "mix_weights") or len(state.styles) < 2:
        await query.answer(texts.MIX_NEED_MORE.format(count=len(state.styles)), show_alert=True)
        return
    await query.answer()
    await _render_pending(update, context, None)


async def _cancel_button(update: Update, context: Context, argument: str) -> None:
    query = update.callback_query
    cancelled = await _services(context).backend.cancel(
        update.effective_user.id, keep_partial=argument == "keep"
    )
    await query.answer("Stopping…" if cancelled else "Nothing is running.")


async def _retry_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, _state(context)
    await query.answer()
    if state.last is None:
        await context.bot.send_message(update.effective_chat.id, texts.NOTHING_TO_RERENDER)
        return
    await start_render(context, update.effective_chat.id, update.effective_user.id, state.last)


async def _settings_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, _state(context)
    setting, _, value = argument.partition(":")
    user_settings = state.settings
    if setting == "alpha":
        user_settings.alpha = parse_alpha(value)
    elif setting == "color" and value in texts.COLOR_NAMES:
        user_settings.preserve_color = value
    elif setting == "size" and value.isdigit():
        user_settings.max_side = min(int(value), _services(context).settings.output_max_side)
    elif setting == "hq":
        user_settings.hq_next = not user_settings.hq_next
    await query.answer(texts.SETTING_SAVED)
    await query.edit_message_text(
        _settings_text(state), parse_mode=ParseMode.HTML, reply_markup=settings_keyboard(user_settings)
    )


BUTTONS = {
    "re": _rerender_button,
    "alpha": _alpha_button,
    "mix": _mix_button,
    "cancel": _cancel_button,
    "retry": _retry_button,
    "set": _settings_button,
}


async def on_error(update: object, context: Context) -> None:
    """Log the trace for us; tell the user something short and kind, never the trace."""
    logger.error("unhandled error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat:
        try:
            await context.bot.send_message(
                update.effective_chat.id, "Sorry, something went wrong on my side. Please try again."
            )
        except Exception:
            logger.debug("could not report the error to the user", exc_info=True)
