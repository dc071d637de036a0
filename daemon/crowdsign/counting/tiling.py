"""Tiles: run a detector on parts of the frame so small, distant people stay big enough.

A 300x300 SSD sees a 640x480 frame shrunk by 2; people at the back of a
platform shrink to a few pixels and are missed. Cutting the frame into rows x
cols tiles, each resized to the model input, trades invokes for resolution.
Neighbouring tiles share `overlap` of a tile so a person on a seam is whole in
at least one of them; the same person found in two tiles is merged by NMS at
the configured IoU. Detectors only: a density map is summed, not merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdsign.counting.detections import Detections
from crowdsign.counting.nms import nms


@dataclass(frozen=True)
class Tile:
    """One tile: its pixel rectangle, and how its normalised boxes map to the frame's.

    frame box = tile box * scale + offset (x0, y0, x1, y1, normalised).
    """

    rect: tuple[int, int, int, int]
    scale: np.ndarray
    offset: np.ndarray


def _spans(length: int, parts: int, overlap: float) -> list[tuple[int, int]]:
    size = length / (parts - (parts - 1) * overlap)
    step = size * (1.0 - overlap)
    spans = []
    for i in range(parts):
        start = int(round(i * step))
        end = length if i == parts - 1 else min(length, int(round(i * step + size)))
        spans.append((start, end))
    return spans


def plan_tiles(width: int, height: int, rows: int, cols: int, overlap: float) -> tuple[Tile, ...]:
    """The tiles covering a width x height frame, row by row."""
    tiles = []
    for y0, y1 in _spans(height, rows, overlap):
        for x0, x1 in _spans(width, cols, overlap):
            sx, sy = (x1 - x0) / width, (y1 - y0) / height
            tiles.append(Tile(
                rect=(x0, y0, x1, y1),
                scale=np.array([sx, sy, sx, sy], dtype=np.float32),
                offset=np.array([x0 / width, y0 / height] * 2, dtype=np.float32)))
    return tuple(tiles)


class Tiler:
    """Tile plans per frame size (made once per size), and the seam merge."""

    def __init__(self, rows: int, cols: int, overlap: float, nms_iou: float):
        self.rows, self.cols = rows, cols
        self._overlap = overlap
        self._nms_iou = nms_iou
        self._plans: dict[tuple[int, int], tuple[Tile, ...]] = {}

    @property
    def single(self) -> bool:
        return self.rows == 1 and self.cols == 1

    def tiles(self, width: int, height: int) -> tuple[Tile, ...]:
        key = (width, height)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = plan_tiles(width, height, self.rows, self.cols,
                                                 self._overlap)
        return plan

    def merge(self, parts: list[Detections]) -> Detections:
        """All tiles' detections (already in frame coordinates), seam duplicates merged."""
        merged = Detections.concatenate(parts)
        if len(parts) == 1:
            return merged
        kept = nms(merged.boxes, merged.scores, self._nms_iou, merged.classes)
        return Detections(merged.boxes[kept], merged.scores[kept], merged.classes[kept],
                          merged.cap_hit)


def to_frame(d: Detections, tile: Tile) -> Detections:
    """A tile's detections with boxes in frame-normalised coordinates."""
    return d._replace(boxes=d.boxes * tile.scale + tile.offset)
