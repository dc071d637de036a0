"""SIGTERM in every phase of the daemon's life ends it cleanly (exit 0,
STOPPING=1 to systemd), and SIGHUP reloads the config without dropping the
camera; a broken new config is refused with one log line and the old one kept.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon_process import SSD_CARD, Daemon, NotifySocket, replay_config
from shared_data import shared_path


class Systemd(NotifySocket):
    """The notify socket, read all the time in a thread, as systemd reads it."""

    def __init__(self, directory):
        super().__init__(directory)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            self.drain(0.2)

    def saw(self, text: str) -> bool:
        return any(text in m for _, m in list(self.messages))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        super().close()


@pytest.fixture
def systemd(tmp_path):
    sock = Systemd(tmp_path)
    yield sock
    sock.close()


@dataclass
class Counting:
    """A daemon replaying vtest.avi in real time that has counted its first frame."""
    config: Path
    daemon: Daemon
    first: dict


@pytest.fixture
def counting(tmp_path, systemd):
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), pace="realtime")
    daemon = Daemon("-c", str(config), "--json", env=systemd.env())
    try:
        yield Counting(config, daemon, daemon.wait_for(lambda u: u["total"] is not None))
    finally:
        daemon.kill()


def wait_for_line(daemon: Daemon, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in daemon.stderr_lines):
        assert daemon.proc.poll() is None, daemon.stderr_lines
        assert time.monotonic() < deadline, f"no {text!r} in {daemon.stderr_lines}"
        time.sleep(0.01)


def stopped_cleanly(daemon: Daemon, systemd: Systemd) -> None:
    assert daemon.terminate(timeout=10) == 0, daemon.stderr_lines
    time.sleep(0.3)
    assert systemd.saw("STOPPING=1")
    assert not any("Traceback" in line for line in daemon.stderr_lines)


def test_sigterm_while_the_model_loads_exits_0_with_stopping(tmp_path, systemd):
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), pace="realtime")
    daemon = Daemon("-c", str(config), "--json", env=systemd.env())
    try:
        wait_for_line(daemon, "loading model")
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_cleanly(daemon, systemd)
        assert not systemd.saw("READY=1"), "stopped before the first frame"
    finally:
        daemon.kill()


def test_sigterm_while_backing_off_from_a_missing_camera_exits_0_with_stopping(tmp_path, systemd):
    config = replay_config(tmp_path, tmp_path / "no-camera-here", pace="realtime")
    config.write_text(config.read_text().replace(
        "stall_timeout_s = 5.0", "stall_timeout_s = 5.0\nbackoff_initial_s = 10.0\n"
                                 "backoff_max_s = 30.0"))
    daemon = Daemon("-c", str(config), "--json", env=systemd.env())
    try:
        wait_for_line(daemon, "cannot be opened, retrying")
        time.sleep(0.5)   # inside the 10 s backoff
        sent = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_cleanly(daemon, systemd)
        assert time.monotonic() - sent < 3.0, "SIGTERM ends a backoff at once"
        assert not systemd.saw("READY=1")
    finally:
        daemon.kill()


def test_sigterm_mid_run_exits_0_with_stopping_and_the_sign_told_no_data(counting, systemd):
    daemon = counting.daemon
    stopped_cleanly(daemon, systemd)
    last = None
    while not daemon.updates.empty():
        last = daemon.updates.get()
    assert last is not None and last["total"] is None, "the last word to the sign is no data"


def video_fds(pid: int, name: str) -> dict[int, int]:
    """fd -> read position of each open descriptor of `name` in process `pid`."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name):
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    found[int(fd)] = int(f.readline().split()[1])
        except FileNotFoundError:
            continue
    return found


def test_sighup_reloads_zones_and_levels_without_dropping_the_camera(counting, systemd):
    config, daemon, first = counting.config, counting.daemon, counting.first
    assert set(first["zones"]) == {"left", "centre", "right"}
    time.sleep(1.0)
    before = video_fds(daemon.proc.pid, "vtest.avi")
    assert len(before) == 1

    text = config.read_text()
    text = text.replace('name = "left"', 'name = "west"').replace(
        "thresholds = [2, 5]", "thresholds = [1, 3]")
    config.write_text(text)
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_for(lambda u: "west" in u["zones"] and u["total"] is not None,
                               timeout=30)
    assert set(reloaded["zones"]) == {"west", "centre", "right"}
    time.sleep(1.0)
    after = video_fds(daemon.proc.pid, "vtest.avi")
    assert after.keys() == before.keys(), "the same open recording"
    assert list(after.values())[0] >= list(before.values())[0], \
        "read on from where it was, not reopened at the start"
    line = next(line for line in daemon.stderr_lines if "config reloaded" in line)
    assert "camera kept" in line and "model reloaded" in line, line
    assert reloaded["frame"] > first["frame"]
    stopped_cleanly(daemon, systemd)


def test_sighup_with_a_broken_config_keeps_the_running_one_with_one_log_line(
        counting, systemd, tmp_path):
    config, daemon = counting.config, counting.daemon
    good = config.read_text()
    for broken in (good.replace("window = 3", "window = 0"),          # invalid value
                   good + "\n[nonsense\n",                            # not TOML
                   good.replace(str(SSD_CARD), str(tmp_path / "gone.toml"))):  # no model
        errors_before = sum(" ERROR: " in line for line in daemon.stderr_lines)
        config.write_text(broken)
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while sum(" ERROR: " in line for line in daemon.stderr_lines) == errors_before:
            assert time.monotonic() < deadline, daemon.stderr_lines
            time.sleep(0.05)
        time.sleep(0.5)
        new_errors = [line for line in daemon.stderr_lines if " ERROR: " in line]
        assert len(new_errors) == errors_before + 1, new_errors
        assert "config reload refused, keeping the running config" in new_errors[-1]
        update = daemon.wait_for(lambda u: u["total"] is not None, timeout=10)
        assert set(update["zones"]) == {"left", "centre", "right"}
    assert daemon.proc.poll() is None
    assert not any("config reloaded" in line for line in daemon.stderr_lines)
    stopped_cleanly(daemon, systemd)


def test_sighup_adding_a_serial_output_opens_it_and_keeps_the_camera(pty_pair, counting, systemd):
    from test_daemon_serial import LINE, read_lines, serial_output

    config, daemon = counting.config, counting.daemon
    master, port = pty_pair
    before = video_fds(daemon.proc.pid, "vtest.avi")
    config.write_text(config.read_text() + serial_output(port))
    daemon.proc.send_signal(signal.SIGHUP)
    lines = read_lines(master, 3, timeout=30)
    assert len(lines) == 3 and all(LINE.match(line) for line in lines), lines
    line = next(line for line in daemon.stderr_lines if "config reloaded" in line)
    assert "outputs reopened (serial" in line and "camera kept" in line, line
    assert video_fds(daemon.proc.pid, "vtest.avi").keys() == before.keys()
    assert not any("privacy" in line.lower() for line in daemon.stderr_lines), \
        "the guard knows the new output before it is opened"
    stopped_cleanly(daemon, systemd)


def test_sighup_with_a_new_source_reopens_the_camera_and_counting_goes_on(counting, systemd):
    config, daemon = counting.config, counting.daemon
    config.write_text(config.read_text().replace('pace = "realtime"', 'pace = "fast"'))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for_line(daemon, "config reloaded", timeout=30)
    line = next(line for line in daemon.stderr_lines if "config reloaded" in line)
    assert "camera reopened" in line and "model kept" in line and "outputs kept" in line, line
    after_reload = daemon.wait_for(lambda u: u["total"] is not None, timeout=30)
    later = daemon.wait_for(lambda u: u["frame"] > after_reload["frame"] + 20, timeout=30)
    assert later["total"] is not None, "counting goes on from the reopened camera"
    stopped_cleanly(daemon, systemd)
