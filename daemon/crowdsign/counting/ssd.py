"""SSD models whose graph ends in TFLite_Detection_PostProcess.

The post-process op has already decoded anchors and run NMS; it outputs a fixed
number of detection slots: boxes [1, N, 4] (ymin, xmin, ymax, xmax, normalised),
classes [1, N], scores [1, N] and the number of valid slots [1]. N (the op's
max_detections) caps how many people one invoke can report: the COCO starter
model has N = 10, far fewer than a busy platform holds, which is why the cap is
watched (see `Detections.cap_hit`) and can be raised with
models/tools/set_max_detections.py.

The op's own output order (boxes, classes, scores, count) is read from the
model, because converters reorder the graph's outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crowdsign.counting.detections import Detections
from crowdsign.counting.modelcard import ModelError
from crowdsign.counting.runtime import Dequantizer, TensorInfo, custom_op_outputs

POSTPROCESS_OP = "TFLite_Detection_PostProcess"


class SsdHead:
    """Decodes TFLite_Detection_PostProcess outputs for the counted classes."""

    def __init__(self, interpreter: Any, model_bytes: bytes, path: Path,
                 class_ids: np.ndarray, threshold: float):
        details = {d["index"]: d for d in interpreter.get_output_details()}
        order = custom_op_outputs(model_bytes, POSTPROCESS_OP)
        if order is None or len(order) != 4 or not all(i in details for i in order):
            order = tuple(sorted(details))  # the op's outputs are made in order
        if len(order) != 4:
            raise ModelError(f"{path}: ssd model needs 4 outputs (boxes, classes, scores, "
                             f"count), found {len(details)}")
        try:
            infos = [TensorInfo.from_details(details[i]) for i in order]
        except ValueError as e:
            raise ModelError(f"{path}: {e}") from None
        boxes, classes, scores, count = infos
        cap = boxes.shape[1] if len(boxes.shape) == 3 else -1
        if (boxes.shape != (1, cap, 4) or classes.shape != (1, cap)
                or scores.shape != (1, cap) or int(np.prod(count.shape)) != 1):
            raise ModelError(
                f"{path}: unsupported ssd output layout "
                f"{[list(i.shape) for i in infos]}, expected [1,N,4] [1,N] [1,N] [1]")
        self.cap = cap
        self._boxes = Dequantizer(interpreter, boxes)
        self._classes = Dequantizer(interpreter, classes)
        self._scores = Dequantizer(interpreter, scores)
        self._count = Dequantizer(interpreter, count)
        self._class_ids = class_ids
        self._threshold = float(threshold)

    def decode(self) -> Detections:
        n = min(max(int(self._count().reshape(-1)[0]), 0), self.cap)
        scores = self._scores()[0, :n]
        classes = self._classes()[0, :n].astype(np.int64)
        keep = (scores >= self._threshold) & np.isin(classes, self._class_ids)
        cap_hit = n == self.cap and n > 0 and bool(scores.min() >= self._threshold)
        yx = self._boxes()[0, :n][keep]
        boxes = np.clip(yx[:, [1, 0, 3, 2]], 0.0, 1.0)
        return Detections(boxes, scores[keep].copy(), classes[keep], cap_hit)
