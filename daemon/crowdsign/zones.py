"""Zones: named polygons in normalised image coordinates, and how counts fall into them.

A detection belongs to the zone that holds the bottom-centre of its box (where
the person stands, so perspective does not push tall people into the zone
behind). A density map is summed under each zone's mask; the masks are made
once per map size, with fractional weights for cells the zone edge cuts, so a
zone's share of a person at its border is counted, not rounded.
Zones may overlap: each is counted on its own.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from crowdsign.config import ZoneConfig

MASK_SUPERSAMPLE = 8


class ZoneGeometry:
    """The configured zones, ready to count points and density maps."""

    def __init__(self, zones: Sequence[ZoneConfig]):
        if not zones:
            raise ValueError("at least one zone is needed")
        self.names: tuple[str, ...] = tuple(z.name for z in zones)
        self._polygons = [np.asarray(z.polygon, dtype=np.float64) for z in zones]
        self._edges = PolygonEdges(self._polygons)
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def count_points(self, x: np.ndarray, y: np.ndarray) -> Mapping[str, int]:
        """How many of the points (normalised x right, y down) lie in each zone."""
        counts = np.count_nonzero(self._edges.inside(x, y), axis=1)
        return MappingProxyType({name: int(n) for name, n in zip(self.names, counts)})

    def masks_for(self, height: int, width: int) -> np.ndarray:
        """Zone weights for a height x width map: zones x height x width float32 in 0..1."""
        key = (height, width)
        if key not in self._masks:
            self._masks[key] = np.stack([
                polygon_mask(poly, height, width) for poly in self._polygons])
        return self._masks[key]

    def sum_density(self, density: np.ndarray) -> Mapping[str, float]:
        """Each zone's share of a density map (H x W, summing to the count)."""
        masks = self.masks_for(*density.shape)
        sums = masks.reshape(len(self.names), -1) @ density.reshape(-1).astype(np.float32)
        return MappingProxyType({n: float(s) for n, s in zip(self.names, sums)})


class PolygonEdges:
    """The edges of all zones in flat arrays, so points are tested against every
    zone in a handful of numpy operations (this runs once per frame)."""

    def __init__(self, polygons: Sequence[np.ndarray]):
        starts = np.concatenate([p for p in polygons])
        ends = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
        self._x1, self._y1 = starts[:, 0], starts[:, 1]
        dy = ends[:, 1] - starts[:, 1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            self._slope = np.where(dy != 0, (ends[:, 0] - starts[:, 0]) / dy, 0.0)
        self._y2 = ends[:, 1]
        self._first_edge = np.cumsum([0] + [len(p) for p in polygons[:-1]])

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Even-odd rule: zones x points, True where the point lies inside the zone."""
        x = np.asarray(x, dtype=np.float64)[:, None]
        y = np.asarray(y, dtype=np.float64)[:, None]
        if x.shape[0] == 0:
            return np.zeros((len(self._first_edge), 0), dtype=bool)
        crosses = (self._y1 > y) != (self._y2 > y)
        # An all-but-horizontal edge (dy ~ 1e-300) has a slope near infinity;
        # 0 * inf is NaN there, which compares False: the edge is not crossed.
        with np.errstate(invalid="ignore", over="ignore"):
            x_at_y = self._x1 + (y - self._y1) * self._slope
        hits = (crosses & (x < x_at_y)).astype(np.uint8)
        per_zone = np.add.reduceat(hits, self._first_edge, axis=1)
        return (per_zone.T % 2) == 1


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of the points (x[i], y[i]) lie inside the polygon."""
    return PolygonEdges([np.asarray(polygon, dtype=np.float64)]).inside(x, y)[0]


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fraction of each cell of a height x width grid covered by the polygon.

    Each cell is split into MASK_SUPERSAMPLE x MASK_SUPERSAMPLE sub-cells whose
    centres are tested with the same even-odd rule as points, so zones that
    share an edge split every cell between them without gap or overlap.
    """
    s = MASK_SUPERSAMPLE
    edges = PolygonEdges([np.asarray(polygon, dtype=np.float64)])
    xs = (np.arange(width * s) + 0.5) / (width * s)
    inside = np.empty((height * s, width * s), dtype=np.float32)
    for row in range(height * s):
        y = np.full(width * s, (row + 0.5) / (height * s))
        inside[row] = edges.inside(xs, y)[0]
    return inside.reshape(height, s, width, s).mean(axis=(1, 3))
