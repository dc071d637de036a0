"""A source that survives its camera: reopened after a failure or a stall.

Cameras on a platform fail in the ordinary course of things: a USB camera
is unplugged, a ribbon cable works loose, the ISP stops completing requests
without an error. The daemon must neither die (systemd would restart it into
the same fault, and the sign would flap) nor hang (the watchdog would kill
it). So the supervisor reads frames through this wrapper, which

- closes the inner source on SourceError (from open or capture), or when no
  frame came for `stall_timeout_s`, and opens a fresh one from
  `inner_factory` after a delay: `backoff_initial_s`, doubling after each
  attempt that does not bring frames back, up to `backoff_max_s`;
- waits with `stop.wait()`, so SIGTERM ends a backoff at once;
- never blocks a capture beyond its `timeout`: while backing off it yields
  None, so the supervisor's loop keeps turning, pets the watchdog and lets
  the levels go stale (an open attempt itself takes as long as the backend's
  open, about a second for a Pi camera);
- logs one warning when the source fails or stalls and one info line when
  frames are back, with the retries in between at debug level, so the
  journal of a day with a loose cable stays readable;
- passes SourceExhausted through: the end of a replay is not a fault.

Frame.index keeps rising across reopens (each new inner source counts from 0
again), so downstream sees one stream.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Callable, Optional

from crowdsign.frames import Frame
from crowdsign.sources.base import FrameSource, SourceError


class ReopeningSource(FrameSource):
    """Wraps a FrameSource made by `inner_factory`, reopening it when it fails or stalls.

    inner_factory:    makes a new, unopened source (no I/O); called once here
                      and again for each reopen.
    stall_timeout_s:  seconds without a frame after which the source counts
                      as stalled and is reopened; longer than one frame period.
    backoff_initial_s, backoff_max_s: delay before a reopen, doubling from
                      the first to the second while attempts bring no frame.
    stop:             set at shutdown; interrupts a backoff and prevents reopening.
    log:              where the warning, info and debug lines go.
    clock:            monotonic seconds (tests pass a fake one).

    `state` is "ok" (frames arriving), "stalled" (open, but the last capture
    brought no frame) or "reopening" (closed, waiting to open again).
    `reopen_count` counts the successful reopens since construction.
    """

    def __init__(self, inner_factory: Callable[[], FrameSource], *, stall_timeout_s: float,
                 backoff_initial_s: float, backoff_max_s: float, stop: threading.Event,
                 log: logging.Logger, clock: Callable[[], float] = time.monotonic):
        if stall_timeout_s <= 0 or not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need stall_timeout_s > 0 and 0 < backoff_initial_s <= backoff_max_s")
        self._factory = inner_factory
        self._stall_timeout = stall_timeout_s
        self._backoff_initial, self._backoff_max = backoff_initial_s, backoff_max_s
        self._stop, self._log, self._clock = stop, log, clock
        self._inner = inner_factory()
        self._is_open = False
        self._last_frame_at = clock()   # or when the inner source was opened
        self._missed = False            # the last capture of an open source brought no frame
        self._retry_at = 0.0
        self._backoff = backoff_initial_s
        self._outage_since: Optional[float] = None  # start of the current outage
        self._attempts = 0              # reopen attempts in the current outage
        self._index_base = 0            # added to the inner source's Frame.index
        self._next_index = 0
        self.reopen_count = 0

    @property
    def state(self) -> str:
        if not self._is_open:
            return "reopening"
        return "stalled" if self._missed else "ok"

    def describe(self) -> str:
        return self._inner.describe()

    def open(self) -> None:
        """Open the inner source; a failure is logged and retried, not raised."""
        self._try_open()

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._inner.close()

    @contextmanager
    def capture(self, timeout: float) -> Iterator[Optional[Frame]]:
        deadline = self._clock() + timeout
        if not self._is_open and not self._reopen_when_due(deadline):
            yield None
            return
        frame: Optional[Frame] = None
        failure: Optional[SourceError] = None
        inner = ExitStack()
        try:
            frame = inner.enter_context(
                self._inner.capture(max(0.0, deadline - self._clock())))
        except SourceError as e:
            failure = e
        if frame is not None:
            with inner:  # the inner block (a camera buffer) stays open for ours
                yield self._delivered(frame)
            return
        inner.close()
        if failure is not None:
            self._fail(f"camera {self.describe()} failed, reopening: {failure}",
                       f"failed again: {failure}")
        else:
            self._missed = True
            quiet = self._clock() - self._last_frame_at
            if quiet >= self._stall_timeout:
                self._fail(f"camera {self.describe()} stalled for {quiet:.1f} s, reopening",
                           f"stalled again for {quiet:.1f} s")
        yield None

    # --- internals -------------------------------------------------------------

    def _delivered(self, frame: Frame) -> Frame:
        now = self._clock()
        self._last_frame_at, self._missed = now, False
        if self._outage_since is not None:
            self._log.info("camera %s is back after %.1f s (%d reopen attempt%s)",
                           self.describe(), now - self._outage_since, self._attempts,
                           "" if self._attempts == 1 else "s")
            self._outage_since, self._attempts = None, 0
            self._backoff = self._backoff_initial
        frame = dataclasses.replace(frame, index=frame.index + self._index_base)
        self._next_index = frame.index + 1
        return frame

    def _reopen_when_due(self, deadline: float) -> bool:
        """Wait (until `deadline` at most) for the next attempt, then try; True if open."""
        wait = self._retry_at - self._clock()
        if wait > 0:
            self._stop.wait(max(0.0, min(wait, deadline - self._clock())))
        if self._stop.is_set() or self._clock() < self._retry_at:
            return False
        self._attempts += 1
        self._inner = self._factory()
        if self._try_open():
            self.reopen_count += 1
            return True
        return False

    def _try_open(self) -> bool:
        try:
            self._inner.open()
        except SourceError as e:
            self._fail(f"camera {self.describe()} cannot be opened, retrying: {e}",
                       f"reopen attempt {self._attempts} failed: {e}")
            return False
        self._is_open, self._missed = True, False
        self._last_frame_at = self._clock()
        self._index_base = self._next_index
        return True

    def _fail(self, first: str, again: str) -> None:
        """Close the inner source and schedule the next attempt; warn once per outage."""
        self.close()
        now = self._clock()
        delay = self._backoff
        if self._outage_since is None:
            self._outage_since = now
            self._log.warning("%s", first)
        else:
            self._log.debug("camera %s %s; next attempt in %.1f s", self.describe(), again, delay)
        self._retry_at = now + delay
        self._backoff = min(self._backoff * 2, self._backoff_max)
