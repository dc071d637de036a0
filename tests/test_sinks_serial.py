"""The serial line sink against real ports: loop://, a pty pair, and socat.

Everything here talks to a real tty or pyserial URL handler; nothing is mocked.
Waits poll with a deadline; no test sleeps for long fixed times.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import time
from typing import Optional

import pytest

from crowdsign.config import SerialOutputConfig
from crowdsign.sinks.base import Update
from crowdsign.sinks.factory import check_outputs, make_sinks
from crowdsign.sinks.serial_line import SerialLineSink
from shared_data import require_tool

LOG = logging.getLogger("crowdsign.test.serial")


def update(n: float, frame: int = 1, stale: bool = False) -> Update:
    if stale:
        return Update(t=100.0 + frame, frame=frame, total=None, zones={"A": None, "B": None},
                      levels={"A": "unknown", "B": "unknown"}, fps=0.0, infer_ms=0.0)
    return Update(t=100.0 + frame, frame=frame, total=n + 1.0, zones={"A": n, "B": 1.0},
                  levels={"A": "high" if n > 10 else "low", "B": "low"}, fps=10.0, infer_ms=30.0)


def serial_config(port: str, **kw) -> SerialOutputConfig:
    kw = {"rate_hz": 50.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2,
          "write_timeout_s": 0.5, **kw}
    return SerialOutputConfig(type="serial", port=port, **kw)


def wait_for(cond, timeout: float = 5.0, poll: float = 0.01, also=None) -> bool:
    """Poll `cond()` until true or the deadline; `also()` is called each round."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if also is not None:
            also()
        if cond():
            return True
        time.sleep(poll)
    return cond()


class LineReader:
    """Lines from a tty file descriptor, each read with a deadline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def readline(self, timeout: float = 5.0) -> Optional[bytes]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:             # EIO: the other side is closed
                    chunk = b""
                if not chunk:
                    time.sleep(0.01)
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def lines_within(self, seconds: float) -> list[bytes]:
        """Every line that arrives within `seconds` from now."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            line = self.readline(left)
            if line is None:
                break
            out.append(line)
        return out


@pytest.fixture
def sinks():
    """Builds sinks and closes them at the end of the test, however it ends."""
    made: list[SerialLineSink] = []

    def make(config: SerialOutputConfig) -> SerialLineSink:
        sink = SerialLineSink(config, LOG)
        made.append(sink)
        sink.open()
        return sink

    yield make
    for sink in made:
        sink.close()


def log_lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == level and r.name == LOG.name]


# --- formats, over loop:// and a pty -----------------------------------------------

def test_loop_url_gets_one_template_line_per_update(sinks):
    sink = sinks(serial_config("loop://", template="{zones}|{levels}\r\n"))
    assert wait_for(lambda: sink.device.port is not None)
    port = sink.device.port
    port.timeout = 5
    sink.publish(update(12.4))
    assert port.read_until(b"\r\n") == b"A=12;B=1|A=high;B=low\r\n"
    sink.publish(update(3.0, stale=True))
    assert port.read_until(b"\r\n") == b"A=--;B=--|A=unknown;B=unknown\r\n"
    assert sink.health() == "ok"


def test_pty_master_reads_the_lines_written_to_the_slave_path(pty_pair, sinks):
    master, path = pty_pair
    sink = sinks(serial_config(path, template="{count[A]:>3} {level[A]}\r\n"))
    reader = LineReader(master)
    sink.publish(update(12.0, frame=1))
    assert reader.readline() == b" 12 high\r\n"
    sink.publish(update(4.0, frame=2))
    assert reader.readline() == b"  4 low\r\n"
    assert wait_for(lambda: sink.health() == "ok" and sink.writes == 2)
    assert sink.describe() == f"serial {path}"


def test_json_format_writes_one_compact_object_per_line(pty_pair, sinks):
    master, path = pty_pair
    sink = sinks(serial_config(path, format="json"))
    sink.publish(update(12.4, frame=7))
    line = LineReader(master).readline()
    assert line.endswith(b"}\n") and b" " not in line
    assert json.loads(line) == {"t": 107.0, "frame": 7, "total": 13.4,
                                "zones": {"A": 12.4, "B": 1.0},
                                "levels": {"A": "high", "B": "low"}}


def test_non_ascii_template_text_is_sent_as_question_marks(pty_pair, sinks):
    master, path = pty_pair
    sink = sinks(serial_config(path, template="Wagen {count[A]} \u00fcberf\u00fcllt\n"))
    sink.publish(update(30.0))
    assert LineReader(master).readline() == b"Wagen 30 ?berf?llt\n"


# --- the queue of depth one and the rate limit ------------------------------------

def test_newest_update_wins_when_publishing_faster_than_the_rate(pty_pair, sinks):
    master, path = pty_pair
    sink = sinks(serial_config(path, rate_hz=2.0, template="{count[A]}\n"))
    reader = LineReader(master)
    sink.publish(update(1.0))
    assert reader.readline() == b"1\n"          # first write goes out at once
    for n in range(2, 51):
        sink.publish(update(float(n)))           # all inside the 0.5 s interval
    assert reader.lines_within(1.2) == [b"50\n"]


def test_rate_limit_caps_lines_and_still_writes_the_last_update(pty_pair, sinks):
    master, path = pty_pair
    sink = sinks(serial_config(path, rate_hz=5.0, template="{count[A]}\n"))
    reader = LineReader(master)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < 0.6:
        n += 1
        sink.publish(update(float(n)))
        time.sleep(0.01)
    lines = reader.lines_within(0.5)
    assert 2 <= len(lines) <= 5                  # 5 Hz over 0.6 s: 4, give or take one
    assert lines[-1] == f"{n}\n".encode()


def test_close_writes_the_last_pending_update_without_waiting_for_the_rate(pty_pair):
    """On shutdown the supervisor publishes "no data" and closes at once: the
    sign must get it, not keep showing the last count."""
    master, path = pty_pair
    sink = SerialLineSink(serial_config(path, rate_hz=0.2, template="{count[A]}\n"), LOG)
    sink.open()
    reader = LineReader(master)
    sink.publish(update(7.0))
    assert reader.readline() == b"7\n"
    sink.publish(update(0.0, stale=True))        # next write slot only in 5 s
    sink.close()
    assert not sink.running
    assert reader.readline(timeout=1.0) == b"--\n"


# --- lost and found ------------------------------------------------------------------

def test_missing_device_is_down_and_opens_once_it_appears(tmp_path, pty_pair, sinks, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    master, slave_path = pty_pair
    path = tmp_path / "ttyLATE"
    sink = sinks(serial_config(str(path), template="{count[A]}\n"))
    sink.publish(update(5.0))
    assert wait_for(lambda: any("cannot be opened" in m for m in log_lines(caplog, logging.WARNING)))
    assert sink.health() == "down" and sink.running
    assert wait_for(lambda: any("still down" in m for m in log_lines(caplog, logging.DEBUG)))
    os.symlink(slave_path, path)                 # the adapter is plugged in
    assert LineReader(master).readline() == b"5\n"
    assert wait_for(lambda: sink.health() == "ok")
    assert log_lines(caplog, logging.WARNING) == [
        f"serial {path} cannot be opened: [Errno 2] No such file or directory; retrying"]
    assert log_lines(caplog, logging.INFO) == [f"serial {path} back"]


class Socat:
    """A socat-linked pty pair: the sink's DISPLAY end and the test's HOST end."""

    def __init__(self, directory):
        self.display = directory / "ttyDISPLAY"
        self.host = directory / "ttyHOST"
        self.proc: Optional[subprocess.Popen] = None
        self.fd: Optional[int] = None

    def start(self) -> LineReader:
        self.proc = subprocess.Popen(
            ["socat", "-d", "-d", f"pty,raw,echo=0,link={self.display}",
             f"pty,raw,echo=0,link={self.host}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: self.display.exists() and self.host.exists()), "socat did not start"
        self.fd = os.open(self.host, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return LineReader(self.fd)

    def stop(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # socat removes its links on TERM
            self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture
def socat(tmp_path):
    require_tool("socat", "socat")
    s = Socat(tmp_path)
    yield s
    s.stop()


def test_far_end_closed_goes_down_and_comes_back_when_it_returns(socat, sinks, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    reader = socat.start()
    sink = sinks(serial_config(str(socat.display), template="{count[A]}\r\n"))
    sink.publish(update(1.0))
    assert reader.readline() == b"1\r\n"

    socat.stop()                                  # far end closed, device nodes gone
    assert not socat.display.exists()
    published = []

    def publish_one():
        sink.publish(update(2.0))                 # returns at once whatever the port does
        published.append(True)

    assert wait_for(lambda: sink.health() == "down", also=publish_one)
    assert published and sink.running

    reader = socat.start()                        # same links, new ptys
    line = None

    def read_some():
        nonlocal line
        sink.publish(update(3.0))
        line = line or reader.readline(timeout=0.05)

    assert wait_for(lambda: line is not None, also=read_some), "no line after socat came back"
    assert line == b"3\r\n"
    assert wait_for(lambda: sink.health() == "ok")
    warnings = log_lines(caplog, logging.WARNING)
    assert warnings == [f"serial {socat.display} lost: [Errno 5] Input/output error; retrying"]
    assert log_lines(caplog, logging.INFO) == [f"serial {socat.display} back"]


def test_stuck_device_times_out_goes_down_and_close_still_returns(pty_pair, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    master, path = pty_pair                       # nobody reads the master: the pty fills up
    sink = SerialLineSink(serial_config(path, write_timeout_s=0.2,
                                        template="x" * 40000 + "{total}\n"), LOG)
    sink.open()
    try:
        sink.publish(update(1.0))
        assert wait_for(lambda: log_lines(caplog, logging.WARNING))
        assert log_lines(caplog, logging.WARNING) == [
            f"serial {path} lost: Write timeout; retrying"]
        assert sink.health() == "down"
        sink.publish(update(2.0))                 # still just swaps the pending slot
    finally:
        start = time.monotonic()
        sink.close()
        closed_in = time.monotonic() - start
    assert not sink.running
    assert closed_in < 1.5


def test_failed_opens_back_off_doubling_up_to_the_max(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    sink = SerialLineSink(serial_config(str(tmp_path / "absent"), backoff_initial_s=0.05,
                                        backoff_max_s=0.2), LOG)
    sink.open()

    def attempts():
        return [r.created for r in caplog.records if r.name == LOG.name
                and ("cannot be opened" in r.getMessage() or "still down" in r.getMessage())]

    try:
        assert wait_for(lambda: len(attempts()) >= 6)
    finally:
        sink.close()
    times = attempts()[:6]
    gaps = [b - a for a, b in zip(times, times[1:])]      # about 0.05, 0.1, 0.2, 0.2, 0.2
    assert gaps[0] < gaps[2]
    assert all(0.04 <= g < 0.35 for g in gaps)
    assert all(g >= 0.18 for g in gaps[2:])


def test_close_cuts_a_long_backoff_short(tmp_path):
    sink = SerialLineSink(serial_config(str(tmp_path / "absent"), backoff_initial_s=10.0,
                                        backoff_max_s=10.0), LOG)
    sink.open()
    assert wait_for(lambda: sink.running)
    time.sleep(0.05)                              # let it fail once and start waiting
    start = time.monotonic()
    sink.close()
    assert not sink.running
    assert time.monotonic() - start < 1.0
    assert sink.health() == "down"


# --- factory and `crowdsign check` -------------------------------------------------

def test_make_sinks_builds_one_serial_sink_per_output():
    outputs = (serial_config("loop://"), serial_config("/dev/ttyUSB7"))
    made = make_sinks(outputs, LOG)
    assert [type(s) for s in made] == [SerialLineSink, SerialLineSink]
    assert [s.describe() for s in made] == ["serial loop://", "serial /dev/ttyUSB7"]


def test_check_outputs_names_key_and_path_of_each_problem(tmp_path, pty_pair):
    _, tty = pty_pair
    plain = tmp_path / "notatty"
    plain.write_text("")
    outputs = (serial_config(tty), serial_config(str(tmp_path / "ttyGONE")),
               serial_config("socket://192.0.2.1:4001"), serial_config(str(plain)))
    problems = check_outputs(outputs)
    assert len(problems) == 2
    assert problems[0].startswith(f"[[outputs]] #2.port: {tmp_path / 'ttyGONE'}: no such device")
    assert problems[1].startswith(f"[[outputs]] #4.port: {plain}: not a character device")
