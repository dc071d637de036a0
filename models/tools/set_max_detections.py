#!/usr/bin/env python3
"""Raise (or lower) the detection cap of an SSD model's TFLite_Detection_PostProcess op.

The COCO starter SSD reports at most 10 detections per invoke, so on a busy
platform it can never count more than 10 people. The cap is just an option of
the post-process op (a flexbuffer in its custom_options), and the op's output
tensors are sized from it; this tool rewrites both with the flatbuffer object
API, then reads the written file back, parses it again and has the real
interpreter allocate it, so a model that would not load never replaces
anything. The input file is never modified.

    python models/tools/set_max_detections.py IN.tflite --max 100 -o OUT.tflite [--card IN.toml]

With --card, a card for the new model is written beside it (OUT.toml) with
`file` and `max_detections` updated and relative paths re-based.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

from ai_edge_litert import schema_py_generated as schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
IDENTIFIER = b"TFL3"


class ToolError(Exception):
    """Why the model could not be rewritten; one line."""


def _postprocess_ops(model: Any) -> list[tuple[Any, Any]]:
    """(subgraph, operator) for every TFLite_Detection_PostProcess op of a ModelT."""
    found = []
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex].customCode
            if isinstance(code, bytes):
                code = code.decode("utf-8", "replace")
            if code == POSTPROCESS_OP:
                found.append((graph, op))
    return found


def _load(data: bytes, where: str) -> Any:
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ToolError(f"{where}: not a TFLite model (no TFL3 identifier)")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except Exception as e:  # a corrupt flatbuffer raises anything from struct to Index errors
        raise ToolError(f"{where}: cannot parse the TFLite flatbuffer: {e}") from None


def _options(op: Any) -> dict:
    return flexbuffers.Loads(bytes(bytearray(np.asarray(op.customOptions, dtype=np.uint8))))


def rewrite(data: bytes, max_detections: int, where: str = "<model>") -> bytes:
    """The model with the post-process op's max_detections and output shapes changed."""
    if max_detections < 1:
        raise ToolError(f"{where}: --max must be >= 1, got {max_detections}")
    model = _load(data, where)
    ops = _postprocess_ops(model)
    if len(ops) != 1:
        raise ToolError(f"{where}: expected one {POSTPROCESS_OP} op, found {len(ops)}")
    graph, op = ops[0]
    options = _options(op)
    if "max_detections" not in options:
        raise ToolError(f"{where}: {POSTPROCESS_OP} options have no max_detections")
    options["max_detections"] = int(max_detections)
    op.customOptions = list(flexbuffers.Dumps(options))
    slots = int(max_detections) * int(options.get("max_classes_per_detection", 1))
    # Outputs: boxes [1, N, 4], classes [1, N], scores [1, N], count [1].
    for tensor_index in list(op.outputs)[:3]:
        tensor = graph.tensors[tensor_index]
        for attr in ("shape", "shapeSignature"):
            shape = getattr(tensor, attr, None)
            if shape is not None and len(shape) >= 2:
                shape = list(shape)
                shape[1] = slots
                setattr(tensor, attr, shape)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def verify(data: bytes, max_detections: int, where: str) -> None:
    """Parse again, check the option, and have the interpreter allocate the model."""
    model = _load(data, where)
    ops = _postprocess_ops(model)
    if len(ops) != 1 or _options(ops[0][1]).get("max_detections") != max_detections:
        raise ToolError(f"{where}: written model does not hold max_detections = {max_detections}")
    graph, op = ops[0]
    options = _options(op)
    slots = max_detections * int(options.get("max_classes_per_detection", 1))
    from ai_edge_litert.interpreter import Interpreter
    try:
        interpreter = Interpreter(model_content=data)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ToolError(f"{where}: the interpreter cannot load the written model: {first}") from None
    shapes = {d["index"]: tuple(int(s) for s in d["shape"])
              for d in interpreter.get_output_details()}
    want = [(1, slots, 4), (1, slots), (1, slots), (1,)]
    got = [shapes.get(int(i)) for i in op.outputs]
    if got != want:
        raise ToolError(f"{where}: written model's outputs are {got}, expected {want}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ToolError(f"card value of type {type(value).__name__} cannot be written")


def write_card(in_card: Path, out_model: Path, max_detections: int) -> Path:
    """A card for the rewritten model: OUT.toml beside it, relative paths re-based."""
    try:
        raw = tomllib.loads(in_card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ToolError(f"{in_card}: cannot read card: {e}") from None
    out_card = out_model.with_suffix(".toml")
    raw["file"] = out_model.name
    raw["name"] = out_model.stem
    raw["max_detections"] = int(max_detections)
    if isinstance(raw.get("labels"), str):
        labels = (in_card.parent / raw["labels"]).resolve()
        raw["labels"] = os.path.relpath(labels, out_card.parent.resolve())
    note = f"max_detections set to {max_detections} by models/tools/set_max_detections.py"
    raw["notes"] = f"{raw['notes']} {note}." if raw.get("notes") else note + "."
    lines = [f"# Written by models/tools/set_max_detections.py from {in_card.name}."]
    lines += [f"{key} = {_toml_value(value)}" for key, value in raw.items()]
    out_card.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_card


def set_max_detections(in_path: Path, max_detections: int, out_path: Path,
                       card: Optional[Path] = None) -> Path:
    """Write `in_path` with a new cap to `out_path` (verified); return the path written."""
    in_path, out_path = Path(in_path), Path(out_path)
    if out_path.resolve() == in_path.resolve():
        raise ToolError(f"{out_path}: output must not be the input file")
    try:
        data = in_path.read_bytes()
    except OSError as e:
        raise ToolError(f"{in_path}: cannot read model: {e.strerror}") from None
    new = rewrite(data, max_detections, str(in_path))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new)
        verify(Path(tmp).read_bytes(), max_detections, str(out_path))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model is not a secret
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if card is not None:
        write_card(Path(card), out_path, max_detections)
    return out_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="input .tflite (left untouched)")
    parser.add_argument("--max", type=int, required=True, dest="max_detections",
                        help="new max_detections")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .tflite")
    parser.add_argument("--card", type=Path, help="input model card; writes OUTPUT.toml")
    args = parser.parse_args(argv)
    try:
        out = set_max_detections(args.model, args.max_detections, args.output, args.card)
    except ToolError as e:
        print(f"set_max_detections: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (max_detections = {args.max_detections})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
