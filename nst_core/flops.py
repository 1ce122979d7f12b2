"""How much convolution work a render costs: the number the fast model's budget is set in."""

from __future__ import annotations

import torch
from torch import nn

from nst_core.adain import Stylizer


def conv_gflop(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor) -> tuple[float, float]:
    """(GFLOP of a render with the style cached, GFLOP of encoding the style), over the conv layers
    (2·Cin·Cout·k²·Hout·Wout each, counted with forward hooks, the border margin included)."""
    counted = {"flops": 0.0}

    def count(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        k = module.kernel_size[0] * module.kernel_size[1]
        counted["flops"] += 2.0 * module.in_channels * module.out_channels * k * output[0, 0].numel()

    modules = [*stylizer.encoder.modules(), *stylizer.decoder.modules()]
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    hooks = [m.register_forward_hook(count) for m in convs]
    try:
        stylizer._cache.clear()
        stylizer.style_stats(style)
        style_flops = counted["flops"]
        counted["flops"] = 0.0
        stylizer.stylize(content, [style])
        cached_flops = counted["flops"]
    finally:
        for hook in hooks:
            hook.remove()
    return cached_flops / 1e9, style_flops / 1e9
