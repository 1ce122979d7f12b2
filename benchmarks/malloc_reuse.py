"""Warm renders with glibc's default malloc against ``keep_freed_memory``, side by side in one run.

    python -m benchmarks.malloc_reuse [--rounds 3] [--repeats 5] [--size 512]

The setting cannot be undone inside a process, so each round starts one fresh process per setting
and model, alternating; each renders the first held-out pair (style uncached) ``--repeats`` times
after a warm-up, on a worker thread as the bot does, and reports its median latency, its page faults
per render and its resident set at the end. The table shows medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.datasets import held_out_files
from benchmarks.machine import describe_cpu
from nst_core.device import use_all_cpu_cores
from nst_core.images import fit_max_side, load_image
from nst_core.memory import keep_freed_memory
from nst_core.options import EngineSpec
from nst_core.pipeline import Engine
from nst_core.tensors import to_tensor

SETTINGS = ("default", "keep")
MODELS = ("full", "fast")


def measure(setting: str, model: str, size: int, repeats: int) -> dict[str, float]:
    """One process's numbers: median seconds and page faults per warm render, resident MiB after."""
    if setting == "keep":
        keep_freed_memory()
    use_all_cpu_cores()
    stylizer = Engine.load(EngineSpec(device="cpu", model=model)).stylizer(model)
    content, style = (
        to_tensor(fit_max_side(load_image(held_out_files(folder, 1)[0]), size))
        for folder in ("content", "style")
    )
    thread = ThreadPoolExecutor(1)

    def render() -> tuple[float, int]:
        stylizer._cache.clear()
        faults, started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        thread.submit(stylizer.stylize, content, [style]).result()
        return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    render()  # warm-up: oneDNN picks its kernels on first use
    seconds, faults = zip(*(render() for _ in range(repeats)), strict=True)
    with open("/proc/self/statm") as statm:
        resident_mib = int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    return {"seconds": statistics.median(seconds), "faults": statistics.median(faults), "rss": resident_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--child", nargs=2, metavar=("SETTING", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.size, args.repeats)))
        return
    print(f"machine: {describe_cpu()}; first held-out pair at max side {args.size}, {args.rounds} rounds\n")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {(s, m): [] for s in SETTINGS for m in MODELS}
    for _ in range(args.rounds):
        for model in MODELS:
            for setting in SETTINGS:
                child = [sys.executable, "-m", "benchmarks.malloc_reuse", "--child", setting, model,
                         "--size", str(args.size), "--repeats", str(args.repeats)]  # fmt: skip
                output = subprocess.run(child, capture_output=True, text=True, check=True).stdout
                runs[setting, model].append(json.loads(output.strip().splitlines()[-1]))
    print("| model | malloc | warm render, s | page faults per render | resident after, MiB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for model in MODELS:
        median = {
            setting: {
                key: statistics.median(run[key] for run in runs[setting, model])
                for key in ("seconds", "faults", "rss")
            }
            for setting in SETTINGS
        }
        for setting, value in median.items():
            seconds, faults, rss = value["seconds"], value["faults"], value["rss"]
            print(f"| {model} | {setting} | {seconds:.3f} | {faults:.0f} | {rss:.0f} |")
        ratio = median["keep"]["seconds"] / median["default"]["seconds"]
        print(f"| {model} | keep / default | {ratio:.2f}× | | |")


if __name__ == "__main__":
    main()
