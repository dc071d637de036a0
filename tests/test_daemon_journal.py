"""Under systemd the daemon logs to journald with structured CROWDSIGN_* fields.

The test uses the machine's journald, or starts Debian's systemd-journald by
itself where none runs (containers, CI), and reads the entries back with
journalctl, as a field technician would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from daemon_process import Daemon, replay_config
from shared_data import require, require_tool, shared_path

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
JOURNALD = Path("/lib/systemd/systemd-journald")


def journald_listening() -> bool:
    """Whether a journald answers on its socket (a stale socket file refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(str(JOURNAL_SOCKET))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def journald():
    """A running journald: the machine's, or one started for these tests."""
    started = None
    if not journald_listening():
        require(JOURNALD.exists() and os.geteuid() == 0,
                "no journald running and cannot start one (needs root and Debian's systemd)")
        started = subprocess.Popen([str(JOURNALD)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not journald_listening():
            assert time.monotonic() < deadline, "systemd-journald did not create its socket"
            time.sleep(0.05)
    require_tool("journalctl", "systemd")
    yield
    if started is not None:
        started.terminate()
        started.wait()


def journal_entries(pid: int) -> list[dict]:
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", f"_PID={pid}"],
                         capture_output=True, text=True, timeout=30).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_summary_lines_carry_counts_fps_and_zone_fields(tmp_path, journald):
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), pace="realtime")
    daemon = Daemon("-c", str(config), "--json", env={"JOURNAL_STREAM": "8:12345"})
    try:
        daemon.wait_for(lambda u: u["frame"] >= 25, timeout=60)
        assert daemon.terminate() == 0
        entries = []
        deadline = time.monotonic() + 10
        while not any("CROWDSIGN_TOTAL" in e for e in entries) and time.monotonic() < deadline:
            time.sleep(0.2)
            entries = journal_entries(daemon.proc.pid)
    finally:
        daemon.kill()

    assert entries, "nothing from the daemon reached the journal"
    assert all(e.get("SYSLOG_IDENTIFIER") == "crowdsign" for e in entries)
    summaries = [e for e in entries if "CROWDSIGN_TOTAL" in e]
    assert summaries, [e["MESSAGE"] for e in entries]
    s = summaries[-1]
    assert float(s["CROWDSIGN_FPS"]) > 0
    assert float(s["CROWDSIGN_INFER_MS"]) > 0
    zones = {k for k in s if k.startswith("CROWDSIGN_ZONE_")}
    assert zones == {"CROWDSIGN_ZONE_LEFT", "CROWDSIGN_ZONE_CENTRE", "CROWDSIGN_ZONE_RIGHT"}
    assert float(s["CROWDSIGN_TOTAL"]) >= 0
    messages = [e["MESSAGE"] for e in entries]
    assert any(m.startswith("ready") for m in messages)
    assert len(summaries) < 10, "a summary every summary_interval_s, not every frame"
    assert not [line for line in daemon.stderr_lines if line.startswith("crowdsign")], \
        "under systemd, the daemon's logs go to the journal, not stderr"
