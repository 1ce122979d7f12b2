"""The fast model's encoder and decoder as ONNX graphs, from its safetensors tensors (``nst_core.lite``).

The same arithmetic as ``nst_core.vgg``'s student encoder and ``nst_core.decoder.Decoder``, layer for
layer: zero-padded 3x3 convolutions, ReLUs and 2x2 max pools up to relu4_1; then reflection-padded
convolutions, 2x nearest upsampling and the skip inputs' 1x1 convolutions. ONNX Runtime runs this
stack 1.6-3x faster than numpy (im2col and BLAS) did on our 2-core CPUs (benchmarks/RESULTS.md).

The encoder also takes the maps' channel statistics over the picture's cells, in the graph: a style
is needed only as its statistics, and there ONNX Runtime lets each map go once they are taken, where
handing all nine maps to numpy had held them at once (a whole ``nst stylize`` at alpha 0.5 and
1024 px peaked at 733 MiB instead of 981, and renders took 4-10 % less time; benchmarks/RESULTS.md).
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
    layer_stride,
    skip_inputs_in,
)

Tensors = Mapping[str, np.ndarray]
EPS = 1e-5  # as nst_core.adain.feature_stats
SPATIAL_AXES = [2, 3]


def statistics_of(layer: str) -> tuple[str, str]:
    """The encoder's outputs for ``layer``'s channel means and stds over the picture, each (1, C, 1, 1)."""
    return f"{layer}.mean", f"{layer}.std"


def range_of(layer: str) -> tuple[str, str]:
    """The encoder's outputs for ``layer``'s channel minima and maxima over the picture, each (1, C, 1, 1)."""
    return f"{layer}.low", f"{layer}.high"


def cell_strides(stat_layers: Sequence[str]) -> list[int]:
    """The strides whose ``cells_of`` bounds an encoder of ``stat_layers`` takes as inputs."""
    return sorted({layer_stride(layer) for layer in stat_layers})


def cells_of(stride: int) -> tuple[str, str]:
    """The encoder's inputs that bound the picture's cells in maps of ``stride`` (``layer_stride``):
    int64 (first row, first column) and (end row, end column)."""
    return f"cells{stride}.starts", f"cells{stride}.ends"


def _weights(tensors: Tensors, prefix: str) -> list[bytes]:
    return [
        onnx_graph.tensor(f"{prefix}.{kind}", tensors[f"{prefix}.{kind}"].astype(np.float32))
        for kind in ("weight", "bias")
    ]


def _conv(prefix: str, source: str, output: str, padding: int) -> bytes:
    return onnx_graph.node(
        "Conv", [source, f"{prefix}.weight", f"{prefix}.bias"], [output], pads=[padding] * 4
    )


def encoder_graph(tensors: Tensors, map_layers: Sequence[str], stat_layers: Sequence[str]) -> bytes:
    """The student encoder from a BGR picture minus the mean, (1, 3, H, W) "picture", to the maps of
    ``map_layers``, their ``range_of`` and the ``statistics_of`` ``stat_layers`` (which include them)
    over the cells that ``cells_of`` each stride bound."""
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
    constants += [
        onnx_graph.tensor("spatial_axes", np.array(SPATIAL_AXES, dtype=np.int64)),
        onnx_graph.tensor("eps", np.array(EPS, dtype=np.float32)),
    ]
    outputs = list(map_layers)
    for layer in stat_layers:
        nodes += _picture_statistics(layer)
        outputs += statistics_of(layer)
        if layer in map_layers:
            low, high = range_of(layer)
            nodes += [
                onnx_graph.node("ReduceMin", [f"{layer}.cells"], [low], axes=SPATIAL_AXES),
                onnx_graph.node("ReduceMax", [f"{layer}.cells"], [high], axes=SPATIAL_AXES),
            ]
            outputs += [low, high]
    bounds = [name for stride in cell_strides(stat_layers) for name in cells_of(stride)]
    return onnx_graph.model("student_encoder", nodes, constants, ["picture"], outputs, bounds)


def _picture_statistics(layer: str) -> list[bytes]:
    """Nodes: ``layer``'s cells over the picture ("<layer>.cells"), their channel means and stds (two
    passes, as ``nst_core.adain.feature_stats``)."""
    cells, mean, std = f"{layer}.cells", *statistics_of(layer)
    return [
        onnx_graph.node("Slice", [layer, *cells_of(layer_stride(layer)), "spatial_axes"], [cells]),
        onnx_graph.node("ReduceMean", [cells], [mean], axes=SPATIAL_AXES),
        onnx_graph.node("Sub", [cells, mean], [f"{layer}.centred"]),
        onnx_graph.node("Mul", [f"{layer}.centred", f"{layer}.centred"], [f"{layer}.squared"]),
        onnx_graph.node("ReduceMean", [f"{layer}.squared"], [f"{layer}.var"], axes=SPATIAL_AXES),
        onnx_graph.node("Add", [f"{layer}.var", "eps"], [f"{layer}.var_eps"]),
        onnx_graph.node("Sqrt", [f"{layer}.var_eps"], [std]),
    ]


def decoder_graph(tensors: Tensors, skip_layers: Sequence[str], conditioned: bool = False) -> bytes:
    """The student decoder from relu4_1 and ``skip_layers`` (AdaIN's targets, raw scale) to "picture";
    ``conditioned``: each convolution's output is also scaled and shifted per channel by the inputs
    "film<i>.scale" and "film<i>.shift" (1, C, 1, 1), i counting the convolutions from 0 (the decoder's
    conditioning, computed from the style's statistics outside the graph). Passes of their own: folded
    into the convolutions' weights, as the torch decoder folds them, they made the weights inputs
    rather than constants, and ONNX Runtime's blocked-layout convolutions (constant weights only)
    gave way to slower ones, the decoder 8 % slower at 576² on an AMD EPYC."""
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
