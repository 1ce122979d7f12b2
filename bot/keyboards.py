"""Inline keyboards. Callback data is ``"<verb>:<argument>"``, dispatched in ``bot.handlers``."""

from __future__ import annotations

from telegram import InlineKeyboardButton as Button
from telegram import InlineKeyboardMarkup as Markup

from bot.texts import COLOR_BUTTONS, format_alpha
from nst_core.options import PRESERVE_COLOR_CHOICES, RenderOptions

ALPHA_CHOICES = (0.25, 0.5, 0.75, 1.0)
SIZE_CHOICES = (512, 768, 1024)


def result_keyboard(job_id: str, preserve_color: str, hq: bool) -> Markup:
    """Buttons under a result; each names the job that made it, so it acts on that result."""
    colour = "🎨 Style colours" if preserve_color != "none" else "📷 Keep my colours"
    rows = [
        [Button("➖ Less style", callback_data=f"re:less:{job_id}"),
         Button("➕ More style", callback_data=f"re:more:{job_id}")],
        [Button(colour, callback_data=f"re:color:{job_id}")],
        [Button("📎 Full-size file", callback_data=f"re:file:{job_id}")],
    ]  # fmt: skip
    if not hq:
        rows[1].append(Button("✨ HQ", callback_data=f"re:hq:{job_id}"))
    return Markup(rows)


def alpha_keyboard(current: float) -> Markup:
    return Markup([[
        Button(("• " if abs(a - current) < 1e-6 else "") + format_alpha(a), callback_data=f"alpha:{a}")
        for a in ALPHA_CHOICES
    ]])  # fmt: skip


def rerender_keyboard() -> Markup:
    return Markup([[Button("🔁 Repaint my last picture", callback_data="alpha:rerender")]])


def mix_keyboard() -> Markup:
    return Markup([[Button("⚖️ Equal weights", callback_data="mix:equal")]])


def cancel_hq_keyboard(job_id: str) -> Markup:
    return Markup([[
        Button("⏹ Stop, send what you have", callback_data=f"cancel:keep:{job_id}"),
        Button("🗑 Stop, discard", callback_data=f"cancel:drop:{job_id}"),
    ]])  # fmt: skip


def retry_keyboard() -> Markup:
    return Markup([[Button("🔁 Try again", callback_data="retry:")]])


def settings_keyboard(settings: RenderOptions) -> Markup:
    def mark(selected: bool, label: str) -> str:
        return f"• {label}" if selected else label

    return Markup([
        [Button(mark(abs(a - settings.alpha) < 1e-6, f"α {format_alpha(a)}"), callback_data=f"set:alpha:{a}")
         for a in ALPHA_CHOICES],
        [Button(mark(settings.preserve_color == m, COLOR_BUTTONS[m]), callback_data=f"set:color:{m}")
         for m in PRESERVE_COLOR_CHOICES],
        [Button(mark(settings.max_side == s, f"{s}px"), callback_data=f"set:size:{s}") for s in SIZE_CHOICES],
        [Button(("✅ " if settings.hq else "") + "HQ for next picture", callback_data="set:hq:toggle")],
    ])  # fmt: skip
