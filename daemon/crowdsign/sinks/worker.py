"""A device in a thread of its own, fed through a queue of depth one.

The frame loop must never wait for a display: a serial port at 9600 baud, an
unplugged USB adapter or a controller that stopped reading must not slow
counting. So a device sink hands each update to a `DeviceWorker`, which keeps
only the newest one (a sign wants the current count, not a backlog) and owns
the device's whole life in its thread:

- open, and when that fails wait and retry, the wait doubling from
  `backoff_initial_s` to `backoff_max_s`; the wait ends at once on close();
- write the newest pending update, at most `rate_hz` writes a second: an
  update published during the wait replaces the pending one, and whatever is
  newest when the interval is over is written;
- a write that fails closes the device and goes back to opening it; the update
  that failed is written after the reopen unless a newer one came meanwhile;
- on close(), an update still pending is written at once if the device is
  open, so the sign gets the last ("no data") state before the daemon exits;
- when the counts last written pass their `valid_until` and nothing newer
  came (the frame loop hangs: a stuck model, a wedged camera driver), the
  worker writes the same update in its "no data" state on its own, so no
  sign keeps showing numbers nobody updates.

What is written is whatever `encode` makes of an update: bytes for a serial
line, a sequence of images for an LED matrix; the `Device` knows its kind.

Logging, so a technician sees one line per event and not one per retry:
one WARNING when the device is lost (`serial /dev/ttyUSB0 lost: [Errno 5]
Input/output error; retrying`) or cannot be opened at start, one INFO when it
is back (the first successful write afterwards), every retry at DEBUG.

`health()` is `ok` while the device is open and working, `down` otherwise:
before it is first opened, and from a failure until the next successful
write (a port that opens but then fails every write stays `down`).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional

from crowdsign.sinks.base import Sink, Update


class Device(ABC):
    """What a DeviceWorker drives: a byte sink that can be opened again.

    `lost_errors` are the exceptions that mean "the device is gone or stuck"
    and are answered by reopening with backoff; anything else is logged as an
    unexpected error (with traceback) and then handled the same way.
    """

    lost_errors: tuple[type[BaseException], ...] = (OSError,)

    @abstractmethod
    def open(self) -> None:
        """Open the device; raise one of `lost_errors` if it is not there."""

    @abstractmethod
    def write(self, data: Any) -> None:
        """Write all of `data` (what the sink's encode made: bytes for a serial
        line); raise one of `lost_errors` on failure."""

    @abstractmethod
    def close(self) -> None:
        """Close the device; must not raise, may be called when not open."""

    @abstractmethod
    def describe(self) -> str:
        """The device for logs, e.g. `serial /dev/ttyUSB0`."""

    def interrupt(self) -> None:
        """Called from another thread by close() to cut short a blocked write."""

    def stop_soon(self) -> None:
        """Called from another thread as close() begins: a device in the middle
        of something long (an LED notice scrolling by) should wrap it up now.
        A serial line must not: a telegram cut in half garbles the next one."""


def error_reason(exc: BaseException) -> str:
    """An exception as a short reason for a log line.

    pyserial wraps the OSError it got (`write failed: [Errno 5] ...`,
    `[Errno 2] could not open port X: [Errno 2] No such file ...`); the
    innermost OSError reads best: `[Errno 5] Input/output error`.
    """
    reason = str(exc) or type(exc).__name__
    seen: Optional[BaseException] = exc
    for _ in range(8):                      # exception chains are short; never loop
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno is not None and seen.strerror:
            reason = f"[Errno {seen.errno}] {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    return reason


class DeviceWorker:
    """Runs a `Device` in its own thread, writing the newest published update.

    device:   the device to open, write and close.
    encode:   an update to what is written for it; if it raises, the update
              is dropped and the error logged (a bug, not a device problem).
    rate_hz:  most writes per second (the minimum interval is 1 / rate_hz).
    backoff_initial_s, backoff_max_s: wait after a failed open or write,
              doubling from the first to the second; back to the first after
              a successful write.
    log:      where the lost / back / retry lines go.
    clock:    monotonic seconds; time.monotonic unless a test needs another.
    """

    def __init__(self, device: Device, encode: Callable[[Update], Any], *,
                 rate_hz: float, backoff_initial_s: float, backoff_max_s: float,
                 log: logging.Logger, clock: Callable[[], float] = time.monotonic):
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("backoff_initial_s must be > 0 and <= backoff_max_s")
        self._device = device
        self._encode = encode
        self._interval = 1.0 / rate_hz
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._log = log
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: Optional[Update] = None
        self._shown: Optional[Update] = None    # the last update taken to be written
        self._idle = False                      # the thread waits for an update to arrive
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._is_open = False
        self._lost = False          # a failure was logged and no write has succeeded since
        self.writes = 0             # successful writes, for status lines and tests

    # --- the frame loop's side -------------------------------------------------

    def start(self) -> None:
        """Start the thread (once); it opens the device."""
        if self._thread is not None:
            raise RuntimeError("DeviceWorker already started")
        self._thread = threading.Thread(
            target=self._run, name=f"sink {self._device.describe()}", daemon=True)
        self._thread.start()

    def publish(self, update: Update) -> None:
        """Make `update` the one to write next, replacing any older one. Never blocks
        beyond taking a lock that the worker only holds for a few instructions.

        The thread is woken only when it is idle: while it waits out the rate
        limit it takes the newest update when the wait ends anyway. Waking it
        on every frame would hand the GIL back and forth for nothing, which
        costs the frame loop measurably on a loaded two-core board."""
        with self._cond:
            self._pending = update
            if self._idle:
                self._cond.notify()

    def health(self) -> str:
        return "ok" if self._is_open and not self._lost else "down"

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 1.0) -> None:
        """Write the pending update if the device is open (at once, ignoring the
        rate limit), stop the thread and close the device; returns within about
        `timeout` s even when the device is stuck."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._device.stop_soon()
        thread = self._thread
        if thread is None:
            return
        if thread.is_alive():
            thread.join(timeout / 2)
        if thread.is_alive():
            self._device.interrupt()        # cut short a write blocked on a stuck device
            thread.join(timeout / 2)
        if thread.is_alive():
            self._log.warning("%s: writer thread did not stop within %.1f s",
                              self._device.describe(), timeout)

    # --- the worker thread -----------------------------------------------------

    def _run(self) -> None:
        delay = self._backoff_initial
        next_write = self._clock()
        try:
            while True:
                if not self._is_open:
                    if self._stopping:
                        break                           # no reopening on the way out
                    if not self._open():
                        self._wait_stop(delay)
                        delay = min(delay * 2, self._backoff_max)
                        continue
                update = self._next_update(next_write)
                if update is None:
                    break                               # stopping, nothing left to write
                try:
                    data = self._encode(update)
                except Exception:
                    self._log.exception("%s: cannot encode update; dropped",
                                        self._device.describe())
                    continue
                if self._write(data):
                    next_write = self._clock() + self._interval
                    delay = self._backoff_initial
                else:
                    with self._cond:                    # write it after reopening...
                        if self._pending is None:       # ...unless a newer one came
                            self._pending = update
                    self._wait_stop(delay)
                    delay = min(delay * 2, self._backoff_max)
        finally:
            self._close_device()

    def _open(self) -> bool:
        try:
            self._device.open()
        except Exception as e:
            self._failed(e, "cannot be opened")
            return False
        self._is_open = True
        self._log.debug("%s: opened", self._device.describe())
        return True

    def _write(self, data: bytes) -> bool:
        try:
            self._device.write(data)
        except Exception as e:
            self._failed(e, "lost")
            self._close_device()
            return False
        self.writes += 1
        if self._lost:
            self._log.info("%s back", self._device.describe())
            self._lost = False
        return True

    def _failed(self, exc: Exception, what: str) -> None:
        """Log a failure: one line at WARNING (ERROR with traceback if unexpected)
        when the device goes down, DEBUG for every retry while it stays down."""
        name = self._device.describe()
        expected = isinstance(exc, self._device.lost_errors)
        already_down, self._lost = self._lost, True
        if already_down:
            self._log.debug("%s still down: %s; retrying", name, error_reason(exc),
                            exc_info=None if expected else exc)
        elif expected:
            self._log.warning("%s %s: %s; retrying", name, what, error_reason(exc))
        else:
            self._log.error("%s %s: unexpected error %r; retrying", name, what, exc,
                            exc_info=exc)

    def _close_device(self) -> None:
        if self._is_open:
            self._is_open = False
            try:
                self._device.close()
            except Exception:   # a close that fails leaves nothing to do
                self._log.debug("%s: error on close", self._device.describe(), exc_info=True)

    def _next_update(self, not_before: float) -> Optional[Update]:
        """Wait for a pending update and for the rate limit, then take the newest.

        Once close() was called, a pending update is taken at once, without
        waiting for the rate limit (the last update, typically "no data", must
        reach the sign before the daemon exits); None when none is left.
        When the update last taken expires with nothing newer pending, its
        "no data" state becomes the pending one.
        """
        with self._cond:
            while True:
                expires = self._shown.valid_until if self._shown is not None else None
                if self._pending is None and expires is not None and self._clock() > expires:
                    self._pending = self._shown.no_data()
                if self._pending is not None and (
                        self._stopping or self._clock() >= not_before):
                    update, self._pending = self._pending, None
                    self._shown = update
                    return update
                if self._stopping:
                    return None
                if self._pending is None:
                    self._idle = True
                    self._cond.wait(None if expires is None
                                    else max(expires - self._clock(), 0.0) + 0.01)
                    self._idle = False
                else:
                    self._cond.wait(max(not_before - self._clock(), 0.0))

    def _wait_stop(self, seconds: float) -> None:
        """Sleep `seconds`, or less when close() is called."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=seconds)


class DeviceSink(Sink):
    """A Sink whose device is driven by a DeviceWorker: what every device sink shares.

    Subclasses set `self.device` (the Device) and `self._worker` (its
    DeviceWorker) in their constructor; the rest is delegation.
    """

    device: Device
    _worker: DeviceWorker

    def open(self) -> None:
        """Start the writer thread; the device opens there (a missing one is retried)."""
        self._worker.start()

    def publish(self, update: Update) -> None:
        self._worker.publish(update)

    def close(self) -> None:
        self._worker.close()

    def describe(self) -> str:
        return self.device.describe()

    def health(self) -> str:
        return self._worker.health()

    @property
    def running(self) -> bool:
        """True while the writer thread is alive."""
        return self._worker.running

    @property
    def writes(self) -> int:
        """Updates written so far."""
        return self._worker.writes
