"""The interface every output implements, and the update it receives.

A sink must never slow the frame loop: `publish` only hands the update over
and returns at once. Sinks that talk to devices do the talking in a thread of
their own (see `crowdsign.sinks.worker`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping, Optional


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
    """

    t: float
    frame: int
    total: Optional[float]
    zones: Mapping[str, Optional[float]]
    levels: Mapping[str, str]
    fps: float
    infer_ms: float

    @property
    def stale(self) -> bool:
        return self.total is None


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
