"""Tiny real TFLite models built with the flatbuffer object API, for tests.

The project has no density model yet, so the density backend is tested with a
one-op model whose output is known exactly: a gray uint8 image average-pooled
by `stride` is a density map whose cells hold mean(q) * scale. Building it with
the same schema the runtime reads means the real interpreter runs it; nothing
is mocked.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
from ai_edge_litert import schema_py_generated as schema


def _tensor(name: str, shape: list[int], buffer: int, scale: float, zero_point: int):
    t = schema.TensorT()
    t.name = name.encode()
    t.shape = shape
    t.type = schema.TensorType.UINT8
    t.buffer = buffer
    q = schema.QuantizationParametersT()
    q.scale = [scale]
    q.zeroPoint = [zero_point]
    t.quantization = q
    return t


def density_model_bytes(size: int = 64, stride: int = 4, scale: float = 1 / 255,
                        zero_point: int = 0) -> bytes:
    """Gray uint8 [1, size, size, 1] -> AVERAGE_POOL_2D -> uint8 [1, size/stride, size/stride, 1].

    Input and output share `scale` and `zero_point` (TFLite's quantized pool
    requires it), so an output cell is the mean of its stride x stride input
    values, in the same units.
    """
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.AVERAGE_POOL_2D
    code.deprecatedBuiltinCode = schema.BuiltinOperator.AVERAGE_POOL_2D
    code.version = 1

    options = schema.Pool2DOptionsT()
    options.padding = schema.Padding.VALID
    options.strideW = options.strideH = stride
    options.filterWidth = options.filterHeight = stride
    options.fusedActivationFunction = schema.ActivationFunctionType.NONE

    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0]
    op.outputs = [1]
    op.builtinOptionsType = schema.BuiltinOptions.Pool2DOptions
    op.builtinOptions = options

    out = size // stride
    graph = schema.SubGraphT()
    graph.tensors = [_tensor("image", [1, size, size, 1], 1, scale, zero_point),
                     _tensor("density", [1, out, out, 1], 2, scale, zero_point)]
    graph.inputs = [0]
    graph.outputs = [1]
    graph.operators = [op]
    graph.name = b"main"

    model = schema.ModelT()
    model.version = 3
    model.description = b"crowdsign test density model"
    model.operatorCodes = [code]
    model.subgraphs = [graph]
    model.buffers = [schema.BufferT() for _ in range(3)]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_density_model(directory: Path, name: str = "density", *, size: int = 64,
                        stride: int = 4, scale: float = 1 / 255, zero_point: int = 0,
                        input_std: float = 255.0, extra: str = "") -> Path:
    """Write NAME.tflite and its card NAME.toml into `directory`; return the card path."""
    (directory / f"{name}.tflite").write_bytes(
        density_model_bytes(size, stride, scale, zero_point))
    card = directory / f"{name}.toml"
    card.write_text(
        f'name = "{name}"\n'
        'kind = "density"\n'
        f'file = "{name}.tflite"\n'
        'input_colour = "gray"\n'
        "input_mean = [0.0]\n"
        f"input_std = [{input_std}]\n"
        f"output_stride = {stride}\n"
        'licence = "Apache-2.0"\n' + extra, encoding="utf-8")
    return card
