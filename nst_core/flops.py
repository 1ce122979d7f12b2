"""How much convolution work a render costs: the number the fast model's budget is set in."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from nst_core.adain import Stylizer


def conv_gflop(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor) -> tuple[float, float]:
    """(GFLOP of a render with the style cached, GFLOP of encoding the style), over the convolutions
    (2·Cin·Cout·k²·Hout·Wout each, the border margin included)."""
    stylizer._cache.clear()
    style_flops = convolution_flops(lambda: stylizer.style_stats(style))
    return convolution_flops(lambda: stylizer.stylize(content, [style])) / 1e9, style_flops / 1e9


def convolution_flops(run: Callable[[], object]) -> float:
    """Every convolution ``run`` calls, counted at the operator: a conditioned decoder calls its layers'
    convolutions with per-picture weights (``nst_core.decoder``), which module hooks never saw."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_flop_counts()["Global"].get(torch.ops.aten.convolution, 0))
