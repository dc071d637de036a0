"""The TFLite interpreter, opened once, and what its tensors say about themselves.

Models differ in dtypes (uint8, int8, float32) and quantization; nothing here
assumes one. Each tensor's dtype, scale and zero point are read from the model
and carried in a `TensorInfo`, so backends dequantize exactly what the model
produces.

The Python interpreter refuses to `invoke()` while any numpy view of its
tensors is alive (its `_safe_to_run` check counts references), so the counter
keeps only the callables that `interpreter.tensor(i)` returns and makes short-
lived views from them, dropped before each invoke.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from crowdsign.counting.modelcard import ModelError

try:  # the flatbuffer schema ships with ai-edge-litert; tflite-runtime lacks it
    from ai_edge_litert import schema_py_generated as tflite_schema
except ImportError:  # pragma: no cover - boards with tflite-runtime only
    tflite_schema = None

FILE_IDENTIFIER = b"TFL3"


def interpreter_class() -> Any:
    """The TFLite Interpreter class: ai-edge-litert's, else tflite-runtime's, else None."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - boards with tflite-runtime only
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            return None
    return Interpreter


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor: real = (q - zero_point) * scale when scale > 0."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale > 0.0

    @classmethod
    def from_details(cls, d: dict) -> "TensorInfo":
        scale, zero_point = d.get("quantization", (0.0, 0))
        params = d.get("quantization_parameters") or {}
        scales = params.get("scales")
        if scales is not None and len(scales) > 1:
            raise ValueError(f"tensor {d['name']!r} has per-channel quantization")
        return cls(index=int(d["index"]), name=str(d["name"]),
                   shape=tuple(int(s) for s in d["shape"]), dtype=np.dtype(d["dtype"]),
                   scale=float(scale), zero_point=int(zero_point))


def single_output(interpreter: Any, path: Path, kind: str, layout: str) -> TensorInfo:
    """The one output tensor of a density or YOLOX model; ModelError naming the file otherwise."""
    outputs = interpreter.get_output_details()
    if len(outputs) != 1:
        raise ModelError(f"{path}: {kind} model needs one output {layout}, found {len(outputs)}")
    try:
        return TensorInfo.from_details(outputs[0])
    except ValueError as e:
        raise ModelError(f"{path}: {e}") from None


def read_model_bytes(path: Path) -> bytes:
    """The model file, checked to be a TFLite flatbuffer."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read model file: {e.strerror}") from None
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    return data


def open_interpreter(path: Path, num_threads: int) -> tuple[Any, bytes]:
    """An allocated interpreter for the model at `path`, and the model's bytes."""
    data = read_model_bytes(path)
    make_interpreter = interpreter_class()
    if make_interpreter is None:
        raise ModelError(f"{path}: no TFLite runtime installed "
                         "(pip install ai-edge-litert, or tflite-runtime)")
    try:
        interpreter = make_interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ModelError(f"{path}: TFLite cannot load the model (corrupt?): {first}") from None
    return interpreter, data


def custom_op_outputs(data: bytes, custom_code: str) -> Optional[tuple[int, ...]]:
    """Output tensor indices of the first custom op named `custom_code` in subgraph 0.

    None when the schema is not installed or there is no such op; the caller then
    falls back to the interpreter's output order.
    """
    if tflite_schema is None:  # pragma: no cover
        return None
    model = tflite_schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() == 0:
        return None
    graph = model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex()).CustomCode()
        if code is not None and code.decode("utf-8", "replace") == custom_code:
            return tuple(int(t) for t in op.OutputsAsNumpy())
    return None


class Dequantizer:
    """Copies an output tensor out of the interpreter as float32 real values.

    The float32 buffer is made once; each call overwrites it, so the per-frame
    path allocates nothing and no view of the interpreter's memory survives.
    """

    def __init__(self, interpreter: Any, info: TensorInfo):
        self.info = info
        self._tensor = interpreter.tensor(info.index)
        self.values = np.empty(info.shape, dtype=np.float32)

    def __call__(self) -> np.ndarray:
        raw = self._tensor()
        out = self.values
        if self.info.quantized:
            np.subtract(raw, self.info.zero_point, out=out, dtype=np.float32,
                        casting="unsafe")
            out *= self.info.scale
        else:
            np.copyto(out, raw, casting="unsafe")
        del raw
        return out
