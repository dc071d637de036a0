"""Warn, without flooding the journal, when a detector's slot cap cuts counts.

An SSD reports at most N people per invoke (N = 10 for the COCO starter
model). On a crowded platform every frame can hit that, and the count is then
a floor, not a measurement: the technician must hear about it, once, and then
be reminded at most once a minute with how many frames were affected.
"""

from __future__ import annotations

import logging
from typing import Optional

LOGGER_NAME = "crowdsign.counting"


class CapWatch:
    """Counts frames that hit the cap; logs the first at once, then at most every interval."""

    def __init__(self, cap: int, interval_s: float = 60.0,
                 logger: Optional[logging.Logger] = None):
        self.cap = cap
        self.interval_s = interval_s
        self.frames_hit = 0
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._pending = 0
        self._last: Optional[float] = None

    def note(self, hit: bool, now: float, frame: int) -> None:
        """Record one frame; `now` is a monotonic time in seconds."""
        if not hit:
            return
        self.frames_hit += 1
        self._pending += 1
        if self._last is None:
            self._log.warning(
                "frame %d hit the model's cap of %d detections; counts may be low "
                "(raise it with models/tools/set_max_detections.py, or use tiles)",
                frame, self.cap)
        elif now - self._last >= self.interval_s:
            self._log.warning(
                "%d frames hit the model's cap of %d detections in the last %.0f s; "
                "counts may be low", self._pending, self.cap, now - self._last)
        else:
            return
        self._last = now
        self._pending = 0
