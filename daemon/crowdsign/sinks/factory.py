"""Sinks from config: one builder and one check per [[outputs]] type.

To add an output type:
  1. its config dataclass in crowdsign.config, registered in OUTPUT_TYPES;
  2. its Sink in a module of its own here;
  3. one entry in _BUILDERS and, if it has a device to look at, in _CHECKS.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Any, Callable, Sequence

from crowdsign.config import LedMatrixOutputConfig, OutputConfig, SerialOutputConfig
from crowdsign.sinks.base import Sink
from crowdsign.sinks.serial_line import SerialLineSink


def _ibis(config, log: logging.Logger) -> Sink:
    from crowdsign.sinks.ibis import IbisSink
    return IbisSink(config, log)


def _modbus(config, log: logging.Logger) -> Sink:
    from crowdsign.sinks.modbus import ModbusSink   # imports pymodbus: only when used
    return ModbusSink(config, log)


def _led_matrix(config, log: logging.Logger) -> Sink:
    from crowdsign.sinks.led_matrix import LedMatrixSink   # imports luma: only when used
    return LedMatrixSink(config, log)


_BUILDERS: dict[str, Callable[[Any, logging.Logger], Sink]] = {
    "serial": SerialLineSink,
    "ibis": _ibis,
    "modbus": _modbus,
    "led_matrix": _led_matrix,
}


def make_sinks(outputs: Sequence[OutputConfig], log: logging.Logger) -> list[Sink]:
    """One unopened Sink per configured output, in config order."""
    return [_BUILDERS[o.type](o, log) for o in outputs]


def is_url(port: str) -> bool:
    """True for a pyserial URL (`loop://`, `socket://h:p`), False for a device path."""
    return "://" in port


def _check_serial(output: SerialOutputConfig, key: str) -> list[str]:
    """A serial port (serial, ibis, modbus outputs): there, a tty, ours to open."""
    path = output.port
    if is_url(path):
        return []   # a URL is checked by connecting, which `check` does not do
    where = f"{key}.port: {path}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [f"{where}: no such device (is the adapter plugged in? "
                f"ls /dev/serial/by-id/ lists the ones present)"]
    except OSError as e:
        return [f"{where}: cannot look at it: {e.strerror}"]
    if not stat.S_ISCHR(st.st_mode):
        return [f"{where}: not a character device (a serial port is one)"]
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        return [f"{where}: permission denied (the daemon's user needs group dialout)"]
    except OSError as e:
        if e.errno == errno.EBUSY:
            return [f"{where}: busy, opened exclusively by another program"]
        return [f"{where}: cannot be opened: {e.strerror}"]
    os.close(fd)
    return []


def _check_spi(output: LedMatrixOutputConfig, key: str) -> list[str]:
    """The SPI device node of a max7219 chain (a dummy device needs nothing)."""
    if output.device == "dummy":
        return []
    path = f"/dev/spidev{output.spi_port}.{output.spi_device}"
    if not os.path.exists(path):
        return [f"{key}.spi_port: {path}: no such device (enable SPI: dtparam=spi=on "
                f"in /boot/firmware/config.txt on a Raspberry Pi)"]
    if not os.access(path, os.R_OK | os.W_OK):
        return [f"{key}.spi_port: {path}: permission denied (the daemon's user needs group spi)"]
    return []


_CHECKS: dict[str, Callable[[Any, str], list[str]]] = {
    "serial": _check_serial,
    "ibis": _check_serial,
    "modbus": _check_serial,
    "led_matrix": _check_spi,
}


def check_outputs(outputs: Sequence[OutputConfig]) -> list[str]:
    """For `crowdsign check`: problems with the outputs' devices, one line each,
    naming the [[outputs]] #N key and the device. Empty when all are usable."""
    problems: list[str] = []
    for i, output in enumerate(outputs):
        check = _CHECKS.get(output.type)
        if check is not None:
            problems.extend(check(output, f"[[outputs]] #{i + 1}"))
    return problems
