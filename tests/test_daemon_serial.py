"""The daemon drives a display over a real pseudo-terminal and survives it going away."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path


from daemon_process import Daemon, replay_config
from shared_data import require_tool, shared_path

LINE = re.compile(r"^left=(\d+|--);centre=(\d+|--);right=(\d+|--)$")


def serial_output(port: str, template: str = "{zones}\\r\\n") -> str:
    return f"""
[[outputs]]
type = "serial"
port = "{port}"
baudrate = 115200
template = "{template}"
rate_hz = 5
backoff_initial_s = 0.2
backoff_max_s = 1.0
"""


def read_lines(fd: int, count: int, timeout: float) -> list[str]:
    """Read `count` CRLF-terminated lines from a pty master."""
    buffer = b""
    deadline = time.monotonic() + timeout
    while buffer.count(b"\r\n") < count and time.monotonic() < deadline:
        import select
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            buffer += os.read(fd, 4096)
    return [line.decode() for line in buffer.split(b"\r\n")[:count]]


def test_zone_counts_arrive_on_a_pseudo_terminal(tmp_path):
    master, slave = os.openpty()
    port = os.ttyname(slave)
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"),
                           extra=serial_output(port))
    daemon = Daemon("-c", str(config), "--json")
    try:
        lines = read_lines(master, 4, timeout=60)
        assert len(lines) == 4
        for line in lines:
            assert LINE.match(line), line
        assert any(int(n) > 0 for line in lines for n in LINE.match(line).groups() if n != "--")
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        os.close(master)
        os.close(slave)


class SocatPair:
    """Two linked pseudo-terminals, as a USB-serial adapter and the display on its far end."""

    def __init__(self, directory: Path):
        require_tool("socat", "socat")
        self.device = directory / "ttyDISPLAY"
        self.host = directory / "ttyHOST"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.host}"],
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (self.device.exists() and self.host.exists()):
            assert time.monotonic() < deadline, "socat did not create its ptys"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def read_lines(self, count: int, timeout: float) -> list[str]:
        fd = os.open(self.host, os.O_RDONLY | os.O_NOCTTY)
        try:
            return read_lines(fd, count, timeout)
        finally:
            os.close(fd)


def test_display_unplugged_and_back_is_survived_without_stopping_counting(tmp_path):
    pair = SocatPair(tmp_path)
    pair.start()
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), pace="realtime",
                           extra=serial_output(str(pair.device)))
    daemon = Daemon("-c", str(config), "--json")
    try:
        assert all(LINE.match(line) for line in pair.read_lines(2, timeout=60))

        pair.stop()  # far end closed, device nodes removed
        unplugged_at = daemon.next_update()["frame"]
        later = daemon.wait_for(lambda u: u["frame"] >= unplugged_at + 20, timeout=30)
        assert later["total"] is not None, "counting goes on while the display is gone"

        pair.start()
        replugged = time.monotonic()
        lines = pair.read_lines(2, timeout=15)
        assert len(lines) == 2 and all(LINE.match(line) for line in lines)
        assert time.monotonic() - replugged < 10
        assert daemon.proc.poll() is None
        assert daemon.terminate() == 0
        lost = [line for line in daemon.stderr_lines if "lost" in line]
        assert len(lost) == 1, daemon.stderr_lines
    finally:
        daemon.kill()
        pair.stop()
