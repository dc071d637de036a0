"""Smoothing, levels with hysteresis, and the per-zone tracker with staleness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crowdsign.config import LevelsConfig, ZoneConfig
from crowdsign.counting.types import ZoneCounts
from crowdsign.levels import (
    UNKNOWN,
    EmaSmoother,
    LevelTracker,
    MedianSmoother,
    level_with_hysteresis,
    make_smoother,
    plain_level,
)

SQUARE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
THRESHOLDS = (10.0, 25.0)


# --- smoothers ---------------------------------------------------------------

def test_median_ignores_a_single_frame_miscount():
    m = MedianSmoother(5)
    out = [m.push(x) for x in (12, 12, 13, 60, 12, 13)]
    assert out == [12, 12, 12, 12.5, 12, 13]


def test_median_uses_only_the_last_window_values():
    m = MedianSmoother(3)
    for x in (100, 100, 100, 1, 2, 3):
        last = m.push(x)
    assert last == 2


def test_median_reset_forgets_the_past():
    m = MedianSmoother(5)
    for x in (50, 50, 50, 50):
        m.push(x)
    m.reset()
    assert m.push(3) == 3


def test_ema_takes_first_value_then_moves_by_alpha():
    e = EmaSmoother(3)                      # alpha = 2 / 4
    assert e.alpha == pytest.approx(0.5)
    assert e.push(10) == 10
    assert e.push(20) == pytest.approx(15)
    assert e.push(20) == pytest.approx(17.5)


def test_ema_reset_starts_from_the_next_value():
    e = EmaSmoother(9)
    for _ in range(20):
        e.push(40)
    e.reset()
    assert e.push(2) == 2


def test_window_one_smoothers_pass_values_through():
    for kind in ("median", "ema"):
        s = make_smoother(kind, 1)
        assert [s.push(x) for x in (3, 9, 1)] == [3, 9, 1]


def test_make_smoother_rejects_unknown_kind_and_bad_window():
    with pytest.raises(ValueError, match="unknown smoothing"):
        make_smoother("mean", 3)
    with pytest.raises(ValueError):
        MedianSmoother(0)
    with pytest.raises(ValueError):
        EmaSmoother(0)


# --- levels with hysteresis ----------------------------------------------------

@pytest.mark.parametrize("start", [9.7, 10.3])
def test_value_oscillating_around_boundary_within_hysteresis_never_changes_level(start):
    level = level_with_hysteresis(start, None, THRESHOLDS, 1.0)
    first = level
    for i in range(200):
        value = 10.0 + (0.49 if i % 2 else -0.5)   # inside [t - h/2, t + h/2)
        level = level_with_hysteresis(value, level, THRESHOLDS, 1.0)
        assert level == first


def test_a_step_across_a_boundary_changes_level_once():
    level = level_with_hysteresis(5, None, THRESHOLDS, 2.0)
    changes = 0
    for value in [5] * 10 + [15] * 10:
        new = level_with_hysteresis(value, level, THRESHOLDS, 2.0)
        changes += new != level
        level = new
    assert (level, changes) == (1, 1)


def test_up_needs_half_hysteresis_past_the_boundary_and_down_half_below():
    assert level_with_hysteresis(10.9, 0, THRESHOLDS, 2.0) == 0
    assert level_with_hysteresis(11.0, 0, THRESHOLDS, 2.0) == 1
    assert level_with_hysteresis(9.0, 1, THRESHOLDS, 2.0) == 1
    assert level_with_hysteresis(8.99, 1, THRESHOLDS, 2.0) == 0


def test_a_jump_crosses_several_levels_at_once():
    assert level_with_hysteresis(40, 0, THRESHOLDS, 1.0) == 2
    assert level_with_hysteresis(0, 2, THRESHOLDS, 1.0) == 0


def test_no_current_level_gives_the_plain_band():
    assert [level_with_hysteresis(v, None, THRESHOLDS, 4.0) for v in (0, 9.9, 10, 24.9, 25, 99)] \
        == [0, 0, 1, 1, 2, 2]


def test_zero_hysteresis_is_the_plain_band():
    for v in (0, 9.99, 10, 17, 25, 30):
        for current in (0, 1, 2):
            assert level_with_hysteresis(v, current, THRESHOLDS, 0.0) == plain_level(v, THRESHOLDS)


values = st.floats(min_value=0, max_value=60, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(seq=st.lists(values, min_size=2, max_size=60),
       h=st.floats(min_value=0.1, max_value=8, allow_nan=False),
       thresholds=st.lists(st.floats(min_value=0, max_value=50, allow_nan=False),
                           min_size=1, max_size=4, unique=True).map(sorted))
def test_property_level_reversal_needs_the_value_to_move_by_hysteresis(seq, h, thresholds):
    """Between a change up and the next change down (or down, then up), the
    value moved by more than h: noise smaller than h cannot make a sign flap."""
    level = level_with_hysteresis(seq[0], None, thresholds, h)
    last_change = None          # (direction, value)
    for v in seq[1:]:
        new = level_with_hysteresis(v, level, thresholds, h)
        if new != level:
            direction = 1 if new > level else -1
            if last_change and last_change[0] != direction:
                assert abs(v - last_change[1]) > h
            last_change = (direction, v)
        level = new


@settings(max_examples=200, deadline=None)
@given(v=values, h=st.floats(min_value=0, max_value=8, allow_nan=False),
       current=st.integers(min_value=0, max_value=2))
def test_property_result_is_never_more_than_half_hysteresis_off_its_band(v, h, current):
    level = level_with_hysteresis(v, current, THRESHOLDS, h)
    bounds = (float("-inf"),) + THRESHOLDS + (float("inf"),)
    assert bounds[level] - h / 2 <= v < bounds[level + 1] + h / 2


# --- LevelTracker --------------------------------------------------------------

def counts(t, a, b=0.0, frame=0):
    return ZoneCounts(frame=frame, timestamp=t, total=a + b, zones={"A": a, "B": b})


def tracker(**levels):
    zones = [ZoneConfig("A", SQUARE), ZoneConfig("B", SQUARE, thresholds=(2.0, 4.0))]
    return LevelTracker(zones, LevelsConfig(**{"window": 3, "stale_after_s": 3.0, **levels}))


def test_nothing_observed_yet_is_unknown_with_no_counts():
    u = tracker().update(now=50.0, fps=0.0, infer_ms=0.0)
    assert u.frame == -1
    assert u.total is None and u.stale
    assert u.zones == {"A": None, "B": None}
    assert u.levels == {"A": UNKNOWN, "B": UNKNOWN}


def test_fresh_counts_give_smoothed_rounded_counts_and_level_names():
    t = tracker()
    for i, (a, b) in enumerate([(11.0, 1.0), (12.34, 5.0), (13.0, 5.0)]):
        t.observe(counts(100.0 + i * 0.1, a, b, frame=i))
    u = t.update(now=100.5, fps=9.5, infer_ms=31.0)
    assert u.frame == 2
    assert u.zones == {"A": 12.3, "B": 5.0}
    assert u.total == 17.3
    assert u.levels == {"A": "medium", "B": "high"}   # B uses its own thresholds
    assert (u.fps, u.infer_ms, u.t) == (9.5, 31.0, 100.5)


def test_counts_older_than_stale_after_are_unknown():
    t = tracker()
    t.observe(counts(100.0, 30.0))
    assert t.update(now=103.0, fps=0, infer_ms=0).levels["A"] == "high"
    u = t.update(now=103.01, fps=0, infer_ms=0)
    assert u.levels == {"A": UNKNOWN, "B": UNKNOWN}
    assert u.zones == {"A": None, "B": None} and u.total is None


def test_recovery_after_stale_restarts_smoothing_without_old_counts():
    t = tracker(window=5)
    for i in range(5):
        t.observe(counts(100.0 + i * 0.1, 40.0))
    assert t.update(now=104.0, fps=0, infer_ms=0).stale
    t.observe(counts(104.5, 2.0))              # a gap of 4 s from the last frame
    u = t.update(now=104.6, fps=0, infer_ms=0)
    assert u.zones["A"] == 2.0                 # not the median of 40s and one 2
    assert u.levels["A"] == "low"              # plain band, no leftover level


def test_reported_stale_then_late_frame_still_restarts_smoothing():
    """A frame captured before the update that reported stale data (slow
    inference) arrives afterwards: the sign said unknown, so start afresh."""
    t = tracker(window=5)
    for i in range(3):
        t.observe(counts(100.0 + i, 40.0))
    assert t.update(now=105.1, fps=0, infer_ms=0).stale
    t.observe(counts(104.9, 1.0))
    assert t.update(now=105.2, fps=0, infer_ms=0).zones["A"] == 1.0


def test_tracker_applies_hysteresis_to_smoothed_counts():
    t = tracker(window=1, hysteresis=2.0)
    levels = []
    for i, a in enumerate([12, 9.5, 10.5, 9.2, 10.8, 9.1, 8.9]):
        t.observe(counts(100 + i * 0.1, a))
        levels.append(t.update(now=100 + i * 0.1, fps=0, infer_ms=0).levels["A"])
    assert levels == ["medium"] * 6 + ["low"]


def test_ema_tracker_smooths_a_step():
    t = tracker(smoothing="ema", window=3)
    t.observe(counts(100.0, 0.0))
    t.observe(counts(100.1, 20.0))
    assert t.update(now=100.2, fps=0, infer_ms=0).zones["A"] == 10.0
