"""YOLOX models exported with raw head output [1, N, 5 + classes].

Each of the N rows is one grid cell of the strides 8, 16 and 32 (row-major,
stride 8 first): x and y offsets in cells, log width and log height in cells,
objectness, then one score per class. The box is decoded here:
centre = (offset + cell) * stride, size = exp(log size) * stride.

Checked on Mall frames with the shipped yolox_nano_320_float32: objectness and
class scores come out already squashed into 0..1 (the export applies the
sigmoid; applying it again would lift every cell above 0.5), and the model
wants ImageNet mean/std-normalised input (raw 0..255 pixels give no person
above 0.1). A detection's score is objectness x class score; NMS is ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crowdsign.counting.detections import Detections
from crowdsign.counting.modelcard import ModelError
from crowdsign.counting.nms import nms
from crowdsign.counting.runtime import Dequantizer, single_output

STRIDES = (8, 16, 32)


def grid(width: int, height: int, strides: tuple[int, ...] = STRIDES
         ) -> tuple[np.ndarray, np.ndarray]:
    """Cell x, y (N x 2) and stride (N) for each output row."""
    cells, sizes = [], []
    for s in strides:
        ys, xs = np.mgrid[0:height // s, 0:width // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        sizes.append(np.full(xs.size, s))
    return (np.concatenate(cells).astype(np.float32),
            np.concatenate(sizes).astype(np.float32))


class YoloxHead:
    """Decodes a raw YOLOX output for the counted classes."""

    cap = 0  # every cell can report: no fixed cap

    def __init__(self, interpreter: Any, path: Path, input_size: tuple[int, int],
                 class_ids: np.ndarray, threshold: float, nms_iou: float):
        info = single_output(interpreter, path, "yolox", "[1, N, 5 + classes]")
        width, height = input_size
        cells, strides = grid(width, height)
        if len(info.shape) != 3 or info.shape[0] != 1 or info.shape[1] != len(cells) \
                or info.shape[2] <= 5:
            raise ModelError(
                f"{path}: unsupported yolox output layout {list(info.shape)}, expected "
                f"[1, {len(cells)}, 5 + classes] for strides {STRIDES} at {width}x{height}")
        classes = info.shape[2] - 5
        if class_ids.size and int(class_ids.max()) >= classes:
            raise ModelError(f"{path}: counted class index {int(class_ids.max())} but the "
                             f"model has {classes} classes (check labels/label_offset)")
        self._out = Dequantizer(interpreter, info)
        self._cells, self._strides = cells, strides
        self._norm = np.array([width, height, width, height], dtype=np.float32)
        self._columns = 5 + class_ids
        self._class_ids = class_ids
        self._threshold = float(threshold)
        self._nms_iou = float(nms_iou)
        self._scores = np.empty(len(cells), dtype=np.float32)

    def decode(self) -> Detections:
        out = self._out()[0]
        if len(self._columns) == 1:
            best = np.full(len(out), self._class_ids[0])
            np.multiply(out[:, 4], out[:, self._columns[0]], out=self._scores)
        else:
            per_class = out[:, self._columns]
            pick = per_class.argmax(axis=1)
            best = self._class_ids[pick]
            np.multiply(out[:, 4], per_class[np.arange(len(out)), pick], out=self._scores)
        keep = np.flatnonzero(self._scores >= self._threshold)
        rows, stride = out[keep], self._strides[keep, None]
        centre = (rows[:, 0:2] + self._cells[keep]) * stride
        half = np.exp(rows[:, 2:4]) * stride * 0.5
        boxes = np.concatenate([centre - half, centre + half], axis=1) / self._norm
        np.clip(boxes, 0.0, 1.0, out=boxes)
        scores, classes = self._scores[keep], best[keep]
        kept = nms(boxes, scores, self._nms_iou, classes)
        return Detections(boxes[kept], scores[kept], classes[kept], False)
