"""Non-maximum suppression: one person, one box.

Used where the model does not do it itself (YOLOX's raw output) and to merge
the same person found by two tiles at their seam. Boxes are x0, y0, x1, y1 in
any common unit; scores are probabilities (a score of 0 is never kept).
Greedy, highest score first, the way detectors are trained to be read.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        classes: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the boxes kept, best score first.

    A box is dropped when it overlaps a better-scored kept box of the same
    class (all one class when `classes` is None) by IoU above `iou_threshold`.
    OpenCV's NMS does the work (C++, ~30 us for a crowded frame, against ~1 ms
    for a numpy loop); it wants boxes as x, y, width, height.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    xywh = np.asarray(boxes, dtype=np.float64).copy()
    xywh[:, 2:] -= xywh[:, :2]
    scores = np.asarray(scores, dtype=np.float32)
    if classes is None:
        kept = cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold)
    else:
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores, np.asarray(classes, dtype=np.int32),
                                       0.0, iou_threshold)
    return np.asarray(kept, dtype=np.intp).reshape(-1)
