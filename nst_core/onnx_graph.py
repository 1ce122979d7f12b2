"""ONNX models written directly in protobuf's wire format, for ONNX Runtime to load from bytes.

Why: the CLI's fast path builds the student's graphs from its one safetensors file at every call.
The ``onnx`` package would do it in a line but costs ~1 s to import on our 2-core machines (more than
the render), and a second, exported ``.onnx`` file would have to be kept in step with the weights.
The few messages a graph of convolutions needs are written here; ONNX keeps their field numbers
stable across versions (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

OPSET = 17  # Conv, Pad (pads as an input), Resize (scales as an input), MaxPool, Relu, Mul, Add, Sub,
# Sqrt, Reshape, Slice (bounds as inputs), ReduceMean/Min/Max (axes as an attribute until opset 18)
IR_VERSION = 8  # the IR of opset 17
_FLOAT, _INT64 = 1, 7  # TensorProto.DataType
_DTYPES = {np.dtype(np.float32): _FLOAT, np.dtype(np.int64): _INT64}
_ATTRIBUTE_STRING, _ATTRIBUTE_INTS = 3, 7  # AttributeProto.type


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as two's complement, as protobuf writes it
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto: a float32 or int64 constant (weights, pads, scales), little-endian raw data."""
    dims = b"".join(_int(1, size) for size in array.shape)
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return dims + _int(2, _DTYPES[array.dtype]) + _bytes(8, name) + _bytes(9, data)


def _attribute(name: str, value: str | Sequence[int]) -> bytes:
    if isinstance(value, str):
        return _bytes(1, name) + _bytes(4, value) + _int(20, _ATTRIBUTE_STRING)
    return _bytes(1, name) + b"".join(_int(8, item) for item in value) + _int(20, _ATTRIBUTE_INTS)


def node(
    op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attributes: str | Sequence[int]
) -> bytes:
    """A NodeProto of the default domain; an input named "" is an omitted optional one."""
    return (
        b"".join(_bytes(1, name) for name in inputs)
        + b"".join(_bytes(2, name) for name in outputs)
        + _bytes(4, op_type)
        + b"".join(_bytes(5, _attribute(key, value)) for key, value in attributes.items())
    )


def _value_info(name: str, element_type: int) -> bytes:
    """A ValueInfoProto of a tensor whose shape is left to the caller (ONNX Runtime takes any)."""
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, element_type)))


def model(
    name: str,
    nodes: Iterable[bytes],
    constants: Iterable[bytes],
    inputs: Sequence[str],
    outputs: Sequence[str],
    index_inputs: Sequence[str] = (),
) -> bytes:
    """A serialized ModelProto of one graph; ``inputs`` and ``outputs`` are float32 tensors,
    ``index_inputs`` int64 ones (slice bounds)."""
    graph = (
        b"".join(_bytes(1, item) for item in nodes)
        + _bytes(2, name)
        + b"".join(_bytes(5, item) for item in constants)
        + b"".join(_bytes(11, _value_info(item, _FLOAT)) for item in inputs)
        + b"".join(_bytes(11, _value_info(item, _INT64)) for item in index_inputs)
        + b"".join(_bytes(12, _value_info(item, _FLOAT)) for item in outputs)
    )
    opset = _bytes(1, "") + _int(2, OPSET)
    return _int(1, IR_VERSION) + _bytes(2, "atelier") + _bytes(7, graph) + _bytes(8, opset)
