"""Every protocol encoder, fuzzed with hypothesis: the serial template renderer,
the serial JSON line, the `--json` stream line, the IBIS telegram encoder, the
Modbus register block and the LED-matrix layout.

Two properties each:
- any input (template, telegram, update, however odd: huge, infinite or NaN
  counts, names in any script) gives bytes or a clear error
  (TemplateError / ValueError with a one-line message), never another exception;
- what `crowdsign check` accepts (check_template / check_telegram) encodes
  every update the daemon can make for that config without any error, and
  the bytes obey the protocol (ASCII; IBIS 7-bit with CR and checksum; Modbus
  16-bit registers; JSON that a strict parser reads).
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdsign.config import (IbisOutputConfig, IbisTelegramConfig, LedMatrixOutputConfig,
                              SerialOutputConfig)
from crowdsign.sinks.base import Update
from crowdsign.sinks.ibis import check_telegram, checksum, encode_update
from crowdsign.sinks.json_stream import update_json_line
from crowdsign.sinks.led_matrix import render_layout
from crowdsign.sinks.modbus import REGISTERS, register_block
from crowdsign.sinks.serial_line import encode_line
from crowdsign.sinks.template import TemplateError, check_template, render_template

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = ["left", "centre", "right"]
CARS = ["1", "2"]
LEVELS = ["low", "medium", "high"]

any_count = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                      st.integers(-10**30, 10**30).map(float))
real_count = st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False))
# Names as a config can hold them at most: printable (zone names are letters,
# digits, - and _; car names printable ASCII), here any printable text.
any_name = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                   min_size=1, max_size=10)


@st.composite
def updates(draw, count=any_count, zones=None, cars=None, realistic=False):
    """An Update; `realistic` ones are what LevelTracker makes: finite counts >= 0,
    levels from the configured names, codes 0..len(names)."""
    zones = zones or draw(st.lists(any_name, min_size=1, max_size=5, unique=True))
    cars = cars or zones
    stale = draw(st.booleans())
    level = st.sampled_from(LEVELS) if realistic else st.text(max_size=8)
    code = st.integers(1, len(LEVELS)) if realistic else st.integers(-2**31, 2**31)
    update = Update(
        t=draw(st.floats(0, 1e9)) if realistic else draw(st.floats()),
        frame=draw(st.integers(-1, 2**40)),
        total=draw(count), zones={z: draw(count) for z in zones},
        levels={z: draw(level) for z in zones}, fps=draw(st.floats(0, 100)),
        infer_ms=draw(st.floats(0, 1e4)), codes={z: draw(code) for z in zones},
        cars={c: draw(count) for c in cars}, car_codes={c: draw(code) for c in cars},
        recommended=draw(st.one_of(st.none(), st.sampled_from(cars))),
        counted_t=draw(st.one_of(st.none(), st.floats(0, 1e9))),
        valid_until=draw(st.one_of(st.none(), st.floats(0, 1e9))))
    if realistic and (stale or update.total is None):
        return update.no_data()
    return update


field = st.sampled_from(["{total}", "{zones}", "{levels}", "{best}", "{count[left]}",
                         "{level[centre]}", "{code[right]}", "{car[1]}", "{count[nowhere]}",
                         "{}", "{0}", "{total!r}", "{zones.x}"])
spec = st.one_of(st.just(""), st.from_regex(r":[<>=^]?[+ -]?0?[0-9]{0,3}(\.[0-9])?[dfgs%x]?",
                                            fullmatch=True))
templates = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=6),
                       st.builds(lambda f, s: f[:-1] + s + "}" if f != "{}" else f, field, spec)),
             max_size=6).map("".join))


def clear(e: Exception) -> bool:
    return isinstance(e, (TemplateError, ValueError)) and "\n" not in str(e) and str(e) != ""


@FUZZ
@given(templates, updates())
def test_template_renderer_gives_text_or_a_clear_template_error(template, update):
    try:
        text = render_template(template, update)
    except TemplateError as e:
        assert clear(e), repr(e)
        return
    assert isinstance(text, str)


@FUZZ
@given(templates, st.data())
def test_a_template_check_accepts_renders_every_update_of_its_zones_as_ascii(template, data):
    if check_template(template, ZONES, CARS) is not None:
        return
    update = data.draw(updates(count=real_count, zones=ZONES, cars=CARS, realistic=True))
    line = encode_line(SerialOutputConfig("serial", "loop://", template=template), update)
    assert all(b < 128 for b in line)


def strict_json(text: str):
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=no_constants)


@FUZZ
@given(updates())
def test_json_lines_are_strict_json_for_any_update(update):
    record = strict_json(update_json_line(update))
    assert set(record) >= {"t", "frame", "total", "zones", "levels", "fps", "infer_ms"}
    line = encode_line(SerialOutputConfig("serial", "loop://", format="json"), update)
    assert line.endswith(b"\n") and all(b < 128 for b in line)
    strict_json(line.decode("ascii"))


telegrams = st.builds(
    IbisTelegramConfig, type=st.sampled_from(["DS001", "DS003a", "DS021", "DS999"]),
    address=st.integers(-2, 17), blocks=st.integers(-1, 16),
    template=st.one_of(templates, st.sampled_from(["{code[left]}", "{code[left]}{code[right]}",
                                                   "{levels}", "{best}"])),
    no_data=st.one_of(st.just(""), st.text(max_size=20), st.just("0")))


@FUZZ
@given(st.lists(telegrams, min_size=1, max_size=3), updates(), st.booleans())
def test_ibis_encoder_gives_telegrams_or_a_clear_error(tels, update, notice_on):
    config = IbisOutputConfig("ibis", "loop://", telegrams=tuple(tels))
    try:
        encode_update(config, update, notice_on)
    except (TemplateError, ValueError) as e:
        assert clear(e), repr(e)


@FUZZ
@given(st.lists(telegrams, min_size=1, max_size=3), st.data(), st.booleans())
def test_ibis_telegrams_the_check_accepts_frame_every_update_with_cr_and_checksum(
        tels, data, notice_on):
    config = IbisOutputConfig("ibis", "loop://", telegrams=tuple(tels))
    if any(check_telegram(t, ZONES, CARS, config.notice) for t in tels):
        return
    update = data.draw(updates(count=real_count, zones=ZONES, cars=CARS, realistic=True))
    sent = encode_update(config, update, notice_on)
    assert all(b < 128 for b in sent[:-1] or b"")
    # split into telegrams: each is record + CR + checksum of record and CR
    rest, frames = sent, 0
    while rest:
        end = rest.index(b"\r")
        body, check, rest = rest[:end + 1], rest[end + 1], rest[end + 2:]
        assert checksum(body) == check and all(b < 128 for b in body)
        frames += 1
    assert frames == len(tels)


@FUZZ
@given(st.one_of(st.none(), updates()), st.floats(0, 1e9), st.integers(0, 2**20))
def test_modbus_register_block_is_16_bit_registers_for_any_update(update, now, beats):
    regs = register_block(update, now, beats)
    assert len(regs) == REGISTERS
    assert all(isinstance(r, int) and 0 <= r <= 0xFFFF for r in regs)


@settings(max_examples=100, deadline=None)
@given(updates(count=real_count, zones=ZONES, cars=CARS, realistic=True),
       st.sampled_from(["bars", "numbers"]), st.sampled_from([(32, 8), (64, 16), (8, 8)]))
def test_led_matrix_layout_draws_any_update_within_the_matrix(update, layout, size):
    config = LedMatrixOutputConfig("led_matrix", device="dummy", width=size[0],
                                   height=size[1], cascaded=size[0] * size[1] // 64,
                                   layout=layout)
    image = render_layout(update, config)
    assert image.size == size


def test_non_finite_counts_never_reach_a_sign_as_numbers():
    odd = Update(t=math.inf, frame=3, total=math.nan, zones={"a": math.inf}, levels={"a": "x"},
                 fps=math.nan, infer_ms=0.0, codes={"a": 1}, cars={"a": -math.inf})
    assert strict_json(update_json_line(odd))["total"] is None
    regs = register_block(odd, 0.0, 1)
    assert regs[4] == 0xFFFF
