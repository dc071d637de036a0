"""Running `crowdsign run` as a real subprocess, as systemd would, for end-to-end tests."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
SSD_CARD = REPO / "models" / "cards" / "ssd_mobilenet_v1_coco_quant.toml"


def replay_config(tmp_path: Path, source: Path, *, at_end: str = "loop", pace: str = "fast",
                  stale_after_s: float = 3.0, stall_timeout_s: float = 5.0,
                  extra: str = "") -> Path:
    """A config replaying `source` through the COCO SSD with three vertical zones."""
    path = tmp_path / "crowdsign.toml"
    path.write_text(f"""
[source]
uri = "replay:{source}"
pace = "{pace}"
at_end = "{at_end}"
stall_timeout_s = {stall_timeout_s}

[model]
path = "{SSD_CARD}"
num_threads = 2

[[zones]]
name = "left"
polygon = [[0.0, 0.0], [0.34, 0.0], [0.34, 1.0], [0.0, 1.0]]
[[zones]]
name = "centre"
polygon = [[0.33, 0.0], [0.67, 0.0], [0.67, 1.0], [0.33, 1.0]]
[[zones]]
name = "right"
polygon = [[0.66, 0.0], [1.0, 0.0], [1.0, 1.0], [0.66, 1.0]]

[levels]
window = 3
thresholds = [2, 5]
stale_after_s = {stale_after_s}
publish_interval_s = 0.2

[logging]
summary_interval_s = 1
{extra}
""")
    return path


class Daemon:
    """`crowdsign run` in a subprocess; JSON updates and stderr lines collected in threads."""

    def __init__(self, *args: str, env: Optional[dict] = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crowdsign", "run", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        self.updates: "queue.Queue[dict]" = queue.Queue()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.updates.put(json.loads(line))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def next_update(self, timeout: float = 30.0) -> dict:
        return self.updates.get(timeout=timeout)

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        """The first update satisfying `predicate`, reading updates until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            update = self.next_update(max(0.01, deadline - time.monotonic()))
            if predicate(update):
                return update
            if time.monotonic() > deadline:
                raise AssertionError("no matching update before the deadline")

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET, recording what arrives."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def env(self, watchdog_usec: int = 2_000_000) -> dict:
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(watchdog_usec)}

    def drain(self, seconds: float) -> None:
        """Receive for `seconds`, appending (arrival time, message) pairs."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, text: str, timeout: float = 60.0) -> float:
        """Receive until a message containing `text` arrives; its arrival time."""
        deadline = time.monotonic() + timeout
        seen = len(self.messages)
        while time.monotonic() < deadline:
            for t, message in self.messages[seen:]:
                if text in message:
                    return t
            seen = len(self.messages)
            self.drain(0.2)
        raise AssertionError(f"no {text!r} from the daemon within {timeout} s: {self.messages}")

    def times_of(self, text: str) -> list[float]:
        return [t for t, m in self.messages if text in m]

    def close(self) -> None:
        self.sock.close()
