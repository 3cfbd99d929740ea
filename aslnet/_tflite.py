"""Read a TensorFlow Lite flatbuffer into a plain description with dequantized weights.

Only the main subgraph (index 0) is read. Parsing uses the generated schema accessors of
the PyPI ``tflite`` package (on top of ``flatbuffers``); this module adds validation, so
that a file which is not a TFLite model, or is truncated or corrupt, raises ``ValueError``
naming the file instead of returning garbage.

Constant quantized tensors are dequantized to float32 with ``w = scale * (q - zero_point)``,
per tensor or per channel along the tensor's quantized dimension (int32 biases have zero
point 0, so ``b = scale * q``). The arithmetic is done in float64 and rounded once.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np
import tflite

__all__ = ["Quantization", "Tensor", "Operator", "TFLiteModel", "read_tflite"]

_FILE_IDENTIFIER = b"TFL3"


def _enum_names(enum_class) -> dict[int, str]:
    """Value -> name of a flatbuffers-generated enum class."""
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


_OPCODE_NAMES = _enum_names(tflite.BuiltinOperator)
_PADDING_NAMES = _enum_names(tflite.Padding)
_ACTIVATION_NAMES = _enum_names(tflite.ActivationFunctionType)
_TYPE_NAMES = _enum_names(tflite.TensorType)

# TFLite tensor type name -> little-endian NumPy dtype (types this reader can hold as arrays).
_NUMPY_DTYPES = {
    "FLOAT32": "<f4", "FLOAT16": "<f2", "FLOAT64": "<f8", "INT32": "<i4", "INT64": "<i8",
    "INT16": "<i2", "INT8": "i1", "UINT8": "u1", "BOOL": "?",
}

# Builtin options table type -> (accessor class, [(key, accessor method name)]).
# Options of other operators are not decoded (``Operator.options`` stays empty).
_OPTIONS = {
    tflite.BuiltinOptions.Conv2DOptions: (tflite.Conv2DOptions, [
        ("padding", "Padding"), ("stride_h", "StrideH"), ("stride_w", "StrideW"),
        ("dilation_h", "DilationHFactor"), ("dilation_w", "DilationWFactor"),
        ("fused_activation", "FusedActivationFunction")]),
    tflite.BuiltinOptions.DepthwiseConv2DOptions: (tflite.DepthwiseConv2DOptions, [
        ("padding", "Padding"), ("stride_h", "StrideH"), ("stride_w", "StrideW"),
        ("depth_multiplier", "DepthMultiplier"),
        ("dilation_h", "DilationHFactor"), ("dilation_w", "DilationWFactor"),
        ("fused_activation", "FusedActivationFunction")]),
    tflite.BuiltinOptions.Pool2DOptions: (tflite.Pool2DOptions, [
        ("padding", "Padding"), ("stride_h", "StrideH"), ("stride_w", "StrideW"),
        ("filter_h", "FilterHeight"), ("filter_w", "FilterWidth"),
        ("fused_activation", "FusedActivationFunction")]),
    tflite.BuiltinOptions.FullyConnectedOptions: (tflite.FullyConnectedOptions, [
        ("fused_activation", "FusedActivationFunction"), ("keep_num_dims", "KeepNumDims")]),
    tflite.BuiltinOptions.AddOptions: (tflite.AddOptions, [
        ("fused_activation", "FusedActivationFunction")]),
    tflite.BuiltinOptions.ConcatenationOptions: (tflite.ConcatenationOptions, [
        ("axis", "Axis"), ("fused_activation", "FusedActivationFunction")]),
    tflite.BuiltinOptions.SoftmaxOptions: (tflite.SoftmaxOptions, [("beta", "Beta")]),
    tflite.BuiltinOptions.ReshapeOptions: (tflite.ReshapeOptions, [
        ("new_shape", "NewShapeAsNumpy")]),
}


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``.

    ``axis`` is None for per-tensor parameters (one scale), else the channel dimension.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None


@dataclass
class Tensor:
    """One tensor of the graph; ``data`` is set for constants only.

    ``data`` is float32 for quantized and floating-point constants (dequantized), and the
    stored values for other constants (e.g. an int32 shape operand).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    data: np.ndarray | None


@dataclass
class Operator:
    """One operator: opcode name (e.g. ``'CONV_2D'``), tensor indices and decoded options.

    An optional input that is absent has index -1. Options use plain values:
    ``padding`` is ``'SAME'``/``'VALID'``, ``fused_activation`` e.g. ``'RELU6'``/``'NONE'``.
    """

    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteModel:
    """The main subgraph of a .tflite file: operators in execution order and all tensors."""

    path: str
    operators: list[Operator]
    tensors: list[Tensor]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def read_tflite(path: str | os.PathLike) -> TFLiteModel:
    """Parse the .tflite file at ``path``.

    Raises ``FileNotFoundError`` if it does not exist and ``ValueError`` (message starting
    with the path) if it is not a TFLite model or is truncated or corrupt.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8 or buf[4:8] != _FILE_IDENTIFIER:
        raise ValueError(f"{path}: not a TensorFlow Lite model (no 'TFL3' file identifier)")
    try:
        operators, tensors, inputs, outputs = _parse(buf)
    # what flatbuffers' accessors raise on bytes that are not the schema's (an absent
    # table is None: AttributeError)
    except (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError,
            AttributeError) as e:
        raise ValueError(f"{path}: truncated or corrupt TensorFlow Lite model ({e})") from e
    return TFLiteModel(path, operators, tensors, inputs, outputs)


def _parse(buf: bytes):
    """(operators, tensors, graph inputs, graph outputs) of subgraph 0."""
    model = tflite.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("model has no subgraph")
    graph = model.Subgraphs(0)
    opcodes = [_opcode_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    tensors = [_tensor(buf, model, graph.Tensors(i), i) for i in range(graph.TensorsLength())]
    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        inputs, outputs = _indices(op.InputsAsNumpy()), _indices(op.OutputsAsNumpy())
        if any(not -1 <= t < len(tensors) for t in inputs + outputs):
            raise ValueError(f"operator {i} refers to a tensor that does not exist")
        operators.append(Operator(opcodes[op.OpcodeIndex()], inputs, outputs, _options(op)))
    return operators, tensors, _indices(graph.InputsAsNumpy()), _indices(graph.OutputsAsNumpy())


def _indices(vector) -> tuple[int, ...]:
    """A flatbuffers int vector (an ndarray, or 0 when absent) as a tuple of ints."""
    return tuple(int(v) for v in np.atleast_1d(vector)) if isinstance(vector, np.ndarray) else ()


def _opcode_name(code) -> str:
    # Schema v3a: the real code is the larger of the deprecated int8 field and the int32 one.
    value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    return _OPCODE_NAMES.get(value, f"UNKNOWN_{value}")


def _options(op) -> dict:
    decoder = _OPTIONS.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if decoder is None or table is None:
        return {}
    cls, fields = decoder
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    out = {}
    for key, method in fields:
        value = getattr(opts, method)()
        if key == "padding":
            value = _PADDING_NAMES.get(value, f"UNKNOWN_{value}")
        elif key == "fused_activation":
            value = _ACTIVATION_NAMES.get(value, f"UNKNOWN_{value}")
        elif key == "new_shape":
            value = _indices(value)
        out[key] = value
    return out


def _quantization(name: str, q, shape) -> Quantization | None:
    if q is None or q.ScaleLength() == 0:
        return None
    scale = q.ScaleAsNumpy().astype(np.float32)
    zero_point = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength()
                  else np.zeros(1, np.int64))
    if scale.size == 1:
        return Quantization(scale, zero_point, None)
    axis = q.QuantizedDimension()
    if (not 0 <= axis < len(shape) or shape[axis] != scale.size
            or zero_point.size not in (1, scale.size)):
        raise ValueError(f"tensor {name!r}: per-channel quantization does not match shape {shape}")
    return Quantization(scale, zero_point, axis)


def _buffer_bytes(buf: bytes, model, index: int) -> bytes:
    """Raw bytes of buffer ``index`` (empty for a non-constant tensor)."""
    if not 0 <= index < model.BuffersLength():
        raise ValueError(f"buffer {index} does not exist")
    b = model.Buffers(index)
    if b.Offset() > 1:  # data stored after the flatbuffer (models over 2 GB)
        start, size = b.Offset(), b.Size()
        if start + size > len(buf):
            raise ValueError(f"buffer {index} extends past the end of the file")
        return buf[start:start + size]
    if b.DataLength() == 0:
        return b""
    return b.DataAsNumpy().tobytes()


def _tensor(buf: bytes, model, t, index: int) -> Tensor:
    name = t.Name()                 # None when the file leaves it out
    name = name.decode("utf-8") if name is not None else f"tensor {index}"
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    dtype = _TYPE_NAMES.get(t.Type(), f"UNKNOWN_{t.Type()}")
    quant = _quantization(name, t.Quantization(), shape)
    raw = _buffer_bytes(buf, model, t.Buffer())
    data = None
    if raw:
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"tensor {name!r}: unsupported constant type {dtype}")
        np_dtype = np.dtype(_NUMPY_DTYPES[dtype])
        if len(raw) != np_dtype.itemsize * int(np.prod(shape)):
            raise ValueError(f"tensor {name!r}: {len(raw)} bytes of data for shape {shape} {dtype}")
        data = np.frombuffer(raw, np_dtype).reshape(shape)
        if quant is not None and np_dtype.kind in "iu":
            data = _dequantize(data, quant)
        elif np_dtype.kind == "f":
            data = data.astype(np.float32)
        else:
            data = data.copy()
    return Tensor(index, name, shape, dtype, quant, data)


def _dequantize(q: np.ndarray, quant: Quantization) -> np.ndarray:
    scale = quant.scale.astype(np.float64)
    zero_point = quant.zero_point.astype(np.float64)
    if quant.axis is not None:
        bshape = [1] * q.ndim
        bshape[quant.axis] = -1
        scale = scale.reshape(bshape)
        zero_point = zero_point.reshape(bshape) if zero_point.size > 1 else zero_point
    return (scale * (q.astype(np.float64) - zero_point)).astype(np.float32)
