"""Density-map models: output [1, H, W, 1], people per cell, summing to the count.

Dense crowds defeat detectors (people hide each other); a density model
instead regresses how much person each output cell holds. The total is the
map's sum and a zone's count is the map weighted by the zone's mask (see
zones.py: fractional weights where the zone edge cuts a cell). The masks are
made once at load for the output resolution and kept as one zones x cells
matrix, so a frame costs one dequantize and one small matrix-vector product.
A card's `cell_gain` (see modelcard.py) rescales each cell by its value, or by
the mean value of its neighbourhood (`cell_gain_window`), first, so the total
and the zones see the same corrected map.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

import cv2
import numpy as np

from crowdsign.counting.modelcard import ModelError
from crowdsign.counting.runtime import Dequantizer, single_output
from crowdsign.zones import ZoneGeometry


class DensityHead:
    """Sums a density map, in total and under each zone."""

    def __init__(self, interpreter: Any, path: Path, input_size: tuple[int, int],
                 zones: ZoneGeometry, output_stride: Optional[int],
                 cell_gain: Optional[Sequence[tuple[float, float]]] = None,
                 cell_gain_window: int = 1):
        info = single_output(interpreter, path, "density", "[1, H, W, 1]")
        shape = info.shape
        if not (len(shape) in (3, 4) and shape[0] == 1 and (len(shape) == 3 or shape[3] == 1)):
            raise ModelError(f"{path}: unsupported density output layout {list(shape)}, "
                             "expected [1, H, W, 1]")
        height, width = shape[1], shape[2]
        if output_stride is not None and (input_size[0] != width * output_stride
                                          or input_size[1] != height * output_stride):
            raise ModelError(
                f"{path}: output {width}x{height} is not input {input_size[0]}x"
                f"{input_size[1]} / output_stride {output_stride} as the card says")
        self.map_size = (width, height)
        self._window = cell_gain_window
        self._out = Dequantizer(interpreter, info)
        self._names = zones.names
        self._masks = np.ascontiguousarray(
            zones.masks_for(height, width).reshape(len(zones.names), -1), dtype=np.float32)
        self._sums = np.empty(len(zones.names), dtype=np.float32)
        self._gain = None if cell_gain is None else tuple(
            np.array(column, dtype=np.float32) for column in zip(*cell_gain))

    def decode(self, mirrored: bool = False) -> tuple[float, Mapping[str, float]]:
        """The frame's total and each zone's share; `mirrored`: the input was
        the frame mirrored left to right, so the map is mirrored back first."""
        width, height = self.map_size
        flat = self._out().reshape(-1)
        if mirrored:
            flat = np.ascontiguousarray(flat.reshape(height, width)[:, ::-1]).reshape(-1)
        if self._gain is not None:
            level = neighbourhood_mean(flat.reshape(height, width), self._window).reshape(-1)
            flat = flat * np.interp(level, *self._gain).astype(np.float32)
        np.matmul(self._masks, flat, out=self._sums)
        return (float(flat.sum(dtype=np.float64)),
                MappingProxyType({n: float(s) for n, s in zip(self._names, self._sums)}))


def neighbourhood_mean(cells: np.ndarray, window: int) -> np.ndarray:
    """The mean of each cell's `window` x `window` neighbourhood (odd `window`;
    the map mirrored at its edges) over the last two axes of `cells`.

    What a card's cell gain reads: one cell of a dense crowd is a noisy
    measure of how dense the crowd around it is, its neighbourhood less so.
    """
    if window == 1:
        return cells
    size, border = (window, window), cv2.BORDER_REFLECT
    if cells.ndim == 2:
        return cv2.blur(cells, size, borderType=border)
    maps = cells.reshape(-1, *cells.shape[-2:])
    return np.stack([cv2.blur(m, size, borderType=border) for m in maps]).reshape(cells.shape)
