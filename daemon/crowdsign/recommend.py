"""Which car to board: people per car, and the least-crowded-car recommendation.

A platform camera counts zones; a train has cars. `car_counts` sums the zones
of each car, in train order. `Recommender` then picks the car a sign points
passengers to, with two brakes so the arrow does not hop between cars every
second on counts that differ by one person:

- margin (people): a car is first recommended only when it holds at least
  `margin` fewer people than the most crowded car (with every car about as
  full as the others there is nothing to gain, and no arrow); and the
  recommendation moves from car A to car B only when B holds at least
  `margin` fewer people than A does now.
- dwell (seconds): once a car is recommended, it stays recommended for at
  least `dwell_s`, whatever the counts do (the passengers who started
  walking towards it should still find the arrow there).

Ties go to the current recommendation, then to the car first in train order.
Stale counts (any car None) clear the recommendation and the state: when data
comes back, the choice starts afresh. Times are passed in (monotonic
seconds); nothing here reads a clock.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence


def car_counts(cars: Sequence[tuple[str, Sequence[str]]],
               zones: Mapping[str, Optional[float]]) -> dict[str, Optional[float]]:
    """People per car, in train order: the sum of each car's zones; None if any is None.

    >>> car_counts([("1", ["a", "b"]), ("2", ["c"])], {"a": 2.0, "b": 3.5, "c": None})
    {'1': 5.5, '2': None}
    """
    out: dict[str, Optional[float]] = {}
    for name, members in cars:
        values = [zones[z] for z in members]
        out[name] = None if any(v is None for v in values) else float(sum(values))
    return out


class Recommender:
    """The least crowded car, with a minimum margin and a minimum dwell.

    margin: people a car must be ahead by (see the module docstring); >= 0.
    dwell_s: seconds a recommendation holds at least; >= 0.

    >>> r = Recommender(margin=2.0, dwell_s=10.0)
    >>> r.update({"1": 5.0, "2": 4.0}, now=0.0) is None     # 1 person is no margin
    True
    >>> r.update({"1": 5.0, "2": 1.0}, now=1.0)
    '2'
    >>> r.update({"1": 0.0, "2": 9.0}, now=5.0)               # held: dwell not over
    '2'
    >>> r.update({"1": 0.0, "2": 9.0}, now=11.0)
    '1'
    """

    def __init__(self, margin: float, dwell_s: float):
        if margin < 0 or dwell_s < 0:
            raise ValueError("margin and dwell_s must be >= 0")
        self.margin = margin
        self.dwell_s = dwell_s
        self.current: Optional[str] = None
        self.since = 0.0

    def update(self, cars: Mapping[str, Optional[float]], now: float) -> Optional[str]:
        """The car to recommend at `now` for these per-car counts (train order)."""
        if not cars or any(v is None for v in cars.values()):
            self.current = None
            return None
        counts: dict[str, float] = {k: float(v) for k, v in cars.items()}  # type: ignore[arg-type]
        order = {name: i for i, name in enumerate(counts)}
        best = min(counts, key=lambda name: (counts[name], name != self.current, order[name]))
        if self.current not in counts:      # first pick (or the car list changed)
            self.current = None
            if max(counts.values()) - counts[best] >= self.margin:
                self.current, self.since = best, now
            return self.current
        if now - self.since < self.dwell_s:
            return self.current
        if best != self.current and counts[best] <= counts[self.current] - self.margin:
            self.current, self.since = best, now
        return self.current

    def reset(self) -> None:
        self.current = None
