"""Faults injected on purpose, for tests of the watchdog and restart path only.

Off by default: nothing here runs unless CROWDSIGN_FAULT is set in the
daemon's environment. The virtual rig (hw-tests/) sets it through a runtime
drop-in, which is gone at the next boot:

    # /run/systemd/system/crowdsign.service.d/fault.conf
    [Service]
    Environment=CROWDSIGN_FAULT=hang-after-frames:30

Faults:
    hang-after-frames:N   after N counted frames the counter blocks until the
                          daemon is told to stop, as a wedged camera driver or
                          model would: the frame loop stops pinging the
                          watchdog, so systemd's WatchdogSec kills and restarts
                          the daemon.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Mapping, Optional

from crowdsign.counting.counter import Counter
from crowdsign.counting.types import ZoneCounts
from crowdsign.frames import Frame

ENV_VAR = "CROWDSIGN_FAULT"


class FaultSpecError(ValueError):
    """CROWDSIGN_FAULT names no known fault."""


@dataclass(frozen=True)
class HangAfterFrames:
    """Hang the counter after `frames` counted frames."""

    frames: int


def fault_from_env(environ: Optional[Mapping[str, str]] = None) -> Optional[HangAfterFrames]:
    """The fault CROWDSIGN_FAULT asks for, or None when it is unset or empty."""
    spec = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not spec:
        return None
    name, _, arg = spec.partition(":")
    if name == "hang-after-frames" and arg.isdigit():
        return HangAfterFrames(int(arg))
    raise FaultSpecError(f"{ENV_VAR}={spec!r}: known faults: hang-after-frames:N")


class HangingCounter:
    """A Counter that stops returning after a number of frames (see HangAfterFrames).

    Has the Counter's interface as the supervisor and sources use it; every
    call but `count` goes to the wrapped counter.
    """

    def __init__(self, counter: Counter, fault: HangAfterFrames, stop: threading.Event,
                 log: logging.Logger):
        self._counter = counter
        self._fault = fault
        self._stop = stop
        self._log = log
        self._counted = 0

    @property
    def input_size(self) -> tuple[int, int]:
        return self._counter.input_size

    @property
    def input_format(self):
        return self._counter.input_format

    @property
    def timings(self):
        return self._counter.timings

    @property
    def frames_at_cap(self) -> int:
        return self._counter.frames_at_cap

    def describe(self) -> str:
        return f"{self._counter.describe()} [fault: hang after {self._fault.frames} frames]"

    def close(self) -> None:
        self._counter.close()

    def count(self, frame: Frame) -> ZoneCounts:
        if self._counted >= self._fault.frames:
            self._log.warning("fault %s: the counter hangs now (frame %d)",
                              os.environ.get(ENV_VAR, "hang-after-frames"), self._counted)
            self._stop.wait()  # only SIGTERM ends it; systemd's watchdog sends SIGABRT first
        self._counted += 1
        return self._counter.count(frame)


def with_fault(counter: Counter, fault: Optional[HangAfterFrames], stop: threading.Event,
               log: logging.Logger):
    """`counter` itself without a fault, else the counter wrapped to misbehave."""
    if fault is None:
        return counter
    log.warning("test fault switch on: %s=%s", ENV_VAR, os.environ.get(ENV_VAR, ""))
    return HangingCounter(counter, fault, stop, log)
