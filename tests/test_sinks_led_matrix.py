"""The LED matrix sink: layouts drawn on luma's dummy device, lit pixels
asserted, a PNG of each layout kept under artifacts/ (gitignored)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from crowdsign.config import LedMatrixOutputConfig
from crowdsign.sinks.base import Update
from crowdsign.sinks.factory import check_outputs, make_sinks
from crowdsign.sinks.led_matrix import (LedMatrixSink, lit, notice_frames, render_layout,
                                        slots)

LOG = logging.getLogger("crowdsign.test.led")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "led_matrix"


def update(best="1") -> Update:
    now = time.monotonic()
    return Update(t=now, frame=1, total=9.0, zones={"a": 1.0, "b": 3.0, "c": 5.0},
                  levels={"a": "low", "b": "medium", "c": "high"}, fps=10.0, infer_ms=20.0,
                  codes={"a": 1, "b": 2, "c": 3}, cars={"1": 1.0, "2": 3.0, "3": 5.0},
                  car_codes={"1": 1, "2": 2, "3": 3}, recommended=best, counted_t=now,
                  valid_until=now + 60)


def led_config(**kw) -> LedMatrixOutputConfig:
    kw = {"device": "dummy", "rate_hz": 50.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2,
          "notice_every_s": 0.0, **kw}
    return LedMatrixOutputConfig(type="led_matrix", **kw)


def keep(image: Image.Image, name: str) -> None:
    """Save the layout, scaled up, as a test artifact for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w, h = image.size
    image.convert("L").resize((w * 10, h * 10), Image.NEAREST).save(ARTIFACTS / f"{name}.png")


@pytest.fixture
def sink():
    made = []

    def make(config):
        s = LedMatrixSink(config, LOG)
        made.append(s)
        s.open()
        return s

    yield make
    for s in made:
        s.close()


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_three_cars_get_three_equal_slots_centred():
    assert slots(32, 3) == [(1, 10), (11, 10), (21, 10)]
    assert slots(32, 4) == [(0, 8), (8, 8), (16, 8), (24, 8)]


def test_bars_light_one_row_per_level_and_the_arrow_marks_the_least_crowded_car(sink):
    s = sink(led_config(layout="bars"))
    s.publish(update(best="1"))
    assert wait_for(lambda: s.device.image is not None)
    image = s.device.image
    keep(image, "bars")
    pixels = lit(image)
    bar = lambda x0, rows: {(x, y) for x in range(x0, x0 + 9) for y in range(8 - rows, 8)}
    arrow = {(x, 0) for x in range(3, 8)} | {(x, 1) for x in range(4, 7)} | {(5, 2)}
    assert pixels == bar(1, 1) | bar(11, 2) | bar(21, 3) | arrow
    assert s.device._luma.image.size == (32, 8)          # what luma's dummy device holds


def test_numbers_show_people_per_car_below_the_arrow():
    image = render_layout(update(best="3"), led_config(layout="numbers"))
    keep(image, "numbers")
    pixels = lit(image)
    assert {(x, y) for x, y in pixels if y < 3} == \
        {(x, 0) for x in range(23, 28)} | {(x, 1) for x in range(24, 27)} | {(25, 2)}
    for x0, w in slots(32, 3):          # each car has a digit, on the bottom five rows
        assert any(x0 <= x < x0 + w and y >= 3 for x, y in pixels)
    assert all(y >= 3 for x, y in pixels if not (23 <= x < 28 and y < 3))


def test_no_recommendation_no_arrow():
    pixels = lit(render_layout(update(best=None), led_config(layout="bars")))
    assert all(y >= 5 for _, y in pixels)


def test_no_data_shows_the_dashes_centred_and_nothing_else():
    image = render_layout(update().no_data(), led_config())
    keep(image, "no_data")
    pixels = lit(image)
    assert pixels and {y for _, y in pixels} == {4}               # one row of dash segments
    xs = sorted(x for x, _ in pixels)
    assert abs((xs[0] + xs[-1]) / 2 - 15.5) <= 1.5
    assert lit(render_layout(update().no_data(), led_config(no_data_text=""))) == set()


def test_notice_scrolls_in_from_the_right_within_its_time():
    frames = notice_frames("Anonymous counting - no images recorded", (32, 8), 24.0, 15.0)
    assert lit(frames[0][0]) == set()                              # starts off-screen
    assert all(hold == pytest.approx(1 / 24) for _, hold in frames)
    assert len(frames) <= 15 * 24 + 1
    middle = frames[len(frames) // 2][0]
    keep(middle, "notice")
    assert len(lit(middle)) > 20


def test_sink_scrolls_the_notice_once_per_period_then_returns_to_the_layout(sink):
    s = sink(led_config(notice_every_s=2.0, notice_for_s=1.9, scroll_px_s=400.0))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and s.device.shown <= 30:
        s.publish(update())
        time.sleep(0.02)
    assert s.device.shown > 30                   # scroll frames went by
    assert wait_for(lambda: lit(s.device.image) == lit(render_layout(update(), s.config)))


def test_capture_png_lets_a_bench_see_the_dummy_display(sink, tmp_path):
    png = tmp_path / "led.png"
    s = sink(led_config(capture_png=str(png)))
    s.publish(update())
    assert wait_for(png.exists)
    assert lit(Image.open(png)) == lit(render_layout(update(), s.config))


def test_close_leaves_the_no_data_state_even_mid_notice(sink):
    s = LedMatrixSink(led_config(notice_every_s=2.0, notice_for_s=1.9, scroll_px_s=10.0), LOG)
    s.open()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and s.device.shown < 3:   # a slow scroll is under way
        s.publish(update())
        time.sleep(0.02)
    s.publish(update().no_data())
    start = time.monotonic()
    s.close()
    assert time.monotonic() - start < 1.0
    assert lit(s.device.image) == lit(render_layout(update().no_data(), s.config))


def test_expired_counts_turn_into_no_data_without_a_new_update(sink):
    s = sink(led_config())
    now = time.monotonic()
    s.publish(replace(update(), valid_until=now + 0.2))
    assert wait_for(lambda: s.device.image is not None)
    assert wait_for(lambda: lit(s.device.image) == lit(render_layout(update().no_data(),
                                                                      s.config)), 3.0)


def test_max7219_without_spi_is_down_and_retried_and_check_names_the_device(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    config = led_config(device="max7219", spi_port=9, spi_device=9)
    [s] = make_sinks((config,), LOG)
    s.open()
    try:
        assert wait_for(lambda: any("cannot be opened" in r.getMessage() for r in caplog.records))
        assert s.health() == "down" and s.running
        s.publish(update())                      # never blocks
    finally:
        s.close()
    assert check_outputs((config,))[0].startswith(
        "[[outputs]] #1.spi_port: /dev/spidev9.9: no such device")
    assert check_outputs((led_config(),)) == []


def test_led_config_errors_name_the_key_and_capture_png_is_for_the_dummy_only(tmp_path):
    import tomllib

    from crowdsign.config import ConfigError, parse_config
    text = """
[[outputs]]
type = "led_matrix"
device = "max7219"
cascaded = 3
width = 16
layout = "pie"
capture_png = "led.png"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), tmp_path / "c.toml")
    key = f"{tmp_path / 'c.toml'}: [[outputs]] #1"
    assert info.value.problems == [
        f"{key}.width/height: 16x8 needs 2 modules, cascaded is 3",
        f"{key}.layout: must be bars or numbers, got 'pie'",
        f"{key}.capture_png: only for device = \"dummy\" (bench and tests)",
    ]
    ok = parse_config(tomllib.loads('[[outputs]]\ntype = "led_matrix"\ndevice = "dummy"\n'
                                    'capture_png = "led.png"\n'), tmp_path / "c.toml")
    assert ok.outputs[0].capture_png == str(tmp_path / "led.png")     # relative to the file
