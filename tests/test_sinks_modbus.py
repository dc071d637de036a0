"""The Modbus RTU server sink, read by a real pymodbus serial client through a
socat-linked pseudo-terminal pair; and the register map on its own."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest
from pymodbus.client import ModbusSerialClient

from crowdsign.config import ModbusOutputConfig
from crowdsign.sinks.base import Update
from crowdsign.sinks.modbus import NO_DATA, ModbusSink, register_block
from shared_data import require_tool

LOG = logging.getLogger("crowdsign.test.modbus")


def update(a: float = 12.4, b: float = 2.0, now: Optional[float] = None) -> Update:
    now = time.monotonic() if now is None else now
    return Update(t=now, frame=5, total=a + b, zones={"A": a, "B": b},
                  levels={"A": "high", "B": "low"}, fps=10.0, infer_ms=20.0,
                  codes={"A": 3, "B": 1}, cars={"1": a, "2": b}, car_codes={"1": 3, "2": 1},
                  recommended="2", counted_t=now - 2.2, valid_until=now + 60.0)


# --- the register map -------------------------------------------------------------------

def test_register_map_header_zones_and_cars():
    u = update(now=100.0)
    regs = register_block(u, now=100.0, heartbeat=7)
    assert regs[:8] == [1, 1, 7, 2, 14, 2, 2, 2]     # version, ok, beat, age, total, N, M, car 2
    assert regs[10:18] == [12, 3, 2, 0, 2, 1, 2, 0]  # zone A, zone B: people, code, age, 0
    assert regs[300:304] == [12, 3, 2, 1]           # car 1, car 2: people, code


def test_expired_counts_read_as_no_data_with_their_age_still_growing():
    u = update(now=100.0)
    regs = register_block(u, now=200.0, heartbeat=1)
    assert regs[1] == 0 and regs[3] == 102 and regs[4] == NO_DATA and regs[7] == 0
    assert regs[10:12] == [NO_DATA, 0] and regs[300:302] == [NO_DATA, 0]


def test_before_the_first_update_everything_reads_as_no_data():
    regs = register_block(None, now=5.0, heartbeat=0)
    assert regs[:5] == [1, 0, 0, NO_DATA, NO_DATA]


# --- a real client over socat ---------------------------------------------------------------

class SocatPair:
    """Two linked ptys: SERVER (the sink's RS-485 adapter) and PLC (the client's)."""

    def __init__(self, directory: Path):
        require_tool("socat", "socat")
        self.server = directory / "ttySERVER"
        self.plc = directory / "ttyPLC"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.server}", f"pty,raw,echo=0,link={self.plc}"],
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (self.server.exists() and self.plc.exists()):
            assert time.monotonic() < deadline, "socat did not create its ptys"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)    # socat removes its links on TERM
            self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture
def socat_pair(tmp_path):
    pair = SocatPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


def read(plc: Path, address: int, count: int, holding: bool = False,
         timeout: float = 5.0) -> list[int]:
    """Registers read by a fresh pymodbus RTU client, retried until the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        client = ModbusSerialClient(port=str(plc), baudrate=19200, timeout=0.5, retries=0)
        try:
            if client.connect():
                fn = client.read_holding_registers if holding else client.read_input_registers
                r = fn(address, count=count, device_id=1)
                if not r.isError():
                    return list(r.registers)
                last = r
        except Exception as e:   # noqa: BLE001 - a port that is not there yet
            last = e
        finally:
            client.close()
        time.sleep(0.1)
    raise AssertionError(f"no answer from the Modbus server: {last!r}")


def modbus_config(port: Path, **kw) -> ModbusOutputConfig:
    # No parity: a Linux pty refuses pymodbus's second reconfigure of a port
    # with parity (EINVAL); a real RS-485 adapter takes 8E1.
    return ModbusOutputConfig(type="modbus", port=str(port), parity="N", backoff_initial_s=0.1,
                              backoff_max_s=0.5, **kw)


def test_a_pymodbus_client_reads_counts_levels_and_heartbeat(socat_pair):
    sink = ModbusSink(modbus_config(socat_pair.server), LOG)
    sink.open()
    try:
        sink.publish(update())
        regs = read(socat_pair.plc, 0, 18)
        assert regs[0:2] == [1, 1] and regs[4:8] == [14, 2, 2, 2]
        assert regs[3] in (2, 3)
        assert regs[10:12] == [12, 3] and regs[14:16] == [2, 1]
        sink.publish(update(a=30.0))
        assert read(socat_pair.plc, 2, 3, holding=True)[0] == 2      # heartbeat, via FC 03
        assert read(socat_pair.plc, 300, 2) == [30, 3]
        assert sink.health() == "ok" and sink.reads >= 3
    finally:
        sink.close()
    assert not sink.running


def test_writes_are_refused(socat_pair):
    sink = ModbusSink(modbus_config(socat_pair.server), LOG)
    sink.open()
    try:
        sink.publish(update())
        read(socat_pair.plc, 0, 1)
        client = ModbusSerialClient(port=str(socat_pair.plc), baudrate=19200, timeout=1)
        client.connect()
        try:
            r = client.write_register(4, 99, device_id=1)
            assert r.isError() and r.exception_code == 1           # illegal function
        finally:
            client.close()
        assert read(socat_pair.plc, 4, 1) == [14]
    finally:
        sink.close()


def test_stopping_state_reads_as_no_data(socat_pair):
    sink = ModbusSink(modbus_config(socat_pair.server), LOG)
    sink.open()
    try:
        u = update()
        sink.publish(u)
        assert read(socat_pair.plc, 1, 1) == [1]
        sink.publish(u.no_data())                 # what the supervisor sends on SIGTERM
        regs = read(socat_pair.plc, 0, 12)
        assert regs[1] == 0 and regs[4] == NO_DATA and regs[7] == 0    # status, total, car
        assert regs[3] in (2, 3)                                        # the age still shows
        assert regs[10:12] == [NO_DATA, 0]
    finally:
        sink.close()


def test_pulled_adapter_is_reported_once_and_served_again_within_5_s(socat_pair, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    sink = ModbusSink(modbus_config(socat_pair.server), LOG)
    sink.open()
    try:
        sink.publish(update())
        assert read(socat_pair.plc, 1, 1) == [1]
        socat_pair.stop()                          # far end closed, device nodes gone
        deadline = time.monotonic() + 5
        while sink.health() == "ok" and time.monotonic() < deadline:
            sink.publish(update())                 # never blocks, whatever the port does
            time.sleep(0.05)
        assert sink.health() == "down" and sink.running
        time.sleep(1.0)                            # several failed reopens
        socat_pair.start()
        back = time.monotonic()
        sink.publish(update(a=7.0))
        assert read(socat_pair.plc, 10, 1, timeout=5.0) == [7]
        assert time.monotonic() - back < 5.0
        warnings = [r.getMessage() for r in caplog.records
                    if r.name == LOG.name and r.levelno == logging.WARNING]
        infos = [r.getMessage() for r in caplog.records
                 if r.name == LOG.name and r.levelno == logging.INFO]
        assert warnings == [f"modbus {socat_pair.server} lost: line lost; retrying"]
        assert infos == [f"modbus {socat_pair.server} back"]
    finally:
        sink.close()


def test_missing_port_is_retried_and_served_once_it_appears(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    pair = SocatPair(tmp_path)
    sink = ModbusSink(modbus_config(pair.server), LOG)
    sink.open()
    try:
        time.sleep(0.3)
        assert sink.health() == "down"
        pair.start()
        sink.publish(update())
        assert read(pair.plc, 1, 1) == [1]
        warnings = [r.getMessage() for r in caplog.records
                    if r.name == LOG.name and r.levelno == logging.WARNING]
        assert warnings == [f"modbus {pair.server} cannot be opened: "
                            f"[Errno 2] No such file or directory; retrying"]
    finally:
        sink.close()
        pair.stop()
