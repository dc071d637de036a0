"""Sinks from config: one builder and one check per [[outputs]] type.

To add an output type (IBIS, Modbus, an LED matrix driver):
  1. its config dataclass in crowdsign.config, registered in OUTPUT_TYPES;
  2. its Sink in a module of its own here;
  3. one entry in _BUILDERS and, if it has a device to look at, in _CHECKS.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Callable, Sequence

from crowdsign.config import OutputConfig, SerialOutputConfig
from crowdsign.sinks.base import Sink
from crowdsign.sinks.serial_line import SerialLineSink

_BUILDERS: dict[str, Callable[[OutputConfig, logging.Logger], Sink]] = {
    "serial": SerialLineSink,
}


def make_sinks(outputs: Sequence[OutputConfig], log: logging.Logger) -> list[Sink]:
    """One unopened Sink per configured output, in config order."""
    return [_BUILDERS[o.type](o, log) for o in outputs]


def is_url(port: str) -> bool:
    """True for a pyserial URL (`loop://`, `socket://h:p`), False for a device path."""
    return "://" in port


def _check_serial(output: SerialOutputConfig, key: str) -> list[str]:
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


_CHECKS: dict[str, Callable[[OutputConfig, str], list[str]]] = {
    "serial": _check_serial,
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
