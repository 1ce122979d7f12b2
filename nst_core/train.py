"""Train the AdaIN decoder (Huang & Belongie 2017, sec. 6), readable top to bottom.

    nst train --out runs/decoder                  # start
    nst train --out runs/decoder --resume         # continue from runs/decoder/ckpt.pt

Loss: L = L_c + λ·L_s. L_c compares relu4_1 of the output with the AdaIN target t; L_s matches
channel means and stds of the output and the style at relu1_1, relu2_1, relu3_1, relu4_1.

Our VGG is the raw Caffe VGG-19, whose activations grow with depth (mean relu1_1 ≈ 21, relu2_1 ≈
120, relu3_1 ≈ 120, relu4_1 ≈ 480 on our data), unlike the "normalised" VGG the authors used
(each filter's mean activation rescaled to 1). So every layer's features are divided by
LAYER_SCALE before the losses: this gives the four style layers equal say, as in the paper, and
lets λ = 10 keep the paper's meaning. Without it relu4_1 would outweigh relu1_1 ~500-fold and the
decoder would ignore fine brush texture.

An optional first phase (``--pretrain-steps``) teaches the decoder to invert relu4_1 (target =
content features, plus a pixel loss): cheap signal that gets it to produce sharp images before the
style objective starts.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler

from nst_core.adain import adain, feature_stats
from nst_core.decoder import Decoder, save_decoder
from nst_core.device import resolve_device, use_all_cpu_cores
from nst_core.images import to_tensor
from nst_core.vgg import get_encoder

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
LAYER_SCALE = {"relu1_1": 21.0, "relu2_1": 120.0, "relu3_1": 120.0, "relu4_1": 480.0}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- data
def is_validation(name: str, percent: int = 3) -> bool:
    """A fixed, name-hash-chosen ``percent``% of files is held out (stable as folders grow)."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100 < percent


def list_images(folder: Path, validation: bool) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p for p in files if is_validation(p.name) == validation]


def open_with_short_side(path: Path, short: int) -> Image.Image:
    """RGB image resized so its shorter side is ``short`` (aspect ratio kept)."""
    image = Image.open(path).convert("RGB")
    scale = short / min(image.size)
    size = (max(short, round(image.width * scale)), max(short, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


class RandomCrops(Dataset):
    """Each item: the image with its short side resized to a random length, then a random square crop."""

    def __init__(self, files: list[Path], crop: int) -> None:
        if not files:
            raise ValueError("no images found")
        self.files, self.crop = files, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        short = random.randint(self.crop, max(self.crop, round(self.crop * 1.5)))
        image = open_with_short_side(self.files[index], short)
        left = random.randint(0, image.width - self.crop)
        top = random.randint(0, image.height - self.crop)
        return to_tensor(image.crop((left, top, left + self.crop, top + self.crop)))[0]


def center_crops(files: list[Path], crop: int) -> torch.Tensor:
    """Deterministic validation batch: short side to ``crop``, centre square."""
    tensors = []
    for path in files:
        image = open_with_short_side(path, crop)
        left, top = (image.width - crop) // 2, (image.height - crop) // 2
        tensors.append(to_tensor(image.crop((left, top, left + crop, top + crop)))[0])
    return torch.stack(tensors)


def endless(loader: DataLoader):
    while True:
        yield from loader


# ----------------------------------------------------------------------------- loss
def content_loss(output_relu4_1: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_c: relu4_1 of the output against the AdaIN target, both on the normalised scale."""
    scale = LAYER_SCALE["relu4_1"]
    return F.mse_loss(output_relu4_1 / scale, target / scale)


def style_loss(
    output_features: dict[str, torch.Tensor], style_features: dict[str, torch.Tensor]
) -> torch.Tensor:
    """L_s: channel means and stds of output and style at relu1_1…relu4_1, each layer normalised."""
    total = torch.zeros((), device=output_features[STYLE_LAYERS[0]].device)
    for layer in STYLE_LAYERS:
        out_stats = feature_stats(output_features[layer] / LAYER_SCALE[layer])
        sty_stats = feature_stats(style_features[layer] / LAYER_SCALE[layer])
        total = total + F.mse_loss(out_stats.mean, sty_stats.mean) + F.mse_loss(out_stats.std, sty_stats.std)
    return total


def compute_losses(encoder, decoder, content, style, pretrain: bool) -> dict[str, torch.Tensor]:
    """Content and style losses of one batch; in pretraining the target is the content itself."""
    with torch.no_grad():
        content_features = encoder(content, ["relu4_1"])["relu4_1"]
        style_features = encoder(style, STYLE_LAYERS)
        target = (
            content_features
            if pretrain
            else adain(content_features, feature_stats(style_features["relu4_1"]))
        )
    output = decoder(target)
    output_features = encoder(output, STYLE_LAYERS)
    losses = {"content": content_loss(output_features["relu4_1"], target)}
    if pretrain:
        losses["pixel"] = F.mse_loss(output, content)
        losses["style"] = torch.zeros(())
    else:
        losses["style"] = style_loss(output_features, style_features)
    return losses


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, decoder, optimizer, step: int, images_seen: int) -> None:
    state = {
        "decoder": decoder.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "images_seen": images_seen,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never leaves a broken checkpoint


def load_checkpoint(path: Path, decoder, optimizer) -> tuple[int, int]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    decoder.load_state_dict(state["decoder"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["step"], state["images_seen"]


def write_plot(log_path: Path, out_path: Path) -> None:
    """Loss curves from the CSV log (matplotlib is a training-only dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, split in zip(axes, ("train", "val"), strict=True):
        picked = [r for r in rows if r["split"] == split]
        steps = [int(r["step"]) for r in picked]
        for key in ("content", "style", "total"):
            ax.plot(steps, [float(r[key]) for r in picked], label=key)
        ax.set_yscale("log")
        ax.set_title(f"{split} loss")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def validate(encoder, decoder, val_content, val_style, style_weight: float, pretrain: bool):
    decoder.eval()
    losses = compute_losses(encoder, decoder, val_content, val_style, pretrain)
    with torch.no_grad():
        content_features = encoder(val_content, ["relu4_1"])["relu4_1"]
        styled = decoder(adain(content_features, feature_stats(encoder(val_style, ["relu4_1"])["relu4_1"])))
    decoder.train()
    grid = torch.cat([val_content, val_style, styled.clamp(0, 1)], dim=2)  # rows: content / style / result
    grid = torch.cat(list(grid), dim=2)
    total = losses["content"] + style_weight * losses["style"]
    return {k: float(v) for k, v in losses.items()} | {"total": float(total)}, grid


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    data = REPO.parent / "shared" / "datasets"
    p = argparse.ArgumentParser(prog="nst train", description="Train the AdaIN decoder.")
    p.add_argument("--content-dir", type=Path, default=data / "content")
    p.add_argument("--style-dir", type=Path, default=data / "style")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "decoder")
    p.add_argument(
        "--export", type=Path, default=None, help="also write the fp16 decoder here at each checkpoint"
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument("--steps", type=int, default=160_000, help="stop at this global step")
    p.add_argument("--pretrain-steps", type=int, default=0, help="first steps learn to invert relu4_1")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-decay", type=float, default=5e-5, help="lr = lr0 / (1 + decay * step)")
    p.add_argument("--style-weight", type=float, default=10.0, help="λ")
    p.add_argument("--pixel-weight", type=float, default=10.0, help="pixel MSE weight in pretraining")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-size", type=int, default=8)
    p.add_argument("--val-crop", type=int, default=192)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> int:
    """Run until ``args.steps`` or a signal; returns the step reached."""
    from tqdm import tqdm

    device = resolve_device(args.device)
    use_all_cpu_cores() if args.threads == 0 else torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = args.out / "ckpt.pt", args.out / "log.csv"

    encoder = get_encoder(None, "cpu").to(device)
    decoder = Decoder().to(device).train()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=args.lr)
    step, images_seen = 0, 0
    if args.resume and ckpt_path.exists():
        step, images_seen = load_checkpoint(ckpt_path, decoder, optimizer)
        print(f"resumed from {ckpt_path} at step {step}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1.0 + args.lr_decay * s))
    scheduler.last_epoch = step
    for group in optimizer.param_groups:
        group["lr"] = args.lr / (1.0 + args.lr_decay * step)

    def loader(folder: Path) -> DataLoader:
        dataset = RandomCrops(list_images(folder, validation=False), args.crop)
        sampler = RandomSampler(dataset, replacement=True, num_samples=10**9)
        return DataLoader(
            dataset,
            batch_size=args.batch_size,
            sampler=sampler,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
            drop_last=True,
        )

    contents, styles = endless(loader(args.content_dir)), endless(loader(args.style_dir))

    def validation_batch(folder: Path) -> torch.Tensor:
        files = list_images(folder, validation=True) or list_images(folder, validation=False)  # tiny folders
        return center_crops(files[: args.val_size], args.val_crop).to(device)

    val_content, val_style = validation_batch(args.content_dir), validation_batch(args.style_dir)

    stop = {"flag": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(flag=True))
    new_log = not log_path.exists()
    log = log_path.open("a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "split", "content", "style", "total", "lr", "images_seen", "wall"])

    def checkpoint(pretrain: bool) -> None:
        metrics, grid = validate(encoder, decoder, val_content, val_style, args.style_weight, pretrain)
        writer.writerow(
            [
                step,
                "val",
                metrics["content"],
                metrics["style"],
                metrics["total"],
                optimizer.param_groups[0]["lr"],
                images_seen,
                time.time(),
            ]
        )
        log.flush()
        save_checkpoint(ckpt_path, decoder, optimizer, step, images_seen)
        Image.fromarray((grid.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)).save(
            args.out / "val_grid.png"
        )
        write_plot(log_path, args.out / "loss.png")
        if args.export:
            save_decoder(decoder, args.export)
        bar.write(f"step {step}: val content {metrics['content']:.4f} style {metrics['style']:.4f}")

    bar = tqdm(total=args.steps, initial=step, dynamic_ncols=True)
    last_checkpoint, tick = time.monotonic(), time.monotonic()
    while step < args.steps and not stop["flag"]:
        pretrain = step < args.pretrain_steps
        content, style = next(contents).to(device), next(styles).to(device)
        losses = compute_losses(encoder, decoder, content, style, pretrain)
        total = losses["content"] + (
            args.pixel_weight * losses["pixel"] if pretrain else args.style_weight * losses["style"]
        )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        images_seen += content.shape[0]
        bar.update(1)
        if step % args.log_every == 0:
            rate = args.log_every / (time.monotonic() - tick)
            tick = time.monotonic()
            c, s = float(losses["content"].detach()), float(losses["style"].detach())
            writer.writerow(
                [
                    step,
                    "train",
                    c,
                    s,
                    float(total.detach()),
                    optimizer.param_groups[0]["lr"],
                    images_seen,
                    time.time(),
                ]
            )
            bar.set_postfix_str(f"{'pre ' if pretrain else ''}c={c:.3f} s={s:.3f} {rate:.2f} it/s")
        if time.monotonic() - last_checkpoint > args.checkpoint_minutes * 60 or step == args.pretrain_steps:
            checkpoint(pretrain)
            last_checkpoint = time.monotonic()
    checkpoint(step <= args.pretrain_steps)
    bar.close()
    log.close()
    return step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.content_dir.is_dir() or not args.style_dir.is_dir():
        print(f"error: training folders not found: {args.content_dir} / {args.style_dir}")
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
