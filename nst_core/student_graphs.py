"""The fast model's encoder and decoder as ONNX graphs, from its safetensors tensors (``nst_core.lite``).

The same arithmetic as ``nst_core.vgg``'s student encoder and ``nst_core.decoder.Decoder``, layer for
layer: zero-padded 3x3 convolutions, ReLUs and 2x2 max pools up to relu4_1; then reflection-padded
convolutions, 2x nearest upsampling and the skip inputs' 1x1 convolutions. ONNX Runtime runs this
stack 1.6-3x faster than numpy (im2col and BLAS) did on our 2-core CPUs (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nst_core import onnx_graph
from nst_core.architecture import (
    ENCODER_LAYER,
    FEATURE_SCALE,
    LAYER_SCALE,
    POOL_AFTER,
    STUDENT_LAYERS,
    STUDENT_WIDTH,
    decoder_plan,
    skip_inputs_in,
)

Tensors = Mapping[str, np.ndarray]


def _weights(tensors: Tensors, prefix: str) -> list[bytes]:
    return [
        onnx_graph.tensor(f"{prefix}.{kind}", tensors[f"{prefix}.{kind}"].astype(np.float32))
        for kind in ("weight", "bias")
    ]


def _conv(prefix: str, source: str, output: str, padding: int) -> bytes:
    return onnx_graph.node(
        "Conv", [source, f"{prefix}.weight", f"{prefix}.bias"], [output], pads=[padding] * 4
    )


def encoder_graph(tensors: Tensors, outputs: Sequence[str]) -> bytes:
    """The student encoder from a BGR picture minus the mean, (1, 3, H, W) "picture", to ``outputs``."""
    nodes, constants, x = [], [], "picture"
    for name in STUDENT_LAYERS:
        constants += _weights(tensors, f"encoder.{name}")
        nodes += [
            _conv(f"encoder.{name}", x, f"{name}.conv", 1),
            onnx_graph.node("Relu", [f"{name}.conv"], [name]),
        ]
        x = name
        if name in POOL_AFTER:
            nodes.append(
                onnx_graph.node("MaxPool", [x], [f"{name}.pool"], kernel_shape=[2, 2], strides=[2, 2])
            )
            x = f"{name}.pool"
    return onnx_graph.model("student_encoder", nodes, constants, ["picture"], outputs)


def decoder_graph(tensors: Tensors, skip_layers: Sequence[str], conditioned: bool = False) -> bytes:
    """The student decoder from relu4_1 and ``skip_layers`` (AdaIN's targets, raw scale) to "picture";
    ``conditioned``: each convolution's output is also scaled and shifted per channel by the inputs
    "film<i>.scale" and "film<i>.shift" (1, C, 1, 1), i counting the convolutions from 0 (the decoder's
    conditioning, computed from the style's statistics outside the graph)."""
    plan = decoder_plan(STUDENT_WIDTH)
    joins = {index: layer for layer, (index, _) in skip_inputs_in(plan, tuple(skip_layers)).items()}
    net = sorted(
        int(key.split(".")[2])
        for key in tensors
        if key.startswith("decoder.net.") and key.endswith(".weight")
    )  # decoder.net.<index>.weight, in forward order
    convs = iter(f"decoder.net.{index}" for index in net)
    constants = [
        onnx_graph.tensor("reflect_1", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)),
        onnx_graph.tensor("twice", np.array([1, 1, 2, 2], dtype=np.float32)),
        *(
            onnx_graph.tensor(f"{layer}.scale", np.array(1.0 / LAYER_SCALE[layer], dtype=np.float32))
            for layer in skip_layers
        ),
        onnx_graph.tensor("feature_scale", np.array(1.0 / FEATURE_SCALE, dtype=np.float32)),
    ]
    nodes = [onnx_graph.node("Mul", [ENCODER_LAYER, "feature_scale"], ["x0"])]
    x, films = "x0", []
    for index, step in enumerate(plan):
        out = f"x{index + 1}"
        if step is None:
            nodes.append(
                onnx_graph.node("Resize", [x, "", "twice"], [out], mode="nearest",
                                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            )  # fmt: skip
            if layer := joins.get(index):  # added through a 1x1 convolution
                prefix = f"decoder.skips.{layer}"
                constants += _weights(tensors, prefix)
                nodes += [
                    onnx_graph.node("Mul", [layer, f"{layer}.scale"], [f"{layer}.scaled"]),
                    _conv(prefix, f"{layer}.scaled", f"{layer}.added", 0),
                    onnx_graph.node("Add", [out, f"{layer}.added"], [f"{out}.sum"]),
                ]
                out = f"{out}.sum"
        else:
            prefix, relu = next(convs), step[2]
            constants += _weights(tensors, prefix)
            conv = f"{out}.conv"
            nodes += [
                onnx_graph.node("Pad", [x, "reflect_1"], [f"{out}.padded"], mode="reflect"),
                _conv(prefix, f"{out}.padded", conv, 0),
            ]
            if conditioned:
                film = f"film{len(films)}"
                films.append(film)
                nodes += [
                    onnx_graph.node("Mul", [conv, f"{film}.scale"], [f"{conv}.scaled"]),
                    onnx_graph.node("Add", [f"{conv}.scaled", f"{film}.shift"], [f"{conv}.shifted"]),
                ]
                conv = f"{conv}.shifted"
            nodes.append(onnx_graph.node("Relu" if relu else "Identity", [conv], [out]))
        x = out
    nodes.append(onnx_graph.node("Identity", [x], ["picture"]))
    film_inputs = [f"{film}.{kind}" for film in films for kind in ("scale", "shift")]
    inputs = [ENCODER_LAYER, *skip_layers, *film_inputs]
    return onnx_graph.model("student_decoder", nodes, constants, inputs, ["picture"])
