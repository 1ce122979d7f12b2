"""The fast model: a student of VGG-19 a quarter as wide, with its own decoder, in one weights file.

Why: the full model (VGG-19 to relu4_1 plus its mirrored decoder) costs ~253 GFLOP per 512² image,
3.6 s on a 2-core AVX2 CPU, and no runtime makes that cheaper. A network of the same topology with a
quarter of the channels per layer costs ~1/16 of that. Following collaborative distillation (Wang et
al., CVPR 2020), the student encoder starts from the teacher's filters with the largest L1 norm (Li et
al. 2017), is distilled through a learned linear embedding of its relu4_1 into the teacher's, and the
student decoder is trained with the full VGG-19 as the loss network (``nst_core.train``). The
decoder also reads the student's relu3_1 and relu2_1, AdaIN'd like relu4_1 (``STUDENT_SKIP_LAYERS``):
a quarter-width relu4_1 alone keeps too little of the photo's layout and of the style's mid-level
statistics, and the two 1x1 inputs cost 2 % more compute. And it is conditioned on the style's
channel statistics at every student layer (``nst_core.decoder.StyleCondition``): its convolutions
read the style one cell at a time, this reads it globally.
"""

from __future__ import annotations

import os

import torch

from nst_core.architecture import (
    STUDENT_CONDITION,
    STUDENT_LAYERS,
    STUDENT_SKIP_LAYERS,
    STUDENT_WIDTH,
    WIDTH_DIVISOR,
)
from nst_core.decoder import Decoder, save_module, seeded
from nst_core.lite import condition_in, not_a_student, read_student, skip_layers_in
from nst_core.vgg import VGGEncoder, load_vgg_weights

FORMAT = "atelier-adain-student-v3"  # v2: skip inputs, v3: conditioning; older files still load

Weights = dict[str, tuple[torch.Tensor, torch.Tensor]]


def pruned_encoder(teacher: Weights, images: torch.Tensor, divisor: int = WIDTH_DIVISOR) -> Weights:
    """VGG-19 up to relu4_1 narrowed to the 1/``divisor`` filters of largest L1 norm per layer.

    Each layer reads only the channels its predecessor kept, which changes its activations' scale
    (measured: 100x too small unscaled, 60x too large when rescaled by the filters' L1 norms), so each
    kept channel is scaled to the teacher's mean activation on ``images``, layer after layer (a ReLU
    layer's output scales exactly with its weights and bias).
    """
    with torch.no_grad():
        reference = VGGEncoder(teacher)(images, STUDENT_LAYERS)
        pruned: Weights = {}
        inputs = torch.arange(3)
        for name in STUDENT_LAYERS:
            weight, bias = teacher[name]
            keep = weight.abs().sum(dim=(1, 2, 3)).topk(weight.shape[0] // divisor).indices.sort().values
            pruned[name] = (weight[keep][:, inputs].clone(), bias[keep].clone())
            ours = VGGEncoder(pruned)(images, [name])[name].mean(dim=(0, 2, 3))
            gain = (reference[name][:, keep].mean(dim=(0, 2, 3)) / ours.clamp_min(1e-3)).clamp(0.01, 100)
            pruned[name] = (pruned[name][0] * gain[:, None, None, None], pruned[name][1] * gain)
            inputs = keep
    return pruned


def untrained_student(images: torch.Tensor, vgg_path: str | None = None) -> tuple[VGGEncoder, Decoder]:
    """Training's starting point: the pruned teacher calibrated on ``images`` and a seeded random
    decoder with the skip inputs and the conditioning (a pruned copy of the full model's decoder
    paints noise: PSNR 5 dB)."""
    return VGGEncoder(pruned_encoder(load_vgg_weights(vgg_path), images)), seeded(
        lambda: Decoder(STUDENT_WIDTH, STUDENT_SKIP_LAYERS, STUDENT_CONDITION)
    )


def load_student(path: str | os.PathLike[str] | None = None) -> tuple[VGGEncoder, Decoder]:
    """The fast model's encoder and decoder from its weights file (a file from before the skip
    inputs or the conditioning gives a decoder without them)."""
    tensors, target = read_student(path)
    try:
        state = {key: torch.from_numpy(value).float() for key, value in tensors.items()}
        encoder = VGGEncoder(
            {
                name: (state[f"encoder.{name}.weight"], state[f"encoder.{name}.bias"])
                for name in STUDENT_LAYERS
            }
        )
        decoder = Decoder(STUDENT_WIDTH, skip_layers_in(tensors), condition_in(tensors))
        decoder.load_state_dict(
            {key[8:]: value for key, value in state.items() if key.startswith("decoder.")}
        )
    except Exception as exc:
        raise not_a_student(target, exc) from exc
    return encoder, decoder.eval()


def save_student(
    encoder: VGGEncoder, decoder: Decoder, path: str | os.PathLike[str], step: int | None = None
) -> None:
    """Encoder and decoder in one fp16 safetensors file."""
    state = {f"encoder.{name}.weight": weight for name, (weight, _) in encoder.conv_weights().items()}
    state |= {f"encoder.{name}.bias": bias for name, (_, bias) in encoder.conv_weights().items()}
    state |= {f"decoder.{key}": value for key, value in decoder.state_dict().items()}
    save_module(state, path, FORMAT, step)
