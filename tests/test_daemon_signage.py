"""The daemon drives real signage end to end on real footage: an IBIS display
and a Modbus RTU master on socat-linked pseudo-terminals, an LED matrix on
luma's dummy device; unplugged and replugged while counting; and on SIGTERM
every sign is left in the "no data" state."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from PIL import Image
from pymodbus.client import ModbusSerialClient

from daemon_process import Daemon, replay_config
from shared_data import require_tool, shared_path

from crowdsign.sinks.ibis import checksum
from crowdsign.sinks.led_matrix import lit

TELEGRAM = re.compile(rb"(aA1\d[ -~]{48}|l\d{3})\r(.)", re.DOTALL)


class Link:
    """A socat pty pair: DEVICE is what the daemon opens, FAR the equipment's end."""

    def __init__(self, directory: Path, name: str):
        require_tool("socat", "socat")
        self.device = directory / f"tty{name}"
        self.far = directory / f"tty{name}FAR"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.far}"],
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (self.device.exists() and self.far.exists()):
            assert time.monotonic() < deadline, "socat did not create its ptys"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=5)
            self.proc = None


class IbisDisplay:
    """Reads every byte arriving at the display's end of an IBIS link, in a thread."""

    def __init__(self, link: Link):
        self.link = link
        self.data = b""
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stop.clear()
        fd = os.open(self.link.far, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._read, args=(fd,), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        break
                    if not chunk:
                        break
                    self.data += chunk
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def telegrams(self) -> list[bytes]:
        """Complete telegrams so far, each checked against its checksum byte."""
        out = []
        for m in TELEGRAM.finditer(self.data):
            body = m.group(1) + b"\r"
            assert m.group(2)[0] == checksum(body), f"bad checksum on {body!r}"
            out.append(m.group(1))
        return out

    def wait_for(self, predicate, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t in reversed(self.telegrams()):
                if predicate(t):
                    return t
            time.sleep(0.05)
        raise AssertionError(f"no matching IBIS telegram; last bytes {self.data[-120:]!r}")


def read_registers(link: Link, address: int, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = ModbusSerialClient(port=str(link.far), baudrate=19200, timeout=0.5, retries=0)
        try:
            if client.connect():
                r = client.read_input_registers(address, count=count, device_id=1)
                if not r.isError():
                    return list(r.registers)
        except Exception:   # noqa: BLE001 - the port is not (yet) there
            pass
        finally:
            client.close()
        time.sleep(0.1)
    raise AssertionError("the Modbus server did not answer")


def signage(ibis: Link, modbus: Link, png: Path) -> str:
    return f"""
[[cars]]
name = "1"
zones = ["left"]
[[cars]]
name = "2"
zones = ["centre"]
[[cars]]
name = "3"
zones = ["right"]

[recommend]
margin = 1.0
dwell_s = 2.0

[[outputs]]
type = "ibis"
port = "{ibis.device}"
rate_hz = 5
backoff_initial_s = 0.2
backoff_max_s = 1.0
notice_every_s = 0
[[outputs.telegrams]]
type = "DS021"
address = 1
blocks = 3
template = "Car {{best}} least crowded"
no_data = "No data"
[[outputs.telegrams]]
type = "DS001"
template = "{{code[left]}}{{code[centre]}}{{code[right]}}"

[[outputs]]
type = "modbus"
port = "{modbus.device}"
parity = "N"            # a pty takes no parity; an RS-485 adapter does (8E1)
backoff_initial_s = 0.2
backoff_max_s = 1.0

[[outputs]]
type = "led_matrix"
device = "dummy"
capture_png = "{png}"
layout = "bars"
notice_every_s = 0
"""


def test_ibis_modbus_and_led_matrix_follow_the_count_survive_unplugging_and_end_in_no_data(
        tmp_path):
    ibis, modbus = Link(tmp_path, "IBIS"), Link(tmp_path, "MODBUS")
    png = tmp_path / "led.png"
    ibis.start()
    modbus.start()
    display = IbisDisplay(ibis)
    display.start()
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), pace="realtime",
                           extra=signage(ibis, modbus, png))
    daemon = Daemon("-c", str(config), "--json")
    try:
        # counting: levels as digits 1..3 on IBIS, status 1 and the total on Modbus, the LED lit
        levels = display.wait_for(lambda t: t.startswith(b"l") and b"0" not in t, timeout=60)
        assert re.fullmatch(rb"l[123]{3}", levels)
        display.wait_for(lambda t: t.startswith(b"aA1") and b"least crowded" in t, timeout=30)
        regs = read_registers(modbus, 0, 8, timeout=10)
        assert regs[0] == 1 and regs[1] == 1 and regs[5] == 3 and regs[6] == 3
        assert 0 < regs[4] < 100 and regs[3] <= 3
        beat = regs[2]
        time.sleep(0.5)
        assert read_registers(modbus, 2, 1, timeout=5)[0] != beat, daemon.stderr_lines  # moves
        assert png.exists() and lit(Image.open(png))

        # both adapters pulled: counting goes on
        display.stop()
        ibis.stop()
        modbus.stop()
        pulled = daemon.next_update()["frame"]
        later = daemon.wait_for(lambda u: u["frame"] >= pulled + 20, timeout=30)
        assert later["total"] is not None and daemon.proc.poll() is None

        # plugged back: both serve again within 5 s
        ibis.start()
        modbus.start()
        display = IbisDisplay(ibis)
        display.start()
        back = time.monotonic()
        display.wait_for(lambda t: t.startswith(b"l"), timeout=5)
        assert read_registers(modbus, 1, 1, timeout=5) == [1]
        assert time.monotonic() - back < 5.0

        # SIGTERM: the signs are set to "no data" before the daemon exits
        assert daemon.terminate() == 0
        time.sleep(0.3)
        last = display.telegrams()[-2:]
        assert last == [b"aA13" + b"No data".ljust(48), b"l000"]     # address 1, 3 blocks
        dashes = lit(Image.open(png))                                   # "--", centred
        assert len(dashes) == 6 and {y for _, y in dashes} == {4}
        lost = [line for line in daemon.stderr_lines if " lost" in line]
        assert len([l for l in lost if f"ibis {ibis.device}" in l]) == 1, daemon.stderr_lines
        assert len([l for l in lost if f"modbus {modbus.device}" in l]) == 1, daemon.stderr_lines
        assert any(f"ibis {ibis.device} back" in l for l in daemon.stderr_lines)
        assert any(f"modbus {modbus.device} back" in l for l in daemon.stderr_lines)
    finally:
        daemon.kill()
        display.stop()
        ibis.stop()
        modbus.stop()
