"""Shared fixtures: the real VGG encoder (loaded once), a seeded random decoder, tiny sample images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from nst_core.adain import Stylizer, feature_stats
from nst_core.decoder import Decoder
from nst_core.student import save_student, untrained_student
from nst_core.tensors import to_tensor
from nst_core.vgg import get_encoder
from testkit.emulator import BotAPIEmulator
from testkit.local_run import LocalBot
from testkit.pictures import sample_image
from tests.bot_helpers import USER_IDS, bot_settings

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def emulator():
    """A Bot API emulator shared by a module's bot tests (each test uses its own user ids)."""
    with BotAPIEmulator() as api:
        yield api


@pytest.fixture(scope="module")
def bot(emulator, tmp_path_factory):
    """The real bot (stub engine, real workers) serving the module's emulator."""
    with LocalBot(bot_settings(emulator, tmp_path_factory.mktemp("data"))) as running:
        yield running


@pytest.fixture()
def user(emulator, bot):
    """A new user of the module's bot."""
    return emulator.user(next(USER_IDS))


@pytest.fixture(scope="session")
def encoder():
    return get_encoder()


@pytest.fixture(scope="session")
def stylizer(encoder):
    """A Stylizer with a random (seeded) decoder: the tests check mechanics, not beauty."""
    torch.manual_seed(0)
    return Stylizer(encoder, Decoder(), torch.device("cpu"), decoder_trained=False)


@pytest.fixture(scope="session")
def fast_stylizer(content):
    """The fast model as training starts it (pruned VGG-19, random decoder), but with skip inputs and
    a conditioning that already count (both start at zero): mechanics, not beauty."""
    encoder, decoder = untrained_student(content)
    torch.manual_seed(0)
    for skip in decoder.skips.values():
        torch.nn.init.normal_(skip.weight, std=0.2)
    with torch.no_grad():
        features = encoder(content, decoder.condition_layers)
        decoder.condition.calibrate({layer: feature_stats(value) for layer, value in features.items()})
    torch.nn.init.normal_(decoder.condition.film.weight, std=0.2)
    return Stylizer(encoder, decoder, torch.device("cpu"))


@pytest.fixture(scope="session")
def student_file(fast_stylizer, tmp_path_factory):
    """A fast model weights file (``NST_STUDENT_PATH``), independent of the one shipped in weights/."""
    path = tmp_path_factory.mktemp("student") / "student.safetensors"
    save_student(fast_stylizer.encoder, fast_stylizer.decoder, path)
    return path


def small(name: str, side: int) -> Image.Image:
    image = sample_image(name)
    image.thumbnail((side, side))
    return image


@pytest.fixture(scope="session")
def content_image() -> Image.Image:
    return small("astronaut", 64)


@pytest.fixture(scope="session")
def style_image() -> Image.Image:
    return small("coffee", 72)


@pytest.fixture(scope="session")
def content(content_image) -> torch.Tensor:
    return to_tensor(content_image)


@pytest.fixture(scope="session")
def style(style_image) -> torch.Tensor:
    return to_tensor(style_image)


@pytest.fixture(scope="session")
def style2() -> torch.Tensor:
    return to_tensor(small("chelsea", 56))
