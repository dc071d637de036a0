"""The interface every output implements, and the update it receives.

A sink must never slow the frame loop: `publish` only hands the update over
and returns at once. Sinks that talk to devices do the talking in a thread of
their own (see `crowdsign.sinks.worker`).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping, Optional

NO_DATA_CODE = 0
"""The level code of a zone whose counts are not known (stale, or stopping)."""


@dataclass(frozen=True)
class Update:
    """What the sign should show now.

    t:       time.monotonic() seconds when the update was made.
    frame:   index of the last counted frame (-1 before the first).
    total:   smoothed people in the whole view; None when the data is stale.
    zones:   smoothed people per zone; None per zone when stale.
    levels:  crowding level per zone (`low`, ..., or `unknown` when stale).
    fps:     counted frames per second, recent average.
    infer_ms: model time of the last frame in milliseconds.
    codes:   level per zone as a number for displays and PLCs: 0 = no data,
             1 = the first (least crowded) level name, 2 = the next, ...
    cars:    people per car, cars in train order (each car sums its zones);
             without configured cars, every zone is a car. None when stale.
    car_codes: level code per car: the highest code among its zones (0 = no data).
    recommended: the car to board (least crowded by the configured margin,
             held for the minimum dwell), None when there is no clear choice
             or no data.
    counted_t: time.monotonic() of the frame the counts come from; None when
             no frame has been counted (sinks show the data's age from it).
    valid_until: time.monotonic() after which these counts must no longer be
             shown: a sink that has heard nothing newer by then shows "no
             data" on its own, so a frame loop that hangs cannot leave old
             numbers on a sign. None when the update is already stale.
    """

    t: float
    frame: int
    total: Optional[float]
    zones: Mapping[str, Optional[float]]
    levels: Mapping[str, str]
    fps: float
    infer_ms: float
    codes: Mapping[str, int] = field(default_factory=dict)
    cars: Mapping[str, Optional[float]] = field(default_factory=dict)
    car_codes: Mapping[str, int] = field(default_factory=dict)
    recommended: Optional[str] = None
    counted_t: Optional[float] = None
    valid_until: Optional[float] = None

    @property
    def stale(self) -> bool:
        return self.total is None

    def expired(self, now: float) -> bool:
        """True when the counts are stale, or too old to show at `now`."""
        return self.stale or (self.valid_until is not None and now > self.valid_until)

    def no_data(self) -> "Update":
        """This update in the "no data" state: every count None, every level
        `unknown`, every code 0, no recommendation. The frame and the time the
        counts came from are kept, for the data's age."""
        return dataclasses.replace(
            self, total=None, zones={z: None for z in self.zones},
            levels={z: "unknown" for z in self.levels},
            codes={z: NO_DATA_CODE for z in self.zones},
            cars={c: None for c in self.cars}, car_codes={c: NO_DATA_CODE for c in self.cars},
            recommended=None, valid_until=None)


class Sink(ABC):
    """An output. open() once, publish() per update (never blocks), close() once."""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def publish(self, update: Update) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """A short name for logs and the status line, e.g. `serial /dev/ttyUSB0`."""

    def health(self) -> str:
        """`ok`, or a one-word state such as `down` for the status line."""
        return "ok"


def whole(value: Optional[float]) -> Optional[int]:
    """A smoothed count as a display shows it: whole people, halves up; None
    stays None, and so does inf or NaN (not a number of people: a broken model)."""
    return None if value is None or not math.isfinite(value) else int(value + 0.5)
