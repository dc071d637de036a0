"""Multiply-accumulates per invoke, counted from a model's own graph.

The number that says what a model costs on any board, whatever the CPU:
the sum over the graph's convolutions and matrix products of output
elements x the products each one needs. Element-wise ops, pooling and
resizing are left out (they are a rounding error next to the convolutions,
and the usual MAC figures of published models leave them out too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crowdsign.counting.runtime import interpreter_class


def count_macs(model_path: Path) -> int:
    """MACs of one invoke of the .tflite at `model_path`, at its declared input size."""
    Interpreter = interpreter_class()
    interpreter = Interpreter(model_path=str(model_path))
    shapes = {t["index"]: tuple(int(d) for d in t["shape"])
              for t in interpreter.get_tensor_details()}
    return sum(op_macs(op, shapes) for op in interpreter._get_ops_details())


def op_macs(op: dict[str, Any], shapes: dict[int, tuple[int, ...]]) -> int:
    """MACs of one operator, from its tensors' shapes (0 for ops without products)."""
    name = op["op_name"]
    inputs = [int(i) for i in op["inputs"]]
    outputs = [int(i) for i in op["outputs"]]
    if not inputs or not outputs or inputs[0] < 0:
        return 0
    out = shapes.get(outputs[0], ())
    weights = shapes.get(inputs[1], ()) if len(inputs) > 1 and inputs[1] >= 0 else ()
    if name == "CONV_2D" and len(weights) == 4:
        # weights: out_channels x kh x kw x in_channels (per group)
        return int(np.prod(out)) * weights[1] * weights[2] * weights[3]
    if name == "DEPTHWISE_CONV_2D" and len(weights) == 4:
        # weights: 1 x kh x kw x out_channels; one product per tap per output
        return int(np.prod(out)) * weights[1] * weights[2]
    if name == "TRANSPOSE_CONV":
        weights = shapes.get(inputs[1], ())
        source = shapes.get(inputs[2], ())
        if len(weights) == 4 and len(source) == 4:
            return int(np.prod(source)) * weights[0] * weights[1] * weights[2]
    if name == "FULLY_CONNECTED" and len(weights) == 2:
        return int(np.prod(out)) * weights[1]
    if name == "BATCH_MATMUL":
        left = shapes.get(inputs[0], ())
        if left:
            return int(np.prod(out)) * left[-1]
    return 0
