"""The least-crowded-car recommendation: margin, dwell, ties, stale data, and
the per-car sums it works on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crowdsign.config import CarConfig, LevelsConfig, RecommendConfig, ZoneConfig
from crowdsign.counting.types import ZoneCounts
from crowdsign.levels import LevelTracker
from crowdsign.recommend import Recommender, car_counts

SQUARE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


def test_car_counts_add_up_each_cars_zones_in_train_order():
    cars = [("front", ["a", "b"]), ("rear", ["c"])]
    assert car_counts(cars, {"a": 1.0, "b": 2.5, "c": 4.0}) == {"front": 3.5, "rear": 4.0}
    assert list(car_counts(cars, {"c": 0.0, "b": 0.0, "a": 0.0})) == ["front", "rear"]


def test_a_car_with_an_unknown_zone_is_unknown():
    assert car_counts([("1", ["a", "b"])], {"a": 1.0, "b": None}) == {"1": None}


def test_no_recommendation_while_no_car_is_ahead_by_the_margin():
    r = Recommender(margin=3.0, dwell_s=0.0)
    assert r.update({"1": 4.0, "2": 2.0, "3": 3.0}, now=0.0) is None
    assert r.update({"1": 5.0, "2": 2.0, "3": 3.0}, now=1.0) == "2"


def test_the_recommendation_holds_for_the_dwell_then_moves_to_a_clearly_emptier_car():
    r = Recommender(margin=2.0, dwell_s=10.0)
    assert r.update({"1": 8.0, "2": 1.0}, now=0.0) == "2"
    assert r.update({"1": 0.0, "2": 9.0}, now=9.9) == "2"          # dwell not over
    assert r.update({"1": 0.0, "2": 9.0}, now=10.0) == "1"
    assert r.update({"1": 9.0, "2": 0.0}, now=15.0) == "1"          # new dwell from 10 s


def test_a_car_less_than_the_margin_emptier_does_not_take_over():
    r = Recommender(margin=2.0, dwell_s=0.0)
    assert r.update({"1": 1.0, "2": 5.0}, now=0.0) == "1"
    assert r.update({"1": 3.0, "2": 1.5}, now=1.0) == "1"           # 1.5 fewer: not enough
    assert r.update({"1": 3.5, "2": 1.5}, now=2.0) == "2"           # 2 fewer: moves


def test_ties_keep_the_current_car_then_prefer_the_first_in_train_order():
    r = Recommender(margin=0.0, dwell_s=0.0)
    assert r.update({"1": 2.0, "2": 2.0, "3": 2.0}, now=0.0) == "1"
    assert r.update({"1": 3.0, "2": 1.0, "3": 1.0}, now=1.0) == "2"
    assert r.update({"1": 1.0, "2": 1.0, "3": 1.0}, now=2.0) == "2"


def test_stale_counts_clear_the_recommendation_and_the_choice_starts_afresh():
    r = Recommender(margin=1.0, dwell_s=100.0)
    assert r.update({"1": 0.0, "2": 5.0}, now=0.0) == "1"
    assert r.update({"1": None, "2": 5.0}, now=1.0) is None
    assert r.update({"1": 5.0, "2": 0.0}, now=2.0) == "2"           # no dwell carried over


counts = st.floats(min_value=0, max_value=60, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(margin=st.floats(0, 5), dwell=st.floats(0, 20),
       steps=st.lists(st.tuples(st.floats(0.1, 5), counts, counts, counts), min_size=1,
                      max_size=40))
def test_every_change_respects_dwell_and_margin(margin, dwell, steps):
    r = Recommender(margin=margin, dwell_s=dwell)
    now, current, since = 0.0, None, None
    for dt, a, b, c in steps:
        now += dt
        cars = {"1": a, "2": b, "3": c}
        got = r.update(cars, now)
        if got is not None:
            assert max(cars.values()) - cars[got] >= margin or got == current
        if current is not None and got != current:
            assert now - since >= dwell, "changed before the dwell was over"
            assert cars[got] <= cars[current] - margin, "changed for less than the margin"
        if got != current:
            since = now
        current = got


def test_the_tracker_publishes_car_counts_codes_and_the_recommendation():
    zones = [ZoneConfig(n, SQUARE) for n in ("a", "b", "c")]
    cars = [CarConfig("1", ("a", "b")), CarConfig("2", ("c",))]
    t = LevelTracker(zones, LevelsConfig(window=1, thresholds=(2.0, 5.0), hysteresis=0.0),
                     cars, RecommendConfig(margin=2.0, dwell_s=5.0))
    t.observe(ZoneCounts(frame=1, timestamp=10.0, total=9, zones={"a": 1, "b": 1, "c": 7}))
    u = t.update(now=10.1, fps=1.0, infer_ms=1.0)
    assert u.codes == {"a": 1, "b": 1, "c": 3}
    assert u.cars == {"1": 2.0, "2": 7.0}
    assert u.car_codes == {"1": 1, "2": 3}
    assert u.recommended == "1"
    assert u.counted_t == 10.0 and u.valid_until == 13.0
    stale = t.update(now=20.0, fps=0.0, infer_ms=0.0)
    assert stale.recommended is None and stale.codes == {"a": 0, "b": 0, "c": 0}
    assert stale.cars == {"1": None, "2": None} and stale.valid_until is None


def test_cars_naming_unknown_or_shared_zones_and_a_negative_margin_are_config_errors(tmp_path):
    import tomllib

    import pytest

    from crowdsign.config import ConfigError, parse_config
    text = """
[[zones]]
name = "a"
polygon = [[0, 0], [1, 0], [1, 1]]
[[cars]]
name = "1"
zones = ["a", "b"]
[[cars]]
name = "1"
zones = ["a"]
[recommend]
margin = -1.0
"""
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), tmp_path / "c.toml")
    where = f"{tmp_path / 'c.toml'}: "
    assert info.value.problems == [
        where + "[[cars]] #1 (1).zones: unknown zone 'b' (zones: a)",
        where + "[[cars]] #2 (1).name: duplicate car name",
        where + "[[cars]] #2 (1).zones: zone 'a' is already in another car",
        where + "[recommend].margin: must be >= 0 people",
    ]
