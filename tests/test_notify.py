"""sd_notify: messages reach the socket, and a manager that stops reading never blocks us."""

from __future__ import annotations

import socket
import threading

from crowdsign.notify import Notifier


def test_notify_messages_arrive_and_watchdog_pings_are_thinned(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        now = [0.0]
        notifier = Notifier(address=path, watchdog_usec="2000000", clock=lambda: now[0])
        notifier.ready("1 people | 1 zones | 0.0 fps")
        notifier.watchdog()
        notifier.watchdog()  # within a quarter of WatchdogSec: thinned
        now[0] = 1.0
        notifier.watchdog()
        notifier.stopping()
        manager.settimeout(1.0)
        got = [manager.recv(4096).decode() for _ in range(4)]
        notifier.close()
    assert got[0] == "READY=1\nSTATUS=1 people | 1 zones | 0.0 fps"
    assert got[1:3] == ["WATCHDOG=1", "WATCHDOG=1"]
    assert got[3].startswith("STOPPING=1")


def test_a_manager_that_stops_reading_never_blocks_the_frame_loop(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)  # bound, never read: the kernel queue fills up
        now = [0.0]
        notifier = Notifier(address=path, watchdog_usec="2000000", clock=lambda: now[0])

        def ping_many():
            for i in range(2000):
                now[0] = float(i)
                notifier.watchdog()

        worker = threading.Thread(target=ping_many, daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "a full notify socket blocked the sender"
        notifier.close()
