"""What leaves the Counter: counts per zone, and how long each step took.

These types are the privacy boundary. Boxes, points and density maps live
inside `crowdsign.counting` only; what passes downstream holds one number per
zone and nothing that locates or describes a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class ZoneCounts:
    """People counted in one frame.

    frame:     the source's frame index.
    timestamp: time.monotonic() seconds when the frame was captured.
    total:     people in the whole frame (a density model gives a fraction).
    zones:     people per zone name.
    """

    frame: int
    timestamp: float
    total: float
    zones: Mapping[str, float]


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds spent on one frame, per step of the counter."""

    preprocess_ms: float = 0.0
    invoke_ms: float = 0.0
    postprocess_ms: float = 0.0
    invokes: int = 1
