"""A Modbus RTU server on a serial line: a PLC or passenger-information
controller polls the counts, levels and health.

Unlike the display sinks this one does not talk: it answers. So there is no
queue of updates to write. publish() only swaps a reference to the newest
update (and counts a heartbeat), and the registers are computed from it when
a request arrives, in the server's own thread: the data's age is then exact
at the moment of the read, and counts that have passed their `valid_until`
read as "no data" even if the frame loop hangs and never publishes again.

The server is pymodbus's serial RTU server, in a thread with its own asyncio
event loop. pymodbus does not reopen a serial port that went away, so the
thread does: when the port cannot be opened, or the line is lost (the USB
adapter pulled), it logs one WARNING, retries with a doubling backoff (each
retry at DEBUG), and logs one INFO when the server is back.

Register map (see README): every value is one 16-bit register, readable as
input registers (function 04) and as holding registers (03) at the same
addresses, for PLCs that read only one kind; writes are refused (illegal
function). Addresses are the protocol's, from 0.

    0   map version (1)
    1   status: 1 counting, 0 no data (stale counts, camera lost, stopping)
    2   heartbeat: +1 per update published, wraps at 65535
    3   age of the counts in seconds (65535: none yet)
    4   people in the whole view (65535: no data)
    5   number of zones N
    6   number of cars M
    7   recommended car, 1..M (0: none)
    8   reserved, 0
    9   reserved, 0
    10 + 4*i  zone i (config order): people, level code (0 no data), age s, reserved
    300 + 2*j car j (train order): people, level code
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable, Optional, Sequence

import serial

from crowdsign.config import ModbusOutputConfig
from crowdsign.sinks.base import NO_DATA_CODE, Sink, Update, whole
from crowdsign.sinks.worker import error_reason

MAP_VERSION = 1
NO_DATA = 0xFFFF
"""A count or age that is not known reads as 65535."""
ZONE_BASE, ZONE_STRIDE = 10, 4
CAR_BASE, CAR_STRIDE = 300, 2
MAX_ZONES = MAX_CARS = 64
REGISTERS = CAR_BASE + CAR_STRIDE * MAX_CARS


def _u16(value: Optional[float]) -> int:
    if value is None:
        return NO_DATA
    return min(max(int(value), 0), NO_DATA - 1)


def _code(value: int) -> int:
    """A level code as a register: 0..65535 (codes are 0..len(names) in practice)."""
    return min(max(int(value), 0), 0xFFFF)


def register_block(update: Optional[Update], now: float, heartbeat: int) -> list[int]:
    """All REGISTERS registers for `update` read at `now` (monotonic s).

    update:    the newest update published, None before the first.
    heartbeat: updates published so far (mod 65536).
    """
    regs = [0] * REGISTERS
    regs[0] = MAP_VERSION
    regs[2] = heartbeat & 0xFFFF
    if update is None:
        regs[3] = regs[4] = NO_DATA
        return regs
    fresh = not update.expired(now)
    shown = update if fresh else update.no_data()
    age = NO_DATA if update.counted_t is None else _u16(max(now - update.counted_t, 0.0))
    cars = list(shown.cars)
    regs[1] = 1 if fresh else 0
    regs[3] = age
    regs[4] = _u16(whole(shown.total))
    regs[5] = len(shown.zones)
    regs[6] = len(cars)
    regs[7] = cars.index(shown.recommended) + 1 if shown.recommended in cars else 0
    for i, (name, count) in enumerate(list(shown.zones.items())[:MAX_ZONES]):
        base = ZONE_BASE + ZONE_STRIDE * i
        regs[base] = _u16(whole(count))
        regs[base + 1] = _code(shown.codes.get(name, NO_DATA_CODE))
        regs[base + 2] = age
    for j, name in enumerate(cars[:MAX_CARS]):
        base = CAR_BASE + CAR_STRIDE * j
        regs[base] = _u16(whole(shown.cars[name]))
        regs[base + 1] = _code(shown.car_codes.get(name, NO_DATA_CODE))
    return regs


class ModbusSink(Sink):
    """Serves the newest update as Modbus RTU registers on a serial port.

    config: the [[outputs]] table (port, line settings, unit_id, backoff).
    log:    where the lost / back lines go.
    clock:  monotonic seconds; the same clock as the updates' times.
    """

    def __init__(self, config: ModbusOutputConfig, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._log = log
        self._clock = clock
        self._latest: tuple[Optional[Update], int] = (None, 0)
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._stopping = False
        self._up = False
        self._served = False        # the server ran at least once: a failure is "lost"
        self._lost = False          # a failure was logged and the server is not back yet
        self.reads = 0              # requests answered, for tests and diagnostics

    # --- the frame loop's side -------------------------------------------------

    def open(self) -> None:
        """Start the server thread; the port opens there (a missing one is retried)."""
        if self._thread is not None:
            raise RuntimeError("ModbusSink already opened")
        # pymodbus logs every failed open on its own logger; this sink reports
        # the port's state itself, once per event, so only pymodbus's errors pass.
        logging.getLogger("pymodbus").setLevel(logging.ERROR)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        name=f"sink {self.describe()}", daemon=True)
        self._thread.start()
        ready.wait(5.0)

    def publish(self, update: Update) -> None:
        """Make `update` the one served; one tuple assignment, never blocks."""
        _, beats = self._latest
        self._latest = (update, (beats + 1) & 0xFFFF)

    def close(self, timeout: float = 1.0) -> None:
        """Stop serving and close the port. The last update published (the
        final "no data" one on shutdown) is what a read in the meantime sees."""
        self._stopping = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:            # the loop has already finished
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning("%s: server thread did not stop within %.1f s",
                                  self.describe(), timeout)

    def describe(self) -> str:
        return f"modbus {self.config.port}"

    def health(self) -> str:
        return "ok" if self._up else "down"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def registers(self, now: Optional[float] = None) -> list[int]:
        """The register block as a read at `now` would see it."""
        update, beats = self._latest
        return register_block(update, self._clock() if now is None else now, beats)

    # --- the server thread -------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except Exception:           # never let the thread die silently
            self._log.exception("%s: server thread failed", self.describe())
            self._up = False

    async def _serve(self, ready: threading.Event) -> None:
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import SimData, SimDevice
        from pymodbus.simulator.simutils import DataType

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready.set()
        c = self.config
        delay = c.backoff_initial_s
        while not self._stopping:
            reason = _try_open(c.port)
            if reason is None:
                lost = asyncio.Event()
                device = SimDevice(c.unit_id, action=self._action, simdata=[
                    SimData(0, values=[0] * REGISTERS, datatype=DataType.REGISTERS)])
                server = ModbusSerialServer(
                    device, port=c.port, baudrate=c.baudrate, bytesize=c.bytesize,
                    parity=c.parity, stopbits=int(c.stopbits), reconnect_delay=0,
                    trace_connect=lambda up: None if up else lost.set())
                if await server.listen():
                    self._serving()
                    delay = c.backoff_initial_s
                    await _first(lost.wait(), self._stop.wait())
                    self._up = False
                    reason = "line lost" if lost.is_set() else None
                else:
                    reason = "could not start the server on the port"
                await server.shutdown()
            if self._stopping or reason is None:
                break
            self._failed("lost" if self._served else "cannot be opened", reason)
            await _first(self._stop.wait(), asyncio.sleep(delay))
            delay = min(delay * 2, c.backoff_max_s)
        self._up = False

    def _serving(self) -> None:
        self._up = True
        if self._lost:
            self._log.info("%s back", self.describe())
            self._lost = False
        self._served = True
        self._log.debug("%s: serving unit %d", self.describe(), self.config.unit_id)

    def _failed(self, what: str, reason: str) -> None:
        if self._lost:
            self._log.debug("%s still down: %s; retrying", self.describe(), reason)
        else:
            self._lost = True
            self._log.warning("%s %s: %s; retrying", self.describe(), what, reason)

    async def _action(self, function_code: int, start_address: int, address: int,
                      count: int, current_registers: list[int],
                      set_values: Optional[Sequence[int]]):
        """pymodbus calls this for every request: refuse writes, fill the
        requested registers from the newest update."""
        from pymodbus.constants import ExcCodes

        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        if address < 0 or address + count > REGISTERS:
            return ExcCodes.ILLEGAL_ADDRESS
        regs = self.registers()
        offset = address - start_address
        current_registers[offset:offset + count] = regs[address:address + count]
        self.reads += 1
        return None


def _try_open(port: str) -> Optional[str]:
    """None if the port opens (and is closed again at once), else why not.

    pymodbus only logs why it could not open a port; opening it once here
    gives the reason for the journal line (`[Errno 2] No such file ...`).
    """
    try:
        s = serial.serial_for_url(port, do_not_open=True)
        s.open()
        s.close()
    except (serial.SerialException, OSError, ValueError) as e:
        return error_reason(e)
    return None


async def _first(*aws) -> None:
    """Wait until the first of `aws` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
