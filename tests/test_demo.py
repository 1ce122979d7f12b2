"""``make demo``: the real bot and the real engine, offline, over HTTP against the emulator."""

from testkit.demo import run_demo
from testkit.pictures import picture
from tests.bot_helpers import image_size


def test_demo_conversation_saves_both_results(tmp_path):
    saved = run_demo(picture(96, 64, seed=1), picture(48, 48, seed=2), tmp_path)
    assert [p.name for p in saved] == ["content.png", "style.png", "result.jpg", "result_alpha_0.5.jpg"]
    first, second = (p.read_bytes() for p in saved[2:])
    assert image_size(first) == image_size(second) == (96, 64)
    assert first != second  # alpha 0.5 is another picture
