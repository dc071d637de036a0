"""The daemon's frame loop, and its start and stop as ordered steps.

Start: load the model, start the outputs, open the camera, and tell systemd
READY only once a frame has been counted. Each counted frame pings the
watchdog, so a pipeline that hangs anywhere (camera, model, smoothing)
stops the pings and systemd restarts the service. Stop (SIGTERM, the end of a
replay, `--frames N`): tell systemd STOPPING, close the camera, then the
outputs, in that order, within a second.

Reload (SIGHUP, see `Reload`): between two frames the config file is read
again; a config with problems is refused with one log line and the running
one kept. Otherwise only what changed is rebuilt: the model (and the zone
geometry it counts with) when [model] or the zones changed, the camera only
when [source] changed or the new model wants another input, the outputs when
[[outputs]] changed; levels, cars and logging are applied in place. The
camera is never closed for a change that does not concern it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from crowdsign.config import Config, ConfigError
from crowdsign.counting.counter import Counter
from crowdsign.counting.types import ZoneCounts
from crowdsign.journal import summary_fields
from crowdsign.levels import LevelTracker
from crowdsign.notify import Notifier
from crowdsign.sinks.base import Sink, Update
from crowdsign.sources.base import FrameSource, SourceExhausted

CAPTURE_TIMEOUT_S = 0.25  # how long one wait for a frame may block the loop


class StageTimes:
    """Milliseconds per counted frame for each stage, the most recent `keep` frames.

    capture:     waiting for and reading the frame (decode, for a recording).
    preprocess, invoke, postprocess: inside the counter.
    output:      smoothing, levels and handing the update to every sink.

    Each stage reads as a sequence, oldest first (`list(times.invoke)`). The
    values live in one array allocated, and touched, up front (5 x `keep`
    float64, 400 KB by default), so the daemon's memory does not creep up
    while the history fills: a soak sees it flat from the first minute.
    """

    STAGES = ("capture", "preprocess", "invoke", "postprocess", "output")

    def __init__(self, keep: int = 10_000):
        self.keep = keep
        self._values = np.full((len(self.STAGES), keep), np.nan)
        self._count = 0

    def add(self, **ms: float) -> None:
        slot = self._count % self.keep
        for name, value in ms.items():
            self._values[self.STAGES.index(name), slot] = value
        self._count += 1

    def __getattr__(self, name: str) -> list[float]:
        if name not in StageTimes.STAGES:
            raise AttributeError(name)
        row = self._values[self.STAGES.index(name)]
        n = min(self._count, self.keep)
        start = self._count % self.keep if self._count > self.keep else 0
        return np.concatenate([row[start:n], row[:start]]).tolist() if start else row[:n].tolist()


class RateMeter:
    """Counted frames per second over a sliding window of recent frames."""

    def __init__(self, window: int = 30):
        self._stamps: deque[float] = deque(maxlen=window)

    def tick(self, now: float) -> None:
        self._stamps.append(now)

    def rate(self, now: float) -> float:
        if len(self._stamps) < 2 or now - self._stamps[-1] > 5.0:
            return 0.0
        return (len(self._stamps) - 1) / max(self._stamps[-1] - self._stamps[0], 1e-9)


@dataclass
class Reload:
    """What the supervisor needs to apply a new config on SIGHUP.

    requested:   set by the SIGHUP handler; the loop clears it and reloads.
    load_config: reads and validates the config again (raises ConfigError).
    make_counter: a Counter for a config (raises ModelError or ValueError).
    make_source: an unopened source for a config and its counter.
    make_sinks:  the unopened sinks of a config's [[outputs]].
    keep:        sinks that are not from the config (`--json`) and stay.
    applied:     called with each config put in place (the privacy guard's
                 declared outputs, the log level).
    """

    requested: threading.Event
    load_config: Callable[[], Config]
    make_counter: Callable[[Config], Counter]
    make_source: Callable[[Config, Counter], FrameSource]
    make_sinks: Callable[[Config], list[Sink]]
    keep: Sequence[Sink] = ()
    applied: Callable[[Config], None] = lambda config: None


class Supervisor:
    """Runs source -> counter -> levels -> sinks until told to stop.

    Stages are built by the caller and passed in, so tests and benchmarks can
    run the same loop on their own parts. `stop` is set by the signal handler.
    """

    def __init__(self, config: Config, *, source: FrameSource, counter: Counter,
                 sinks: Sequence[Sink], notifier: Notifier, log: logging.Logger,
                 stop: threading.Event, max_frames: Optional[int] = None,
                 source_state: Optional[Callable[[], str]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 reload: Optional[Reload] = None):
        self.config = config
        self.source = source
        self.counter = counter
        self.sinks = list(sinks)
        self.notifier = notifier
        self.log = log
        self.stop = stop
        self.max_frames = max_frames
        self.source_state = source_state or (lambda: getattr(self.source, "state", "ok"))
        self.clock = clock
        self.reload = reload
        self.reloads = 0
        self.tracker = LevelTracker(config.zone_list(), config.levels, config.car_list(),
                                    config.recommend)
        self.times = StageTimes()
        self.rate = RateMeter()
        self.counted = 0
        self.ready = False
        self._last_publish = float("-inf")
        self._last_summary = clock()
        self._last_status = float("-inf")
        self._last_update: Optional[Update] = None
        self._stale_logged = False

    # --- lifecycle ------------------------------------------------------------

    def run(self) -> int:
        """Start, loop, stop. Returns the process exit code."""
        self.log.info("starting: model %s; source %s; outputs: %s",
                      self.counter.describe(), self.source.describe(),
                      ", ".join(s.describe() for s in self.sinks) or "none")
        for sink in self.sinks:
            sink.open()
        try:
            self.source.open()
            self._loop()
        finally:
            self.notifier.stopping(f"stopping after {self.counted} frames")
            self.source.close()
            self._publish_final()
            for sink in self.sinks:
                sink.close()
            self.log.info("stopped after %d counted frames", self.counted)
        return 0

    def _loop(self) -> None:
        while not self.stop.is_set():
            if self.reload is not None and self.reload.requested.is_set():
                self.reload.requested.clear()
                self._reload()
                continue
            start = self.clock()
            try:
                with self.source.capture(CAPTURE_TIMEOUT_S) as frame:
                    if frame is None:
                        counts = None
                    else:
                        captured = self.clock()
                        counts = self.counter.count(frame)
            except SourceExhausted:
                self.log.info("source %s ended", self.source.describe())
                return
            if counts is None:
                self._idle(self.clock())
                continue
            self._counted(counts, start, captured)
            if self.max_frames is not None and self.counted >= self.max_frames:
                return

    # --- reload (SIGHUP) -----------------------------------------------------------

    def _reload(self) -> None:
        """Apply the config file as it is now, or keep the running one (one log line)."""
        assert self.reload is not None
        r, old = self.reload, self.config
        try:
            new = r.load_config()
        except ConfigError as e:
            self.log.error("config reload refused, keeping the running config: %s",
                           "; ".join(e.problems))
            return
        counter_changes = new.model != old.model or new.zone_list() != old.zone_list()
        counter = self.counter
        if counter_changes:
            try:
                counter = r.make_counter(new)
            except Exception as e:  # ModelError, a bad zone: the running model stays
                self.log.error("config reload refused, keeping the running config: "
                               "[model]: %s", e)
                return
        source_changes = new.source != old.source or (
            counter is not self.counter and (counter.input_size, counter.input_format)
            != (self.counter.input_size, self.counter.input_format))
        done: list[str] = []
        if counter is not self.counter:
            self.counter.close()
            self.counter = counter
            done.append(f"model reloaded ({counter.describe()})")
        else:
            done.append("model kept")
        if source_changes:
            self.source.close()
            self.source = r.make_source(new, counter)
            self.source.open()
            done.append(f"camera reopened ({self.source.describe()})")
        else:
            done.append(f"camera kept ({self.source.describe()})")
        if new.outputs != old.outputs:
            for sink in self.sinks:
                if sink not in r.keep:
                    sink.close()
            sinks = r.make_sinks(new)
            r.applied(new)   # the guard must know the new devices before they are opened
            for sink in sinks:
                sink.open()
            self.sinks = sinks + list(r.keep)
            done.append(f"outputs reopened ({', '.join(s.describe() for s in sinks) or 'none'})")
        else:
            r.applied(new)
            done.append("outputs kept")
        if (counter_changes or new.levels != old.levels or new.cars != old.cars
                or new.recommend != old.recommend):
            self.tracker = LevelTracker(new.zone_list(), new.levels, new.car_list(),
                                        new.recommend)
            done.append("levels restarted")
        self.config = new
        self.reloads += 1
        self.log.info("config reloaded from %s: %s", new.path or "<defaults>", "; ".join(done))

    # --- per frame ------------------------------------------------------------

    def _counted(self, counts: ZoneCounts, start: float, captured: float) -> None:
        counted_at = self.clock()
        self.counted += 1
        self.rate.tick(counted_at)
        self.tracker.observe(counts)
        update = self._make_update(counted_at)
        self._publish(update, counted_at)
        self._stale_logged = False
        done = self.clock()

        t = self.counter.timings
        self.times.add(capture=(captured - start) * 1e3, preprocess=t.preprocess_ms,
                       invoke=t.invoke_ms, postprocess=t.postprocess_ms,
                       output=(done - counted_at) * 1e3)
        if not self.ready:
            self.ready = True
            self.notifier.ready(self.status_line(update))
            self.log.info("ready: first frame counted (%s)", self.status_line(update))
        self.notifier.watchdog()
        self._periodic(update, done)

    def _idle(self, now: float) -> None:
        """No frame this time round: keep the sign honest, but no watchdog ping."""
        if now - self._last_publish >= self.config.levels.publish_interval_s:
            update = self._make_update(now)
            self._publish(update, now)
            if update.stale and not self._stale_logged and self.ready:
                self._stale_logged = True
                self.log.warning("no frame counted for %.1f s: levels are unknown (source %s)",
                                 self.config.levels.stale_after_s, self.source_state())
            self._periodic(update, now)

    def _make_update(self, now: float) -> Update:
        return self.tracker.update(now, fps=self.rate.rate(now),
                                   infer_ms=self.counter.timings.invoke_ms)

    def _publish(self, update: Update, now: float) -> None:
        self._last_publish = now
        self._last_update = update
        for sink in self.sinks:
            sink.publish(update)

    def _publish_final(self) -> None:
        """On the way out, the sign gets the stale ("no data") state, not old numbers."""
        if self._last_update is not None:
            final = self.tracker.update(self.clock(), fps=0.0, infer_ms=0.0, no_data=True)
            for sink in self.sinks:
                sink.publish(final)

    def _periodic(self, update: Update, now: float) -> None:
        if now - self._last_status >= 1.0:
            self._last_status = now
            self.notifier.status(self.status_line(update))
        if now - self._last_summary >= self.config.logging.summary_interval_s:
            self._last_summary = now
            self.log.info("%s | infer %.1f ms", self.status_line(update), update.infer_ms,
                          extra=summary_fields(update.total, update.zones, update.fps,
                                               update.infer_ms))

    def status_line(self, update: Update) -> str:
        """One line for `systemctl status`: `42 people | 4 zones | 9.8 fps | serial ok`."""
        people = "no data" if update.total is None else f"{update.total:.0f} people"
        parts = [people, f"{len(update.zones)} zones", f"{update.fps:.1f} fps"]
        state = self.source_state()
        if state != "ok":
            parts.append(f"camera {state}")
        parts.extend(f"{s.describe().split()[0]} {s.health()}" for s in self.sinks
                     if s.describe().split()[0] != "json")
        return " | ".join(parts)
