"""One entry point for a whole render: images in, image out, fast (AdaIN) or HQ (Gatys).

The CLI and the bot's inference workers both call ``Engine.render`` so every front end resizes,
colour-handles and initializes the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from PIL import Image

from nst_core.adain import Stylizer
from nst_core.color import color_inputs, color_output, luminance_as_rgb
from nst_core.control import CancelToken, ProgressCallback, Rendered, StopReason
from nst_core.device import bf16_is_fast, resolve_device
from nst_core.errors import ModelFileError
from nst_core.gatys import EvaluationCost, GatysConfig, GatysOptimizer
from nst_core.images import fit_max_side
from nst_core.options import DEFAULT_OPTIONS, EngineSpec, ModelChoice, RenderOptions
from nst_core.tensors import to_pil, to_tensor


def default_model(device: torch.device) -> str:
    """The student on a CPU (the full model is ~16x the compute), the full model on a GPU."""
    return "fast" if device.type == "cpu" else "full"


class Engine:
    """Owns the models for one device, each loaded when first asked for (a CLI call that renders with
    the fast model never loads VGG-19); ``render`` is safe to call from one worker thread at a time."""

    def __init__(
        self,
        load_model: Callable[[str], Stylizer],
        device: torch.device,
        model: ModelChoice = "auto",
        gatys_config: GatysConfig | None = None,
    ) -> None:
        self._load_model = load_model
        self._models: dict[str, Stylizer] = {}
        self.device = device
        self.default_model = default_model(device) if model == "auto" else model
        self.gatys_config = gatys_config or GatysConfig(bf16=bf16_is_fast(device))
        self._evaluation_cost: EvaluationCost | None = None  # measured at the first HQ render

    @classmethod
    def load(cls, spec: EngineSpec | None = None) -> Engine:
        """An engine for ``spec``'s device and weight files; nothing is loaded until a render needs it."""
        spec = spec or EngineSpec()
        device = resolve_device(spec.device)

        def load_model(name: str) -> Stylizer:
            if name == "fast":
                return Stylizer.load_fast(device, spec.student_path)
            return Stylizer.load(device, decoder_path=spec.decoder_path, vgg_path=spec.vgg_path)

        return cls(load_model, device, spec.model)

    @classmethod
    def of(cls, stylizer: Stylizer, gatys_config: GatysConfig | None = None) -> Engine:
        """An engine whose every model is ``stylizer`` (tests, and callers that built their own)."""
        return cls(lambda _name: stylizer, stylizer.device, "full", gatys_config)

    def stylizer(self, model: ModelChoice = "auto") -> Stylizer:
        name = self.default_model if model == "auto" else model
        if name not in self._models:
            self._models[name] = self._load_model(name)
        return self._models[name]

    def render(
        self,
        content: Image.Image,
        styles: Sequence[Image.Image],
        options: RenderOptions = DEFAULT_OPTIONS,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Rendered:
        """Stylize ``content`` (downscaled to ``options.max_side``); ``options`` is trusted as built."""
        content_t = to_tensor(fit_max_side(content, options.max_side))
        styles_t = [to_tensor(fit_max_side(style, options.max_side)) for style in styles]
        if not options.hq:
            return Rendered(to_pil(self.stylizer(options.model).stylize(content_t, styles_t, options)))
        image, stopped = self._render_hq(content_t, styles_t, options, progress, cancel)
        return Rendered(to_pil(image), stopped)

    def render_batch(
        self, requests: Sequence[tuple[Image.Image, Sequence[Image.Image], RenderOptions]]
    ) -> list[Rendered]:
        """Fast renders of several requests; those whose contents come out the same size share one
        encoder and decoder pass (``Stylizer.stylize_batch``), model by model. Results keep the order
        of ``requests``."""
        tensors = [
            (to_tensor(fit_max_side(content, options.max_side)),
             [to_tensor(fit_max_side(style, options.max_side)) for style in styles], options)
            for content, styles, options in requests
        ]  # fmt: skip
        if any(options.hq for _, _, options in tensors):
            raise ValueError("only fast renders are batched")
        groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        for index, (content, _, options) in enumerate(tensors):
            groups.setdefault((options.model, tuple(content.shape)), []).append(index)
        results: list[Rendered | None] = [None] * len(tensors)
        for (model, _), indices in groups.items():
            outputs = self.stylizer(model).stylize_batch([tensors[index] for index in indices])
            for index, output in zip(indices, outputs, strict=True):
                results[index] = Rendered(to_pil(output))
        return results  # type: ignore[return-value]

    def _render_hq(
        self,
        content: torch.Tensor,
        styles: list[torch.Tensor],
        options: RenderOptions,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> tuple[torch.Tensor, StopReason]:
        weights = options.weights_for(len(styles))
        init = None
        if options.hq_init == "adain":
            fast_mode = self.stylizer(options.model)
            if not fast_mode.decoder_trained:
                raise ModelFileError("HQ init 'adain' needs a trained decoder; none is installed")
            # Full style: alpha acts through the objective below, once.
            init = fast_mode.stylize(content, styles, replace(options, alpha=1.0))
        network_content, network_styles = color_inputs(content, styles, options.preserve_color)
        if init is not None and options.preserve_color == "luminance":
            init = luminance_as_rgb(init)
        config = replace(
            self.gatys_config,
            time_budget_s=options.time_budget_s,
            steps=options.steps or self.gatys_config.steps,
            style_weight=self.gatys_config.style_weight * options.alpha,
        )
        encoder = self.stylizer("full").encoder  # Gatys needs all of VGG-19
        if (progress is not None or config.time_budget_s) and self._evaluation_cost is None:
            self._evaluation_cost = GatysOptimizer(encoder, config).measure_cost()
        optimizer = GatysOptimizer(encoder, config, self._evaluation_cost)
        result = optimizer.run(network_content, network_styles, weights, init, progress, cancel)
        return color_output(result.image, content, options.preserve_color), result.stopped
