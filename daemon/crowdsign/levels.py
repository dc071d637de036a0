"""From counts to crowding levels: smoothing, hysteresis, staleness.

Three small pieces, each usable and tested on its own, then one class that
wires them per zone:

- smoothers (`MedianSmoother`, `EmaSmoother`): `push(x)` a raw count, get the
  smoothed count back; `reset()` forgets the past.
- `level_with_hysteresis`: a pure function from a smoothed count and the
  current level to the new level.
- `LevelTracker`: one smoother and one level per zone (and a smoother for the
  total), turning `ZoneCounts` into the `Update` the sinks receive, with every
  level `unknown` once the counts are stale.

The hysteresis rule
-------------------
Levels are numbered 0 (least crowded) to len(thresholds); threshold `t[i]`
is the boundary between level i and level i + 1. With hysteresis `h`:

- up:   from level i to i + 1 when value >= t[i] + h/2
- down: from level i to i - 1 when value <  t[i-1] - h/2
- none (no current level, e.g. at start or after stale data): the plain band,
  the level i with t[i-1] <= value < t[i].

Several boundaries can be crossed in one step (a jump from 0 to 40 people goes
straight to the top level). Inside the dead band t - h/2 <= value < t + h/2 the
level never changes, so a count wavering around a boundary by less than h/2
either side never makes the sign flap: after a change up (value >= t + h/2) the
next change down needs value < t - h/2, i.e. the value must fall by more than
h. With h = 0 the rule is the plain band.

All times are `time.monotonic()` seconds, passed in by the caller: nothing
here reads a clock, so tests drive time directly.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from typing import Optional, Protocol, Sequence

from crowdsign.config import CarConfig, LevelsConfig, RecommendConfig, ZoneConfig
from crowdsign.counting.types import ZoneCounts
from crowdsign.recommend import Recommender, car_counts
from crowdsign.sinks.base import NO_DATA_CODE, Update

UNKNOWN = "unknown"
"""The level name every zone shows when counts are stale (or none yet)."""


class Smoother(Protocol):
    def push(self, x: float) -> float: ...

    def reset(self) -> None: ...


class MedianSmoother:
    """Median of the last `window` values pushed (fewer right after a reset).

    A median ignores a single-frame miscount entirely (one frame where the
    detector saw a poster as a person), at the cost of a lag of about
    window / 2 frames.

    >>> m = MedianSmoother(3)
    >>> [m.push(x) for x in (4, 40, 5, 6)]
    [4.0, 22.0, 5.0, 6.0]
    """

    def __init__(self, window: int):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._values: deque[float] = deque(maxlen=window)

    def push(self, x: float) -> float:
        self._values.append(x)
        return float(statistics.median(self._values))

    def reset(self) -> None:
        self._values.clear()


class EmaSmoother:
    """Exponential moving average with span `window`: alpha = 2 / (window + 1).

    The first value after construction or reset is taken as it is, so the
    average does not creep up from zero.

    >>> e = EmaSmoother(3)   # alpha = 0.5
    >>> [e.push(x) for x in (10, 20, 20)]
    [10.0, 15.0, 17.5]
    """

    def __init__(self, window: int):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.alpha = 2.0 / (window + 1)
        self._value: Optional[float] = None

    def push(self, x: float) -> float:
        if self._value is None:
            self._value = float(x)
        else:
            self._value += self.alpha * (x - self._value)
        return self._value

    def reset(self) -> None:
        self._value = None


def make_smoother(kind: str, window: int) -> Smoother:
    """A smoother by its config name: `median` or `ema`."""
    if kind == "median":
        return MedianSmoother(window)
    if kind == "ema":
        return EmaSmoother(window)
    raise ValueError(f"unknown smoothing {kind!r} (known: median, ema)")


def plain_level(value: float, thresholds: Sequence[float]) -> int:
    """The level whose band holds `value`: i with t[i-1] <= value < t[i]."""
    return bisect.bisect_right(thresholds, value)


def level_with_hysteresis(value: float, current: Optional[int],
                          thresholds: Sequence[float], hysteresis: float) -> int:
    """The new level index for `value`, given the `current` one (None: no level yet).

    See the module docstring for the rule: up when value >= t + h/2, down
    when value < t - h/2, the plain band when there is no current level.

    >>> level_with_hysteresis(10.4, 0, [10, 25], 1.0)   # not far enough past 10
    0
    >>> level_with_hysteresis(10.5, 0, [10, 25], 1.0)
    1
    >>> level_with_hysteresis(9.6, 1, [10, 25], 1.0)    # still in the dead band
    1
    >>> level_with_hysteresis(30, None, [10, 25], 1.0)
    2
    """
    if current is None:
        return plain_level(value, thresholds)
    half = hysteresis / 2.0
    level = min(max(current, 0), len(thresholds))
    while level < len(thresholds) and value >= thresholds[level] + half:
        level += 1
    while level > 0 and value < thresholds[level - 1] - half:
        level -= 1
    return level


def round_count(value: float) -> float:
    """A smoothed count as published: one decimal."""
    return round(value, 1)


class _ZoneState:
    """One zone's smoother, thresholds and current level."""

    def __init__(self, thresholds: Sequence[float], smoother: Smoother):
        self.thresholds = tuple(thresholds)
        self.smoother = smoother
        self.value: Optional[float] = None
        self.level: Optional[int] = None

    def push(self, x: float, hysteresis: float) -> None:
        self.value = self.smoother.push(x)
        self.level = level_with_hysteresis(self.value, self.level, self.thresholds, hysteresis)

    def reset(self) -> None:
        self.smoother.reset()
        self.value = None
        self.level = None


class LevelTracker:
    """Smoothed counts and crowding levels for every zone.

    zones:  the configured zones, in the order sinks show them; a zone's own
            `thresholds` override `levels.thresholds`.
    levels: smoothing, level names, thresholds, hysteresis (people) and
            `stale_after_s` (seconds).

    `observe(counts)` once per counted frame; `update(now, fps, infer_ms)`
    whenever something is to be published. Counts are stale when the last
    observed frame was captured more than `stale_after_s` before `now` (or
    nothing was observed yet): then every level is `unknown` and every count
    None. When counts come back after going stale, smoothing and levels start
    afresh, so counts from before the gap never leak into the new ones; the
    same happens when two observed frames lie more than `stale_after_s` apart.

    Every zone named in the config must be in `counts.zones`.

    cars:      the train's cars in order (default: each zone a car); each
               update carries people per car and the recommended car, picked
               by a `Recommender` with `recommend`'s margin and dwell.

    >>> from crowdsign.config import LevelsConfig, ZoneConfig
    >>> square = ((0, 0), (1, 0), (1, 1), (0, 1))
    >>> t = LevelTracker([ZoneConfig("A", square)], LevelsConfig(window=1))
    >>> t.observe(ZoneCounts(frame=7, timestamp=100.0, total=12, zones={"A": 12}))
    >>> u = t.update(now=100.5, fps=10.0, infer_ms=30.0)
    >>> u.zones["A"], u.levels["A"]
    (12.0, 'medium')
    >>> t.update(now=104.0, fps=0.0, infer_ms=0.0).levels["A"]
    'unknown'
    """

    def __init__(self, zones: Sequence[ZoneConfig], levels: LevelsConfig,
                 cars: Sequence[CarConfig] = (), recommend: Optional[RecommendConfig] = None):
        self._config = levels
        self._cars = [(c.name, tuple(c.zones)) for c in cars] or [(z.name, (z.name,))
                                                                   for z in zones]
        recommend = recommend or RecommendConfig()
        self._recommender = Recommender(recommend.margin, recommend.dwell_s)
        self._zones = {
            z.name: _ZoneState(z.thresholds if z.thresholds is not None else levels.thresholds,
                               make_smoother(levels.smoothing, levels.window))
            for z in zones}
        self._total = make_smoother(levels.smoothing, levels.window)
        self._total_value: Optional[float] = None
        self._last_ts: Optional[float] = None
        self._frame = -1
        self._went_stale = False

    def observe(self, counts: ZoneCounts) -> None:
        """Push one counted frame's counts through each zone's smoother and level."""
        gap = None if self._last_ts is None else counts.timestamp - self._last_ts
        if self._went_stale or gap is None or gap > self._config.stale_after_s:
            self._reset()
        hysteresis = self._config.hysteresis
        for name, zone in self._zones.items():
            zone.push(counts.zones[name], hysteresis)
        self._total_value = self._total.push(counts.total)
        self._last_ts = counts.timestamp
        self._frame = counts.frame

    def is_stale(self, now: float) -> bool:
        """True when nothing was observed yet or the last frame is too old at `now`."""
        return self._last_ts is None or now - self._last_ts > self._config.stale_after_s

    def update(self, now: float, fps: float, infer_ms: float, *, no_data: bool = False) -> Update:
        """What the signs should show at `now` (monotonic seconds).

        `no_data` forces the stale state (the daemon is stopping: the sign must
        not keep showing numbers nobody updates any more).
        """
        if no_data or self.is_stale(now):
            self._went_stale = True
            self._recommender.reset()
            zones = {name: None for name in self._zones}
            cars = car_counts(self._cars, zones)
            return Update(t=now, frame=self._frame, total=None, zones=zones,
                          levels={name: UNKNOWN for name in self._zones},
                          fps=fps, infer_ms=infer_ms,
                          codes={name: NO_DATA_CODE for name in self._zones},
                          cars=cars, car_codes={c: NO_DATA_CODE for c in cars},
                          counted_t=self._last_ts)
        names = self._config.names
        zones = {name: _rounded(z.value) for name, z in self._zones.items()}
        codes = {name: z.level + 1 if z.level is not None else NO_DATA_CODE
                 for name, z in self._zones.items()}
        cars = car_counts(self._cars, zones)
        assert self._last_ts is not None
        return Update(
            t=now, frame=self._frame,
            total=_rounded(self._total_value),
            zones=zones,
            levels={name: names[z.level] if z.level is not None else UNKNOWN
                    for name, z in self._zones.items()},
            fps=fps, infer_ms=infer_ms, codes=codes, cars=cars,
            car_codes={c: max(codes[z] for z in members) for c, members in self._cars},
            recommended=self._recommender.update(cars, now),
            counted_t=self._last_ts,
            valid_until=self._last_ts + self._config.stale_after_s)

    def _reset(self) -> None:
        for zone in self._zones.values():
            zone.reset()
        self._total.reset()
        self._total_value = None
        self._went_stale = False


def _rounded(value: Optional[float]) -> Optional[float]:
    if value is None or math.isnan(value):
        return None
    return round_count(value)
