"""A fast stand-in for the engine, for bot tests and the load scenario: no torch, predictable.

Magic style colours inject faults inside the worker process: pure red crashes it, pure green
makes it hang, pure blue makes a fast job take ``SLOW_S`` (ignoring cancel, as AdaIN does); a marker
file makes new workers fail to start. HQ jobs take ``HQ_STEPS`` short steps, reporting progress and
honouring cancel and the time budget.
"""

from __future__ import annotations

import os
import time

from PIL import Image, ImageOps

from nst_core.control import CancelToken, Progress, ProgressCallback, Rendered, StopReason
from nst_core.images import fit_max_side
from nst_core.options import EngineSpec, RenderOptions

CRASH_COLOUR = (255, 0, 0)
HANG_COLOUR = (0, 255, 0)
SLOW_COLOUR = (0, 0, 255)
SLOW_S = 1.5
START_FAILS_VARIABLE = "STUB_START_FAILS"
HQ_STEPS = 30
HQ_STEP_S = 0.1


class StubEngine:
    def render(
        self,
        content: Image.Image,
        styles: list[Image.Image],
        options: RenderOptions,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Rendered:
        for style in styles:
            corner = style.getpixel((0, 0))
            if corner == CRASH_COLOUR:
                os._exit(3)
            if corner == HANG_COLOUR:
                time.sleep(3600)
            if corner == SLOW_COLOUR:
                time.sleep(SLOW_S)
        result = fit_max_side(content, options.max_side)
        stopped: StopReason = "done"
        if options.hq:
            stopped = _steps(options, progress, cancel)
        return Rendered(ImageOps.posterize(result, 3) if options.alpha > 0 else result, stopped)

    def render_batch(
        self, requests: list[tuple[Image.Image, list[Image.Image], RenderOptions]]
    ) -> list[Rendered]:
        return [self.render(content, styles, options) for content, styles, options in requests]


def _steps(
    options: RenderOptions, progress: ProgressCallback | None, cancel: CancelToken | None
) -> StopReason:
    """Sleeps ``HQ_STEPS`` times, reporting each step with a forecast, as the engine does (the first
    report, at step 0, is the forecast alone)."""
    deadline = time.monotonic() + (options.time_budget_s or float("inf"))
    for step in range(HQ_STEPS + 1):
        if progress is not None:
            progress(Progress(step, HQ_STEPS, 0.0, step / HQ_STEPS, (HQ_STEPS - step) * HQ_STEP_S))
        if step == HQ_STEPS:
            return "done"
        if cancel is not None and cancel.cancelled:
            return "cancelled"
        if time.monotonic() > deadline:
            return "time_budget"
        time.sleep(HQ_STEP_S)
    return "done"


def load_stub_engine(spec: EngineSpec) -> StubEngine:
    """Fails to start while the file named by ``STUB_START_FAILS`` exists (a worker that cannot restart)."""
    marker = os.environ.get(START_FAILS_VARIABLE)
    if marker and os.path.exists(marker):
        raise RuntimeError("stub engine: told to fail at start")
    return StubEngine()
