"""The public notice display sinks cycle: when it is due.

Data-protection rules ask for information on the device itself, not only on
a poster at the station entrance: a sign that shows crowding also says, from
time to time, that counting is anonymous. `NoticeCycle` answers one
question, "is the notice on at `now`?", for a period of `every_s` seconds of
which the last `for_s` show the notice. Time is passed in, so tests need no
clock.
"""

from __future__ import annotations


class NoticeCycle:
    """On for the last `for_s` seconds of every `every_s`-second period from `origin`.

    every_s = 0 turns the notice off. The notice comes first after
    every_s - for_s seconds, so a sign that just started shows counts first.

    >>> n = NoticeCycle(every_s=60, for_s=5, origin=100.0)
    >>> [n.active(t) for t in (100.0, 154.9, 155.0, 159.9, 160.0, 215.0)]
    [False, False, True, True, False, True]
    """

    def __init__(self, every_s: float, for_s: float, origin: float):
        if every_s < 0 or (every_s > 0 and not 0 < for_s < every_s):
            raise ValueError("need every_s = 0, or 0 < for_s < every_s")
        self.every_s = every_s
        self.for_s = for_s
        self.origin = origin

    def active(self, now: float) -> bool:
        if self.every_s == 0:
            return False
        return (now - self.origin) % self.every_s >= self.every_s - self.for_s
