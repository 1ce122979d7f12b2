"""``make demo``: a whole conversation, offline and with no token, saving the pictures the bot sends.

The real bot (handlers, inference pool, real engine) talks over HTTP to the Bot API emulator, and an
emulated user sends a photo and a style, then asks for less style with ``/alpha``. The transcript is
printed and the results land in ``out/demo/``.

    python -m testkit.demo [--content PHOTO] [--style PICTURE] [--out out/demo]
"""

from __future__ import annotations

import argparse
import html
import io
import re
import sys
import tempfile
import time
from pathlib import Path

from testkit.emulator import BotAPIEmulator, EmulatedUser
from testkit.local_run import LocalBot, emulator_settings

RESULT_TIMEOUT_S = 600.0  # the first job also loads the models; a 2-core CPU is slow


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def default_pictures() -> tuple[bytes, bytes]:
    """scikit-image's astronaut (bundled in its wheel) and a generated stained-glass "artwork"."""
    from testkit.pictures import sample_image, stained_glass

    return _png(sample_image("astronaut")), _png(stained_glass())


def say(who: str, text: str) -> None:
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    print(f"{who:>5}: " + plain.replace("\n", "\n       "))


class Transcript:
    """Prints each new bot message for one emulated user."""

    def __init__(self, user: EmulatedUser) -> None:
        self.user, self.seen = user, 0

    def flush(self) -> None:
        for sent in self.user.log()[self.seen :]:
            if sent.method in ("sendMessage", "editMessageText"):
                say("bot", sent.params.get("text", ""))
            elif sent.method in ("sendPhoto", "sendDocument"):
                say("bot", f"[picture] {sent.params.get('caption', '')}")
        self.seen = len(self.user.log())


def run_demo(content: bytes, style: bytes, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with BotAPIEmulator() as emulator, tempfile.TemporaryDirectory() as data_dir:
        settings = emulator_settings(
            emulator, Path(data_dir), output_max_side=512, fast_timeout_s=RESULT_TIMEOUT_S,
            progress_edit_interval_s=1.0,
        )  # fmt: skip
        with LocalBot(settings):
            user = emulator.user(1, "Demo")
            transcript = Transcript(user)
            steps = [
                ("/start", lambda: user.send_text("/start"), lambda: user.wait_text("Send me a photo")),
                ("[photo]", lambda: user.send_photo(content), lambda: user.wait_text("Now send the")),
                ("[style]", lambda: user.send_photo(style), lambda: user.wait_photos(1, RESULT_TIMEOUT_S)),
                ("/alpha 0.5", lambda: user.send_text("/alpha 0.5"), lambda: user.wait_message("Repaint")),
            ]
            for label, act, wait in steps:
                say("you", label)
                started = time.monotonic()
                act()
                wait()
                transcript.flush()
                print(f"       ({time.monotonic() - started:.1f} s)")
            say("you", "[taps Repaint]")
            user.press(user.wait_message("Repaint").message, "alpha:rerender")
            user.wait_photos(2, RESULT_TIMEOUT_S)
            transcript.flush()
            saved = [out / "content.png", out / "style.png", out / "result.jpg", out / "result_alpha_0.5.jpg"]
            pictures = [content, style, *(photo.files["photo"] for photo in user.photos()[:2])]
            for path, data in zip(saved, pictures, strict=True):
                path.write_bytes(data)
            return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, help="your photo (default: scikit-image's astronaut)")
    parser.add_argument("--style", type=Path, help="the style picture (default: a generated stained glass)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    content, style = (b"", b"") if args.content and args.style else default_pictures()
    try:
        content = args.content.read_bytes() if args.content else content
        style = args.style.read_bytes() if args.style else style
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    saved = run_demo(content, style, args.out)
    print("\nsaved: " + ", ".join(str(path) for path in saved))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
