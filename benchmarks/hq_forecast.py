"""How honest the HQ time forecast is: what the engine says before its first evaluation against
what the render then takes, at a few sizes, on this machine.

    python -m benchmarks.hq_forecast [--sides 160 320 512] [--steps 100]

One engine (as one bot worker) renders scikit-image's astronaut in the style of its coffee picture
at each size with ``--steps`` loss evaluations. The first HQ render also measures the device
(``GatysOptimizer.measure_cost``); that time is printed apart. Reported per size: the forecast at
step 0, at a quarter and at half of the work, the actual render time, and forecast / actual.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.machine import describe_cpu
from nst_core.control import Progress
from nst_core.device import use_all_cpu_cores
from nst_core.options import EngineSpec, RenderOptions
from nst_core.pipeline import Engine
from testkit.pictures import sample_image


def forecast_at(reports: list[tuple[float, Progress]], fraction: float) -> tuple[float, float]:
    """(seconds since the start, forecast) of the first report at or past ``fraction`` of the work."""
    return next((at, p.seconds_left or 0.0) for at, p in reports if p.fraction >= fraction)


def timed_render(engine: Engine, options: RenderOptions) -> tuple[list[tuple[float, Progress]], float, str]:
    """(progress reports with their times, seconds in all, output size) of one HQ render."""
    reports: list[tuple[float, Progress]] = []
    began = time.perf_counter()

    def report(progress: Progress) -> None:
        reports.append((time.perf_counter() - began, progress))

    rendered = engine.render(sample_image("astronaut"), [sample_image("coffee")], options, progress=report)
    return reports, time.perf_counter() - began, "×".join(map(str, rendered.image.size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[160, 320, 512])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    use_all_cpu_cores()
    print(f"CPU: {describe_cpu()}")
    engine = Engine.load(EngineSpec(device="cpu", model="full"))
    began = time.perf_counter()
    engine.stylizer("full")
    print(f"models loaded in {time.perf_counter() - began:.1f} s")
    calibrated = False
    print(f"{'size':>9} {'at 0':>8} {'at 25%':>15} {'at 50%':>15} {'actual':>8} {'at 0 / actual':>14}")
    for side in args.sides:
        reports, actual, size = timed_render(engine, RenderOptions(hq=True, max_side=side, steps=args.steps))
        start_at, first = reports[0][0], reports[0][1].seconds_left or 0.0
        if not calibrated:  # the first report comes right after the device was measured
            print(f"device measured in {start_at:.1f} s (first HQ render of a worker only)")
            calibrated = True
        actual -= start_at
        quarter, half = (forecast_at(reports, share) for share in (0.25, 0.5))
        quarter_text, half_text = (f"{left:.0f}+{at - start_at:.0f} s" for at, left in (quarter, half))
        ratio = first / actual
        print(f"{size:>9} {first:>6.0f} s {quarter_text:>15} {half_text:>15} {actual:>6.0f} s {ratio:>14.2f}")
    print("at 25% / 50%: forecast left + time already spent; the ideal is the actual time.")


if __name__ == "__main__":
    main()
