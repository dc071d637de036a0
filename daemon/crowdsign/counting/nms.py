"""Non-maximum suppression in numpy: one person, one box.

Used where the model does not do it itself (YOLOX's raw output) and to merge
the same person found by two tiles at their seam. Boxes are x0, y0, x1, y1 in
any common unit. Greedy, highest score first, the way detectors are trained
to be read; vectorised per kept box, which is plenty for the few hundred
candidates a frame has after the score threshold.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of `boxes`."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        classes: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the boxes kept, best score first.

    A box is dropped when it overlaps a better-scored kept box of the same
    class (all one class when `classes` is None) by IoU above `iou_threshold`.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    boxes = np.asarray(boxes, dtype=np.float32)
    if classes is not None and len(np.unique(classes)) > 1:
        # Shift each class to its own region so classes never overlap.
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (np.asarray(classes, dtype=np.float32) * span)[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        if rest.size == 0:
            break
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
