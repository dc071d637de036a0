"""The config loader and the zone geometry, fuzzed: any input is either a
Config or a ConfigError whose problems are one line each, never another
exception; any polygon a valid config can hold counts without crashing.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdsign.config import (OUTPUT_TYPES, CarConfig, Config, ConfigError, IbisTelegramConfig,
                              LevelsConfig, LoggingConfig, ModelConfig, RecommendConfig,
                              SourceConfig, ZoneConfig, load_config, parse_config)
from crowdsign.zones import ZoneGeometry

WHERE = Path("/etc/crowdsign/crowdsign.toml")
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["replay:/nonexistent", "picamera2", "v4l2:0", "median", "ema",
                     "/dev/ttyUSB0", "loop://", "{zones}\r\n", "{count[left]}", "DS001",
                     "DS021", "DS003a", "max7219", "dummy", "serial", "ibis", "modbus",
                     "led_matrix", "{", "}", "{0}", "{level[x]:>{w}}"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def table_of(cls):
    """A table with (mostly) the keys of `cls`, values of any TOML type."""
    keys = st.sampled_from(field_names(cls) + ["bogus"])
    return st.dictionaries(keys, values, max_size=6)


points = st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=2, max_size=2)
zone_tables = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["left", "centre", "right"]), st.text(max_size=6))},
    optional={"polygon": st.one_of(st.lists(points, max_size=8), values),
              "thresholds": st.one_of(st.lists(st.floats(), max_size=4), values)})
output_tables = st.one_of(*[
    st.builds(lambda t, rest: {**rest, "type": t}, st.just(kind), table_of(cls))
    for kind, cls in OUTPUT_TYPES.items()], table_of(OUTPUT_TYPES["serial"]))
telegram_tables = st.lists(table_of(IbisTelegramConfig), max_size=3)

configs = st.fixed_dictionaries({}, optional={
    "source": st.one_of(table_of(SourceConfig), values),
    "model": table_of(ModelConfig),
    "levels": st.one_of(table_of(LevelsConfig), values),
    "logging": table_of(LoggingConfig),
    "recommend": table_of(RecommendConfig),
    "zones": st.one_of(st.lists(zone_tables, max_size=4), values),
    "cars": st.lists(table_of(CarConfig), max_size=3),
    "outputs": st.one_of(st.lists(output_tables, max_size=3), values),
    "extra": values,
})


def assert_clear(problems: list[str]) -> None:
    assert problems
    for line in problems:
        assert isinstance(line, str) and line.startswith(str(WHERE))
        assert "\n" not in line, line


@FUZZ
@given(configs)
def test_any_config_table_gives_a_config_or_one_line_problems(raw):
    try:
        config = parse_config(raw, WHERE)
    except ConfigError as e:
        assert_clear(e.problems)
        return
    assert isinstance(config, Config)
    ZoneGeometry(config.zone_list())   # what a valid config holds, the daemon can build


@FUZZ
@given(configs, st.data())
def test_telegram_tables_inside_ibis_outputs_give_a_config_or_one_line_problems(raw, data):
    raw = dict(raw)
    raw["outputs"] = [{"type": "ibis", "port": "loop://",
                       "telegrams": data.draw(telegram_tables)}]
    try:
        parse_config(raw, WHERE)
    except ConfigError as e:
        assert_clear(e.problems)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_file_content_gives_a_config_or_one_config_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "crowdsign.toml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="replace")
    else:
        path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError as e:
        assert e.problems and all(line.startswith(str(path)) for line in e.problems)


# --- zone geometry ----------------------------------------------------------------

unit_points = st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
polygons = st.lists(unit_points, min_size=3, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(polygons, min_size=1, max_size=4),
       st.lists(unit_points, max_size=50), st.sampled_from([(1, 1), (3, 5), (8, 8)]))
def test_any_polygons_a_config_accepts_count_points_and_maps_without_crashing(
        shapes, where, map_size):
    """Self-intersecting (bow ties), degenerate (all points on a line, repeated
    points, zero area) or overlapping: each zone counts the points inside it
    by the even-odd rule, and its density mask stays in 0..1."""
    zones = [ZoneConfig(f"z{i}", tuple(tuple(p) for p in poly)) for i, poly in enumerate(shapes)]
    config = parse_config({"zones": [{"name": z.name, "polygon": [list(p) for p in z.polygon]}
                                     for z in zones]}, WHERE)
    geometry = ZoneGeometry(config.zone_list())
    xs = np.array([p[0] for p in where], dtype=np.float64)
    ys = np.array([p[1] for p in where], dtype=np.float64)
    counts = geometry.count_points(xs, ys)
    assert set(counts) == {z.name for z in zones}
    assert all(0 <= n <= len(where) for n in counts.values())
    masks = geometry.masks_for(*map_size)
    assert masks.shape == (len(zones), *map_size)
    assert np.all((masks >= 0) & (masks <= 1))
    shares = geometry.sum_density(np.ones(map_size, dtype=np.float32))
    assert all(math.isfinite(v) and 0 <= v <= map_size[0] * map_size[1] + 1e-3
               for v in shares.values())


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.lists(unit_points, max_size=2),                                     # too few points
    st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(allow_nan=True, allow_infinity=True)), min_size=3, max_size=6)
    .filter(lambda ps: any(not 0 <= c <= 1 for p in ps for c in p)),       # out of frame
    st.lists(st.lists(st.floats(0, 1), max_size=4), min_size=3, max_size=5)
    .filter(lambda ps: any(len(p) != 2 for p in ps))))                    # not [x, y]
def test_empty_short_out_of_frame_or_malformed_polygons_are_one_line_errors(polygon):
    raw = {"zones": [{"name": "platform", "polygon": [list(p) for p in polygon]}]}
    try:
        parse_config(raw, WHERE)
    except ConfigError as e:
        assert_clear(e.problems)
        assert any("polygon" in line for line in e.problems)
    else:
        raise AssertionError(f"accepted {polygon!r}")
