"""Conversation handlers: pictures in, commands, buttons. Each handler is short and never runs torch.

Every reply is HTML (``Defaults(parse_mode=HTML)`` in ``app``), so anything a user typed or named is
escaped before it is echoed. Each user's updates are handled one at a time, in the order sent
(``bot.updates``); an album is collected until its last picture has settled and is handed over
before the user's next update takes effect, whichever comes first.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Coroutine
from dataclasses import asdict, replace
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop

from bot import texts
from bot.config import Settings
from bot.conversation import Event
from bot.intake import IntakeError, fetch, receive_picture
from bot.jobs import BackendError, RenderJob, new_job_id
from bot.keyboards import (
    ALPHA_CHOICES,
    SIZE_CHOICES,
    alpha_keyboard,
    cancel_hq_keyboard,
    mix_keyboard,
    rerender_keyboard,
    retry_keyboard,
    settings_keyboard,
)
from bot.services import Context
from bot.state import ALPHA_STEP, Album, ImageRef, Render, UserState, parse_alpha, parse_weights
from bot.updates import AlbumDue, AlbumLeftAlone
from nst_core.options import PRESERVE_COLOR_CHOICES, RenderOptions

logger = logging.getLogger(__name__)
ALBUM_SETTLE_S = 1.2  # an album's pictures arrive as separate updates within about a second


class ButtonError(Exception):
    """Callback data that no keyboard of ours produces (stale, or forged)."""


async def _reply(update: Update, text: str, **kwargs) -> None:
    await update.effective_message.reply_text(text, **kwargs)


# ---------------------------------------------------------------------------- gate
async def gate(update: Update, context: Context) -> None:
    """Runs before every handler: the flood guard, the allowlist, and a pending album."""
    user = update.effective_user
    if user is None or update.edited_message is not None:  # edits would replay old steps
        raise ApplicationHandlerStop
    svc, query = context.bot_data.services, update.callback_query
    allowed, warn = await svc.flood.allow(user.id)
    if not allowed:
        if query:
            await query.answer(texts.FLOOD)
        elif warn and update.effective_message:
            await _reply(update, texts.FLOOD)
        raise ApplicationHandlerStop
    if not svc.settings.is_allowed(user.id):
        if query:
            await query.answer(texts.NOT_ALLOWED, show_alert=True)
        elif update.effective_message and (await svc.strangers.allow(user.id))[0]:
            await _reply(update, texts.NOT_ALLOWED)
        raise ApplicationHandlerStop
    album = context.user_data.album
    message = update.effective_message
    if album is not None and (message is None or message.media_group_id != album.group_id):
        await _flush_album(context.application, user.id)


# ---------------------------------------------------------------------------- rendering
async def start_render(
    context: Context, chat_id: int, user_id: int, state: UserState, render: Render
) -> None:
    """Fetch the pictures, queue the job, and remember the render only once it is accepted."""
    svc, bot = context.bot_data.services, context.bot
    try:
        content = await fetch(bot, render.content, user_id, svc)
        styles = [await fetch(bot, ref, user_id, svc) for ref in render.styles]
    except IntakeError as exc:
        await bot.send_message(chat_id, str(exc))
        return
    job_id = new_job_id()
    content, staged_styles = await asyncio.to_thread(svc.files.stage_job, job_id, content, styles)
    options = _job_options(render.options, svc.settings)
    picture_ids = (render.content.unique_id, *(ref.unique_id for ref in render.styles))
    job = RenderJob(user_id, chat_id, content, staged_styles, options, job_id=job_id, picture_ids=picture_ids)
    try:
        await svc.backend.submit(job)
    except BackendError as exc:
        await asyncio.to_thread(svc.files.remove_job, job_id)
        state.refused = render
        text = texts.refusal(exc.refusal, exc.waiting)
        await bot.send_message(chat_id, text, reply_markup=retry_keyboard())
        return
    state.remember(job_id, render)


def _job_options(options: RenderOptions, settings: Settings) -> RenderOptions:
    """The operator's limits on top of the user's choices: HQ steps, time budget and size."""
    if not options.hq:
        return options
    return replace(
        options,
        max_side=min(options.max_side, settings.hq_max_side),
        steps=settings.hq_steps,
        time_budget_s=settings.hq_time_budget_s,
    )


async def _render_pending(
    context: Context, chat_id: int, user_id: int, state: UserState, event: Event, weights: list[float] | None
) -> None:
    """The user has a photo and style(s): render them with their settings (/hq applies once)."""
    render = Render(state.content, list(state.styles), replace(state.options, weights=weights))
    state.options = replace(state.options, hq=False)
    state.advance(event)
    state.clear_pictures()
    await start_render(context, chat_id, user_id, state, render)


async def accept_pictures(
    context: Context, chat_id: int, user_id: int, state: UserState, refs: list[ImageRef]
) -> None:
    """The conversation's core: where new pictures go depends on what we are waiting for."""
    max_mix, send = context.bot_data.services.settings.max_mix_styles, context.bot.send_message
    if state.awaiting == "content":
        state.content, refs = refs[0], refs[1:]
        state.advance("photo_for_mix" if state.mix_requested else "photo")
        state.mix_requested = False
        if not refs:
            mixing = state.awaiting == "mix_styles"
            await send(chat_id, texts.MIX_START.format(max_mix=max_mix) if mixing else texts.ASK_STYLE)
            return
    if state.awaiting == "style":
        state.styles = refs[:max_mix]
        await _render_pending(context, chat_id, user_id, state, "style_picture", None)
        return
    state.styles = (state.styles + refs)[:max_mix]
    state.advance("style_picture")
    count = len(state.styles)
    example = " ".join(["1"] * count) if count > 1 else "0.7 0.3"
    if count >= max_mix:
        text, keyboard = texts.MIX_ENOUGH.format(max_mix=max_mix, example=example), mix_keyboard()
    else:
        text = texts.MIX_GOT_STYLE.format(count=count, example=example)
        keyboard = mix_keyboard() if count >= 2 else None
    await send(chat_id, text, reply_markup=keyboard)


# ---------------------------------------------------------------------------- pictures
async def on_picture(update: Update, context: Context) -> None:
    message, svc = update.effective_message, context.bot_data.services
    try:
        ref = await receive_picture(message, context.bot, svc)
    except IntakeError as exc:
        await _reply(update, str(exc))
        return
    user_id, chat_id = update.effective_user.id, update.effective_chat.id
    if message.media_group_id is None:
        await accept_pictures(context, chat_id, user_id, context.user_data, [ref])
        return
    state = context.user_data
    if state.album is None:
        state.album = Album(message.media_group_id, chat_id)
    state.album.pictures.append((message.message_id, ref))
    context.application.create_task(album_settling(context.application, user_id, state.album))


def album_settling(application: Application, user_id: int, album: Album) -> Coroutine[Any, Any, None]:
    """The quiet spell after the album's latest picture, as it is now (also run again at start for an
    album saved before a restart, whose timer died with the process)."""
    return _album_timer(application, AlbumDue(user_id, album.group_id, len(album.pictures)))


async def _album_timer(application: Application, due: AlbumDue) -> None:
    """After a quiet spell, ask (through the update queue, so in the user's order) to flush the album."""
    await asyncio.sleep(ALBUM_SETTLE_S)
    await application.update_queue.put(due)


async def on_album_due(update: AlbumDue, context: Context) -> None:
    album = context.application.user_data[update.user_id].album  # not an Update: no context.user_data
    if album is not None and album.group_id == update.group_id and len(album.pictures) == update.seen:
        await _flush_album(context.application, update.user_id)  # no picture arrived since: complete


async def on_album_left_alone(update: AlbumLeftAlone, context: Context) -> None:
    if context.application.user_data[update.user_id].album is not None:  # nobody handed it over since
        await _flush_album(context.application, update.user_id)


async def _flush_album(application: Application, user_id: int) -> None:
    """Hand all of an album's pictures over, in the order they were sent."""
    state = application.user_data[user_id]
    album, state.album = state.album, None
    refs = [ref for _, ref in sorted(album.pictures, key=lambda item: item[0])]
    context = application.context_types.context(application, user_id=user_id)
    await accept_pictures(context, album.chat_id, user_id, state, refs)
    application.mark_data_for_update_persistence(user_ids=user_id)


async def on_other_media(update: Update, context: Context) -> None:
    message = update.effective_message
    kind = next(
        (label for attribute, label in texts.MEDIA_KINDS.items() if getattr(message, attribute, None)),
        texts.OTHER_MEDIA_KIND,
    )
    await _reply(update, texts.UNSUPPORTED_KIND.format(kind=kind))


async def on_text(update: Update, context: Context) -> None:
    state = context.user_data
    if state.awaiting == "mix_styles":
        if len(state.styles) < 2:
            await _reply(update, texts.MIX_NEED_MORE.format(count=len(state.styles)))
            return
        try:
            weights = parse_weights(update.effective_message.text, len(state.styles))
        except ValueError as exc:
            await _reply(update, html.escape(str(exc)))
            return
        chat_id, user_id = update.effective_chat.id, update.effective_user.id
        await _render_pending(context, chat_id, user_id, state, "weights", weights)
        return
    await _reply(update, texts.TEXT_WHEN_PICTURE_EXPECTED.format(next_step=texts.next_step(state.awaiting)))


# ---------------------------------------------------------------------------- commands
async def start_command(update: Update, context: Context) -> None:
    await _reply(update, texts.WELCOME)


async def help_command(update: Update, context: Context) -> None:
    state = context.user_data
    await _reply(
        update,
        texts.HELP.format(
            alpha=texts.format_alpha(state.options.alpha),
            max_mix=context.bot_data.services.settings.max_mix_styles,
        ),
    )


async def alpha_command(update: Update, context: Context) -> None:
    state = context.user_data
    if not context.args:
        await _reply(
            update,
            texts.ALPHA_NOW.format(alpha=texts.format_alpha(state.options.alpha)),
            reply_markup=alpha_keyboard(state.options.alpha),
        )
        return
    try:
        value = parse_alpha(" ".join(context.args))
    except ValueError as exc:
        await _reply(update, html.escape(str(exc)))
        return
    await _set_alpha(update, context, value)


async def _set_alpha(update: Update, context: Context, value: float) -> None:
    state = context.user_data
    state.options = replace(state.options, alpha=value)
    shown = texts.format_alpha(value)
    send = context.bot.send_message
    if state.last is not None and abs(state.last.options.alpha - value) > 1e-9:
        await send(
            update.effective_chat.id,
            texts.ALPHA_RERENDER.format(alpha=shown),
            reply_markup=rerender_keyboard(),
        )
    else:
        await send(update.effective_chat.id, texts.ALPHA_SET.format(alpha=shown))


async def mix_command(update: Update, context: Context) -> None:
    state = context.user_data
    max_mix = context.bot_data.services.settings.max_mix_styles
    if state.content is None and state.last is not None:
        state.content = state.last.content  # blend styles on the photo of the last result
    if state.content is None:
        state.mix_requested = True
        await _reply(update, texts.MIX_NEED_CONTENT)
        return
    state.advance("mix")
    state.styles = []
    await _reply(update, texts.MIX_START.format(max_mix=max_mix))


async def hq_command(update: Update, context: Context) -> None:
    state = context.user_data
    if state.awaiting == "content" and state.content is None and state.last is not None:
        render = _changed(state.last, hq=True)
        await start_render(context, update.effective_chat.id, update.effective_user.id, state, render)
        return
    state.options = replace(state.options, hq=True)
    await _reply(update, texts.HQ_ARMED)


async def cancel_command(update: Update, context: Context) -> None:
    svc, state = context.bot_data.services, context.user_data
    job = await svc.backend.active_job(update.effective_user.id)
    if job is not None:
        if job.options.hq:
            await _reply(update, texts.CANCEL_HQ_ASK, reply_markup=cancel_hq_keyboard(job.job_id))
        else:
            await svc.backend.cancel(update.effective_user.id)
        return
    if state.awaiting != "content" or state.content is not None or state.options.hq:
        state.reset()
        state.options = replace(state.options, hq=False)
        await _reply(update, texts.CANCELLED_STEP.format(next_step=texts.next_step("content")))
        return
    await _reply(update, texts.NOTHING_TO_CANCEL.format(next_step=texts.next_step(state.awaiting)))


async def reset_command(update: Update, context: Context) -> None:
    context.user_data.reset()
    await _reply(update, texts.RESET_DONE)


async def forget_command(update: Update, context: Context) -> None:
    """Delete everything about the user: jobs (silently), pictures, results, state, flood record."""
    svc = context.bot_data.services
    user_id = update.effective_user.id
    await svc.backend.forget_user(user_id)
    await asyncio.to_thread(svc.files.forget_user, user_id)
    await svc.flood.forget(user_id)
    context.application.drop_user_data(user_id)
    await _reply(update, texts.FORGET_DONE)


async def stats_command(update: Update, context: Context) -> None:
    """Admins see the pool's load and health; for everyone else the command does not exist."""
    svc = context.bot_data.services
    if update.effective_user.id not in svc.settings.admin_ids:
        await unknown_command(update, context)
        return
    await _reply(update, texts.STATS.format(**asdict(await svc.backend.stats())))


async def settings_command(update: Update, context: Context) -> None:
    state = context.user_data
    await _reply(update, _settings_text(state.options), reply_markup=settings_keyboard(state.options))


def _settings_text(options: RenderOptions) -> str:
    return texts.SETTINGS.format(
        alpha=texts.format_alpha(options.alpha),
        color=texts.COLOR_NAMES[options.preserve_color],
        size=options.max_side,
        hq="yes" if options.hq else "no",
    )


async def unknown_command(update: Update, context: Context) -> None:
    command = (update.effective_message.text or "").split()[0]
    await _reply(update, texts.UNKNOWN_COMMAND.format(command=html.escape(command)))


# ---------------------------------------------------------------------------- buttons
async def on_button(update: Update, context: Context) -> None:
    query = update.callback_query
    verb, _, argument = (query.data or "").partition(":")
    handler = BUTTONS.get(verb)
    try:
        if handler is None:
            raise ButtonError(verb)
        await handler(update, context, argument)
    except ButtonError:
        await query.answer(texts.BUTTON_UNKNOWN, show_alert=True)


def _changed(render: Render, **changes) -> Render:
    """The same pictures rendered with some options changed."""
    return replace(render, options=replace(render.options, **changes))


def _choice(value: str, choices: tuple) -> float | int:
    """A button's number, accepted only if it is one our keyboards offer."""
    kind = type(choices[0])
    try:
        number = kind(value)
    except ValueError:
        raise ButtonError(value) from None
    if number not in choices:
        raise ButtonError(value)
    return number


async def _rerender_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, context.user_data
    action, _, job_id = argument.partition(":")
    if action == "file":
        await _send_result_file(update, context, job_id)
        return
    render = state.renders.get(job_id)
    if render is None:
        await query.answer(texts.RESULT_GONE, show_alert=True)
        return
    made_with = render.options
    changes = {
        "less": {"alpha": max(0.0, round(made_with.alpha - ALPHA_STEP, 3)), "hq": False},
        "more": {"alpha": min(1.0, round(made_with.alpha + ALPHA_STEP, 3)), "hq": False},
        "color": {
            "preserve_color": "none" if made_with.preserve_color != "none" else "luminance",
            "hq": False,
        },
        "hq": {"hq": True},
    }.get(action)
    if changes is None:
        raise ButtonError(action)
    render = _changed(render, **changes)
    state.options = replace(
        state.options, alpha=render.options.alpha, preserve_color=render.options.preserve_color
    )
    await query.answer()
    await start_render(context, update.effective_chat.id, update.effective_user.id, state, render)


async def _send_result_file(update: Update, context: Context, job_id: str) -> None:
    query = update.callback_query
    data = await context.bot_data.services.backend.kept_result(update.effective_user.id, job_id)
    if data is None:
        await query.answer(texts.FILE_GONE, show_alert=True)
        return
    await query.answer()
    await context.bot.send_document(update.effective_chat.id, data, filename="atelier.png")


async def _alpha_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, context.user_data
    if argument == "rerender":
        await query.answer()
        if state.last is None:
            await context.bot.send_message(update.effective_chat.id, texts.NOTHING_TO_RERENDER)
            return
        render = _changed(state.last, alpha=state.options.alpha, hq=False)
        await start_render(context, update.effective_chat.id, update.effective_user.id, state, render)
        return
    value = _choice(argument, ALPHA_CHOICES)
    await query.answer()
    await _set_alpha(update, context, value)


async def _mix_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, context.user_data
    if state.awaiting != "mix_styles" or len(state.styles) < 2:
        await query.answer(texts.MIX_NEED_MORE.format(count=len(state.styles)), show_alert=True)
        return
    await query.answer()
    await _render_pending(context, update.effective_chat.id, update.effective_user.id, state, "weights", None)


async def _cancel_button(update: Update, context: Context, argument: str) -> None:
    query, backend = update.callback_query, context.bot_data.services.backend
    choice, _, job_id = argument.partition(":")
    if choice not in ("keep", "drop"):
        raise ButtonError(choice)
    job = await backend.active_job(update.effective_user.id)
    if job is None or job.job_id != job_id:
        await query.answer(texts.ALREADY_FINISHED)
        return
    await backend.cancel(update.effective_user.id, keep_partial=choice == "keep")
    await query.answer(texts.STOPPING)


async def _retry_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, context.user_data
    await query.answer()
    render, state.refused = state.refused, None
    if render is None:
        await context.bot.send_message(update.effective_chat.id, texts.NOTHING_TO_RERENDER)
        return
    await start_render(context, update.effective_chat.id, update.effective_user.id, state, render)


async def _settings_button(update: Update, context: Context, argument: str) -> None:
    query, state = update.callback_query, context.user_data
    setting, _, value = argument.partition(":")
    options = state.options
    if setting == "alpha":
        options = replace(options, alpha=_choice(value, ALPHA_CHOICES))
    elif setting == "color" and value in PRESERVE_COLOR_CHOICES:
        options = replace(options, preserve_color=value)
    elif setting == "size":
        size = min(_choice(value, SIZE_CHOICES), context.bot_data.services.settings.output_max_side)
        options = replace(options, max_side=size)
    elif setting == "hq" and value == "toggle":
        options = replace(options, hq=not options.hq)
    else:
        raise ButtonError(argument)
    state.options = options
    await query.answer(texts.SETTING_SAVED)
    await query.edit_message_text(_settings_text(options), reply_markup=settings_keyboard(options))


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
            await context.bot.send_message(update.effective_chat.id, texts.SOMETHING_WENT_WRONG)
        except Exception:
            logger.debug("could not report the error to the user", exc_info=True)
