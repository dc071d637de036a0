"""Zones: which zone a person stands in, and each zone's share of a density map."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from crowdsign.config import ZoneConfig
from crowdsign.zones import ZoneGeometry, points_in_polygon

LEFT = ZoneConfig("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
RIGHT = ZoneConfig("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)))
WHOLE = ZoneConfig("whole", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))


def reference_inside(px: float, py: float, polygon) -> bool:
    """The even-odd rule, one point and one edge at a time (the same arithmetic
    as the library, so points exactly on an edge round the same way)."""
    inside = False
    for i in range(len(polygon)):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % len(polygon)]
        if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * ((x2 - x1) / (y2 - y1)):
            inside = not inside
    return inside


unit = st.floats(0.0, 1.0, allow_nan=False)
polygons = st.lists(st.tuples(unit, unit), min_size=3, max_size=8)
points = st.lists(st.tuples(unit, unit), min_size=0, max_size=30)


@settings(max_examples=200, deadline=None)
@given(polygons, points)
def test_points_in_polygon_follows_the_even_odd_rule_for_any_polygon(polygon, pts):
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    got = points_in_polygon(x, y, np.array(polygon))
    assert list(got) == [reference_inside(px, py, polygon) for px, py in pts]


def test_points_count_in_every_zone_they_stand_in_and_zones_may_overlap():
    zones = ZoneGeometry([LEFT, RIGHT, WHOLE])
    counts = zones.count_points(np.array([0.1, 0.2, 0.9]), np.array([0.9, 0.5, 0.5]))
    assert dict(counts) == {"left": 2, "right": 1, "whole": 3}
    assert dict(zones.count_points(np.array([]), np.array([]))) == {
        "left": 0, "right": 0, "whole": 0}


def test_density_is_split_between_adjacent_zones_without_loss():
    zones = ZoneGeometry([LEFT, RIGHT, WHOLE])
    density = np.random.default_rng(1).random((30, 40)).astype(np.float32)
    sums = zones.sum_density(density)
    assert np.isclose(sums["whole"], density.sum(), rtol=1e-5)
    assert np.isclose(sums["left"] + sums["right"], density.sum(), rtol=1e-5)
    assert np.isclose(sums["left"], density[:, :20].sum(), rtol=1e-5)


def test_a_zone_edge_through_a_cell_takes_its_share_of_that_cell():
    third = ZoneConfig("third", ((0.0, 0.0), (1 / 3, 0.0), (1 / 3, 1.0), (0.0, 1.0)))
    zones = ZoneGeometry([third])
    density = np.zeros((1, 2), np.float32)
    density[0, 0] = 1.0  # the zone covers two thirds of this cell
    assert abs(zones.sum_density(density)["third"] - 2 / 3) < 0.05


def test_masks_are_made_once_per_map_size():
    zones = ZoneGeometry([LEFT])
    first = zones.masks_for(24, 32)
    assert zones.masks_for(24, 32) is first
    assert first.shape == (1, 24, 32)
