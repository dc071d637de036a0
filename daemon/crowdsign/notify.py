"""Talking to systemd: sd_notify(3) over the socket in $NOTIFY_SOCKET.

The protocol is one datagram of `KEY=VALUE` lines to an AF_UNIX socket, so it
is written here in a few lines rather than pulled in through libsystemd: it
works the same with or without systemd-python, and off systemd (no
NOTIFY_SOCKET) every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to the service manager.

    Watchdog pings come from the frame loop, after a counted frame, so a hung
    pipeline stops them; they are thinned to at most one per `watchdog_min_interval`
    seconds (a quarter of WatchdogSec, and never more than 0.5 s apart).
    """

    def __init__(self, address: Optional[str] = None, watchdog_usec: Optional[str] = None,
                 clock=time.monotonic):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address or None
        self._sock: Optional[socket.socket] = None
        if self._address:
            # Non-blocking: a manager that stops reading must never stall the frame loop.
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                       | socket.SOCK_NONBLOCK)
        usec = os.environ.get("WATCHDOG_USEC") if watchdog_usec is None else watchdog_usec
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() else None
        self.watchdog_min_interval = min(0.5, self.watchdog_s / 4) if self.watchdog_s else 0.5
        self._clock = clock
        self._last_ping = float("-inf")
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, message: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError:
            pass  # the manager went away; nothing to do but carry on counting

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        now = self._clock()
        if now - self._last_ping >= self.watchdog_min_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
