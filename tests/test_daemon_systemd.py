"""The daemon talks to systemd as a Type=notify service with a watchdog should.

Each test runs `crowdsign run` as a subprocess on real footage through the
real SSD, with NOTIFY_SOCKET pointing at a socket the test bound itself.
"""

from __future__ import annotations

import os
import time

import pytest

from daemon_process import Daemon, NotifySocket, replay_config
from shared_data import shared_path


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def test_ready_status_watchdog_and_stopping_reach_systemd(tmp_path, notify):
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), pace="realtime")
    daemon = Daemon("-c", str(config), "--json", env=notify.env(watchdog_usec=2_000_000))
    try:
        ready_at = notify.wait_for("READY=1")
        first_update = daemon.next_update()
        notify.drain(3.0)
        assert daemon.proc.poll() is None

        ready = next(m for _, m in notify.messages if "READY=1" in m)
        assert "STATUS=" in ready and "people" in ready and "3 zones" in ready
        pings = notify.times_of("WATCHDOG=1")
        assert len(pings) >= 4
        assert min(pings) >= ready_at, "watchdog pings only once a frame was counted"
        statuses = [m for _, m in notify.messages if m.startswith("STATUS=")]
        assert statuses and all(" fps" in s and "zones" in s for s in statuses)
        assert first_update["frame"] >= 0 and set(first_update["zones"]) == {"left", "centre", "right"}

        stop_sent = time.monotonic()
        assert daemon.terminate() == 0
        exited = time.monotonic() - stop_sent
        notify.drain(0.3)
        assert any("STOPPING=1" in m for _, m in notify.messages)
        assert exited < 2.0, f"SIGTERM took {exited:.1f} s to stop the daemon"
    finally:
        daemon.kill()


def test_stalled_source_turns_levels_unknown_and_stops_watchdog_pings(tmp_path, notify):
    folder = tmp_path / "frames"
    folder.mkdir()
    images = shared_path("data", "mall", "train", "images")
    for name in sorted(os.listdir(images))[:6]:
        (folder / name).symlink_to(images / name)
    config = replay_config(tmp_path, folder, at_end="stall", pace="fast",
                           stale_after_s=1.0, stall_timeout_s=600)
    daemon = Daemon("-c", str(config), "--json", env=notify.env(watchdog_usec=1_000_000))
    try:
        known = daemon.wait_for(lambda u: u["total"] is not None)
        assert all(level != "unknown" for level in known["levels"].values())
        unknown = daemon.wait_for(lambda u: all(v == "unknown" for v in u["levels"].values()),
                                  timeout=20)
        assert unknown["total"] is None and all(v is None for v in unknown["zones"].values())
        assert unknown["frame"] == 5, "the stale update still names the last counted frame"

        notify.drain(0.5)
        pings_before = len(notify.times_of("WATCHDOG=1"))
        assert pings_before >= 1
        notify.drain(2.5)
        assert len(notify.times_of("WATCHDOG=1")) == pings_before, \
            "no frame counted, so no watchdog ping"
        assert daemon.proc.poll() is None, "a silent camera does not stop the daemon"
        assert daemon.terminate() == 0
        assert any("levels are unknown" in line for line in daemon.stderr_lines)
    finally:
        daemon.kill()


def test_replay_with_frames_limit_exits_cleanly_after_n_frames(tmp_path):
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"))
    daemon = Daemon("-c", str(config), "--json", "--frames", "12")
    try:
        assert daemon.proc.wait(timeout=120) == 0
        time.sleep(0.2)
        frames = []
        while not daemon.updates.empty():
            frames.append(daemon.updates.get()["frame"])
        assert frames[-1] == 11 and len(set(frames)) == 12
    finally:
        daemon.kill()
