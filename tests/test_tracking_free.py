"""Tracking-free by construction: what leaves the Counter holds counts per zone only.

Walks the public types downstream of the Counter (what `Counter.count`
returns, what the level tracker makes of it, what every sink receives),
field by field through their type hints, and fails if any can carry
coordinates, boxes, points, per-person records or arrays: a later change
that adds, say, `boxes: list[tuple[float, ...]]` to ZoneCounts fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping as AbcMapping

import numpy as np

import crowdsign.sinks.base as sinks_base
from crowdsign.counting.counter import Counter
from crowdsign.counting.types import StageTimings, ZoneCounts
from crowdsign.levels import LevelTracker
from crowdsign.sinks.base import Sink, Update

SCALARS = (int, float, str, bool, type(None))
LOCATING = {"box", "boxes", "bbox", "bboxes", "point", "points", "coord", "coords", "xy", "x",
            "y", "x0", "y0", "x1", "y1", "centroid", "centroids", "position", "positions",
            "location", "track", "tracks", "tracking", "person", "persons", "detections",
            "keypoints", "pose", "face", "faces", "embedding", "features", "attributes",
            "identity", "id", "ids", "mask", "masks", "density", "heatmap", "image", "pixels",
            "crop", "crops"}
ALLOWED_NAMES = {"frame"}  # the source's frame index: a counter, not pixels


def problems_in(tp, where: str, seen: set) -> list[str]:
    """What in type `tp` could carry more than one number per zone."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in SCALARS:
        return []
    if origin is typing.Union:
        return [p for a in args for p in problems_in(a, where, seen)]
    if origin in (dict, AbcMapping, typing.Mapping) or origin is typing.get_origin(
            typing.Mapping[str, int]):
        key, value = args
        out = [] if key is str else [f"{where}: mapping keyed by {key!r}, not zone names"]
        if value not in SCALARS and typing.get_origin(value) is not typing.Union:
            out.append(f"{where}: a zone maps to {value!r}, not one number")
        return out + problems_in(value, f"{where}[]", seen)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, np.ndarray):
        return [f"{where}: a sequence ({tp!r}) could hold per-person records or coordinates"]
    if dataclasses.is_dataclass(tp):
        if tp in seen:
            return []
        seen.add(tp)
        hints = typing.get_type_hints(tp)
        out = []
        for f in dataclasses.fields(tp):
            name = f"{where}.{f.name}"
            if f.name not in ALLOWED_NAMES and LOCATING & set(f.name.lower().split("_")):
                out.append(f"{name}: the name says it locates or describes a person")
            out.extend(problems_in(hints[f.name], name, seen))
        return out
    return [f"{where}: {tp!r} is neither a number, a text nor a per-zone mapping"]


def test_zone_counts_carry_counts_per_zone_only():
    assert problems_in(ZoneCounts, "ZoneCounts", set()) == []


def test_updates_that_sinks_receive_carry_counts_and_levels_per_zone_only():
    assert problems_in(Update, "Update", set()) == []
    assert problems_in(StageTimings, "StageTimings", set()) == []


def test_the_counter_hands_out_zone_counts_and_sinks_take_updates():
    assert typing.get_type_hints(Counter.count)["return"] is ZoneCounts
    assert typing.get_type_hints(Sink.publish)["update"] is Update
    assert typing.get_type_hints(LevelTracker.observe)["counts"] is ZoneCounts
    assert typing.get_type_hints(LevelTracker.update)["return"] is Update


def test_every_public_type_of_the_sink_interface_is_tracking_free():
    found = [obj for _, obj in inspect.getmembers(sinks_base, inspect.isclass)
             if dataclasses.is_dataclass(obj) and obj.__module__ == sinks_base.__name__]
    assert Update in found
    for cls in found:
        assert problems_in(cls, cls.__name__, set()) == []


def test_the_walk_catches_coordinates_and_per_person_records():
    @dataclasses.dataclass(frozen=True)
    class Leaky:
        zones: typing.Mapping[str, float]
        boxes: tuple[tuple[float, ...], ...]

    @dataclasses.dataclass(frozen=True)
    class PerPerson:
        zones: typing.Mapping[str, typing.Mapping[str, float]]

    @dataclasses.dataclass(frozen=True)
    class Array:
        density: np.ndarray

    assert any("boxes" in p for p in problems_in(Leaky, "Leaky", set()))
    assert problems_in(PerPerson, "PerPerson", set())
    assert problems_in(Array, "Array", set())
