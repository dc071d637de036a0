"""IBIS (VDV 300): telegrams checked against bytes worked out by hand, the
display character set, config checks, and the sink on a real pseudo-terminal
set to 1200 baud 7E2."""

from __future__ import annotations

import logging
import os
import select
import termios
import time

import pytest

from crowdsign.config import ConfigError, IbisOutputConfig, IbisTelegramConfig, parse_config
from crowdsign.sinks.base import Update
from crowdsign.sinks.ibis import (IbisSink, check_telegram, checksum, encode_update, frame,
                                  ibis_text, record)

LOG = logging.getLogger("crowdsign.test.ibis")


def update(a: float = 12.0, b: float = 2.0, best="B", stale: bool = False) -> Update:
    u = Update(t=1.0, frame=1, total=a + b, zones={"A": a, "B": b},
               levels={"A": "high", "B": "low"}, fps=10.0, infer_ms=20.0,
               codes={"A": 3, "B": 1}, cars={"A": a, "B": b}, car_codes={"A": 3, "B": 1},
               recommended=best, counted_t=time.monotonic(), valid_until=time.monotonic() + 60)
    return u.no_data() if stale else u


# --- telegrams worked out by hand ------------------------------------------------------

def test_ds001_line_number_telegram_matches_the_hand_computed_checksum():
    # l=0x6C 0=0x30 1=0x31 2=0x32 CR=0x0D
    # 0x7F^0x6C=0x13, ^0x30=0x23, ^0x31=0x12, ^0x32=0x20, ^0x0D=0x2D ('-')
    assert frame("l012") == b"l012\r\x2d"


def test_ds003a_destination_text_with_an_umlaut_matches_the_hand_computed_telegram():
    # "Grün" in one 16-character block: ü -> '}', padded with 12 spaces.
    # 0x7F ^ z 0x7A = 0x05, ^ A 0x41 = 0x44, ^ '1' 0x31 = 0x75, ^ G 0x47 = 0x32,
    # ^ r 0x72 = 0x40, ^ } 0x7D = 0x3D, ^ n 0x6E = 0x53; twelve spaces cancel out
    # in pairs; ^ CR 0x0D = 0x5E ('^').
    telegram = frame(record(IbisTelegramConfig(type="DS003a", blocks=1), "Grün"))
    assert telegram == b"zA1Gr}n" + b" " * 12 + b"\r\x5e"


def test_ds021_addressed_text_uses_vdv_hex_digits_for_address_and_blocks():
    # address 12 -> '<' (VDV hex 0-9 : ; < = > ?), 1 block.
    # 0x7F ^ a 0x61 = 0x1E, ^ A 0x41 = 0x5F, ^ < 0x3C = 0x63, ^ '1' 0x31 = 0x52,
    # ^ O 0x4F = 0x1D, ^ K 0x4B = 0x56; 14 spaces cancel; ^ CR 0x0D = 0x5B ('[')
    telegram = frame(record(IbisTelegramConfig(type="DS021", address=12, blocks=1), "OK"))
    assert telegram == b"aA<1OK" + b" " * 14 + b"\r\x5b"


def test_checksum_is_0x7f_xor_every_byte_including_the_cr():
    assert checksum(b"") == 0x7F
    assert checksum(b"\r") == 0x7F ^ 0x0D


def test_umlauts_map_to_the_vdv_300_display_characters():
    assert ibis_text("äöüßÄÖÜ") == "{|}~[\\]"


def test_literal_umlaut_codes_and_non_ascii_text_are_sent_as_lookalikes_and_question_marks():
    assert ibis_text("[A] {b} a|b ~ é\r") == "(A) (b) a/b - ? "


def test_long_text_is_cut_to_its_blocks_and_short_text_padded():
    t = IbisTelegramConfig(type="DS003a", blocks=2)
    assert record(t, "x" * 40) == "zA2" + "x" * 32
    assert record(t, "ab") == "zA2ab" + " " * 30


# --- what is sent per update --------------------------------------------------------------

def ibis_config(port: str = "loop://", **kw) -> IbisOutputConfig:
    kw = {"rate_hz": 50.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2,
          "write_timeout_s": 1.0, **kw}
    return IbisOutputConfig(type="ibis", port=port, **kw)


TELEGRAMS = (IbisTelegramConfig(type="DS021", address=1, blocks=3,
                                template="Wagen {best} ist am leersten", no_data="Keine Daten"),
             IbisTelegramConfig(type="DS001", template="{code[A]}{code[B]}"))


def test_every_telegram_is_sent_per_update_levels_as_digits_and_text_from_the_template():
    out = encode_update(ibis_config(telegrams=TELEGRAMS), update(), notice_on=False)
    text = frame("aA13" + "Wagen B ist am leersten".ljust(48))
    assert out == text + frame("l031")


def test_stale_counts_send_the_no_data_text_and_level_code_zero():
    out = encode_update(ibis_config(telegrams=TELEGRAMS), update(stale=True), notice_on=False)
    assert out == frame("aA13" + "Keine Daten".ljust(48)) + frame("l000")


def test_without_a_no_data_text_the_template_shows_dashes():
    cfg = ibis_config(telegrams=(IbisTelegramConfig(blocks=1, template="A{count[A]:>3}"),))
    assert encode_update(cfg, update(stale=True), False) == frame("zA1" + "A --".ljust(16))


def test_the_notice_replaces_text_telegrams_but_not_level_numbers():
    out = encode_update(ibis_config(telegrams=TELEGRAMS), update(), notice_on=True)
    assert out == frame("aA13" + "Anonymous counting - no images recorded".ljust(48)) \
        + frame("l031")


def test_the_notice_never_hides_the_no_data_state():
    out = encode_update(ibis_config(telegrams=TELEGRAMS), update(stale=True), notice_on=True)
    assert out.startswith(frame("aA13" + "Keine Daten".ljust(48)))


# --- config checks --------------------------------------------------------------------------

ZONES_TOML = """
[[zones]]
name = "A"
polygon = [[0, 0], [0.5, 0], [0.5, 1]]
[[zones]]
name = "B"
polygon = [[0.5, 0], [1, 0], [1, 1]]
"""


def problems_for(outputs_toml: str, tmp_path) -> list[str]:
    import tomllib
    path = tmp_path / "c.toml"
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(ZONES_TOML + outputs_toml), path)
    return info.value.problems


def test_ibis_output_with_nested_telegram_tables_loads(tmp_path):
    import tomllib
    config = parse_config(tomllib.loads(ZONES_TOML + """
[[outputs]]
type = "ibis"
port = "/dev/ttyUSB0"
[[outputs.telegrams]]
type = "DS021"
address = 3
template = "{best}"
[[outputs.telegrams]]
type = "DS001"
template = "{code[A]}{code[B]}"
"""), tmp_path / "c.toml")
    out = config.outputs[0]
    assert (out.baudrate, out.bytesize, out.parity, out.stopbits) == (1200, 7, "E", 2)
    assert [t.type for t in out.telegrams] == ["DS021", "DS001"]
    assert out.telegrams[0].address == 3


BAD_TELEGRAMS = """
[[outputs]]
type = "ibis"
port = "/dev/ttyUSB0"
[[outputs.telegrams]]
type = "DS021"
address = 16
[[outputs.telegrams]]
type = "DS001"
template = "{count[A]}"
[[outputs.telegrams]]
type = "DS003a"
blocks = 1
[[outputs.telegrams]]
type = "DS9"
"""


def test_bad_telegrams_are_reported_naming_output_telegram_and_key(tmp_path):
    problems = problems_for(BAD_TELEGRAMS + 'color = "red"\n', tmp_path)
    where = f"{tmp_path / 'c.toml'}: [[outputs]] #1.telegrams"
    assert problems == [
        f"{where} #4.color: unknown key (known: type, address, blocks, template, no_data)",
    ]
    problems = problems_for(BAD_TELEGRAMS, tmp_path)
    assert problems[0] == f"{where} #1.address: must be 0..15, got 16"
    assert problems[1].startswith(f"{where} #2.template: DS001 sends a number of 1 to 3 digits")
    assert "(set no_data for stale counts)" in problems[1]
    assert problems[2].startswith(f"{where} #3.blocks: the notice has 39 characters")
    assert problems[3] == f"{where} #4.type: must be one of DS001, DS003a, DS021, got 'DS9'"
    assert len(problems) == 4


def test_check_telegram_accepts_a_template_naming_configured_cars():
    t = IbisTelegramConfig(template="{car[front]} {best}")
    assert check_telegram(t, ["A"], ["front"], "") == []
    assert "unknown car 'x'" in check_telegram(IbisTelegramConfig(template="{car[x]}"),
                                               ["A"], ["front"], "")[0][1]


# --- the sink on a pty at 1200 baud 7E2 -------------------------------------------------------

def read_telegrams(fd: int, count: int, timeout: float = 5.0) -> list[bytes]:
    """`count` telegrams (up to and including the checksum after each CR)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = buf.split(b"\r")
        if len(parts) > count and all(len(p) >= 1 for p in parts[1:count + 1]):
            break
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            buf += os.read(fd, 4096)
    out, rest = [], buf
    for _ in range(count):
        head, sep, rest = rest.partition(b"\r")
        if not sep or not rest:
            break
        out.append(head + b"\r" + rest[:1])
        rest = rest[1:]
    return out


def test_sink_sets_the_line_to_7e2_and_sends_checksummed_telegrams(pty_pair):
    master, path = pty_pair
    sink = IbisSink(ibis_config(path, telegrams=(TELEGRAMS[1],), notice_every_s=0), LOG)
    sink.open()
    try:
        sink.publish(update(a=12.0))
        got = read_telegrams(master, 1)
        assert got == [b"l031\r" + bytes([0x7F ^ 0x6C ^ 0x30 ^ 0x33 ^ 0x31 ^ 0x0D])]
        # Linux ptys keep CS8 whatever is asked (a real UART takes CS7), so the
        # line settings are read back from the port rather than from termios.
        port = sink.device.port
        assert (port.baudrate, port.bytesize, port.parity, port.stopbits) == (1200, 7, "E", 2)
        assert termios.tcgetattr(port.fd)[2] & termios.CSTOPB
        assert sink.describe() == f"ibis {path}" and sink.health() == "ok"
    finally:
        sink.close()


def test_counts_that_expire_unrefreshed_are_replaced_by_no_data_on_the_sign(pty_pair):
    """A frame loop that hangs publishes nothing more: the sink must not leave
    the last numbers up once they pass valid_until."""
    master, path = pty_pair
    sink = IbisSink(ibis_config(path, telegrams=(TELEGRAMS[1],), notice_every_s=0), LOG)
    sink.open()
    try:
        now = time.monotonic()
        u = update()
        from dataclasses import replace
        sink.publish(replace(u, counted_t=now, valid_until=now + 0.3))
        assert read_telegrams(master, 1)[0].startswith(b"l031\r")
        assert read_telegrams(master, 1, timeout=2.0)[0].startswith(b"l000\r")
    finally:
        sink.close()


def test_close_sends_the_pending_no_data_state_at_once(pty_pair):
    master, path = pty_pair
    sink = IbisSink(ibis_config(path, telegrams=(TELEGRAMS[1],), rate_hz=0.2,
                                notice_every_s=0), LOG)
    sink.open()
    sink.publish(update())
    assert read_telegrams(master, 1)[0].startswith(b"l031\r")
    sink.publish(update(stale=True))
    sink.close()
    assert read_telegrams(master, 1, timeout=1.0)[0].startswith(b"l000\r")
