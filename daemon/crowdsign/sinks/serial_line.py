"""A line-oriented display controller on a serial port.

Each update becomes one line: the config's template filled in (format =
template; the template carries its own line ending, `\\r\\n` by default) or
one compact JSON object and `\\n` (format = json:
`{"t":..,"frame":..,"total":..,"zones":{..},"levels":{..}}`). Text is sent as
ASCII; a character outside it becomes `?`.

The port is opened with pyserial's `serial_for_url`, so besides device paths
(`/dev/ttyUSB0`, `/dev/serial0`) pyserial URLs work: `loop://` and `spy://`
for tests, `socket://host:port` for a controller behind a serial server.

All talking to the port happens in a `DeviceWorker` thread: publish() only
swaps the pending update. A port that is missing, unplugged or stuck (a write
blocked longer than write_timeout_s) is "down" and reopened with backoff; it
never stops the daemon.
"""

from __future__ import annotations

import json
import logging
import termios
from typing import Optional, Union

import serial

from crowdsign.config import IbisOutputConfig, SerialOutputConfig
from crowdsign.sinks.base import Update
from crowdsign.sinks.json_stream import update_record
from crowdsign.sinks.template import render_template
from crowdsign.sinks.worker import Device, DeviceSink, DeviceWorker


def encode_line(config: SerialOutputConfig, update: Update) -> bytes:
    """The bytes written for `update` under `config`'s format."""
    if config.format == "json":
        text = json.dumps(update_record(update), separators=(",", ":")) + "\n"
    else:
        text = render_template(config.template, update)
    return text.encode("ascii", errors="replace")


class SerialPortDevice(Device):
    """A pyserial port (device path or URL) as a `Device` for the worker.

    config: anything with port, baudrate, bytesize, parity, stopbits and
            write_timeout_s (the serial and IBIS output configs).
    kind:   the first word of describe(), e.g. `ibis /dev/ttyUSB0`.
    """

    # SerialTimeoutException is a SerialException; termios.error (not an OSError)
    # is what a port whose driver refuses the line settings raises.
    lost_errors = (serial.SerialException, OSError, termios.error)

    def __init__(self, config: Union[SerialOutputConfig, IbisOutputConfig],
                 kind: str = "serial"):
        self._config = config
        self._kind = kind
        self._port: Optional[serial.SerialBase] = None

    @property
    def port(self) -> Optional[serial.SerialBase]:
        """The open pyserial port, None while closed (for diagnostics and tests:
        a `loop://` port is read back through it)."""
        return self._port

    def open(self) -> None:
        c = self._config
        port = serial.serial_for_url(
            c.port, baudrate=c.baudrate, bytesize=c.bytesize, parity=c.parity,
            stopbits=c.stopbits, write_timeout=c.write_timeout_s, do_not_open=True)
        port.open()
        self._port = port

    def write(self, data: bytes) -> None:
        if self._port is None:
            raise serial.PortNotOpenError()
        self._port.write(data)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass

    def interrupt(self) -> None:
        port = self._port
        cancel = getattr(port, "cancel_write", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:
                pass

    def describe(self) -> str:
        return f"{self._kind} {self._config.port}"


class SerialLineSink(DeviceSink):
    """Writes one line per update to a serial display controller.

    config: the [[outputs]] table (port, line settings, format, template,
            rate_hz, backoff, write timeout).
    log:    where the lost / back lines go.
    """

    def __init__(self, config: SerialOutputConfig, log: logging.Logger):
        self.config = config
        self.device = SerialPortDevice(config)
        self._worker = DeviceWorker(
            self.device, lambda u: encode_line(config, u),
            rate_hz=config.rate_hz, backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s, log=log)

