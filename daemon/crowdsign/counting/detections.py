"""What a detector backend hands the counter after one invoke.

Boxes never leave the counting package (see types.py): they exist only
between a backend's decode and the zone assignment, inside `Counter.count`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from crowdsign.counting.modelcard import ModelCard


class Detections(NamedTuple):
    """Counted-class detections above threshold from one invoke.

    boxes:   n x 4 float32 x0, y0, x1, y1, normalised to the model input (0..1).
    scores:  n float32.
    classes: n int model class indices.
    cap_hit: the model's detection slots were all used by counted detections,
             so people beyond the cap may be missing.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    cap_hit: bool

    @classmethod
    def concatenate(cls, parts: list["Detections"]) -> "Detections":
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.classes for p in parts]),
                   any(p.cap_hit for p in parts))


def mirrored_back(d: Detections) -> Detections:
    """Detections made on the input mirrored left to right, with their boxes
    put back where they are in the unmirrored input."""
    boxes = d.boxes.copy()
    boxes[:, 0], boxes[:, 2] = 1.0 - d.boxes[:, 2], 1.0 - d.boxes[:, 0]
    return d._replace(boxes=boxes)


class DetectorHead(Protocol):
    """Reads a detector's outputs after invoke."""

    cap: int  # detection slots per invoke (0: no fixed cap)

    def decode(self) -> Detections: ...


def counted_class_ids(card: ModelCard, classes: tuple[str, ...]) -> np.ndarray:
    """Model class indices of the counted class names; ModelError for unknown names."""
    return np.asarray(sorted({card.class_index(name) for name in classes}), dtype=np.int64)
