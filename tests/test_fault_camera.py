"""The camera goes away and comes back: the daemon reopens it with backoff,
the sign shows `unknown` meanwhile, and counting resumes without a restart.

(A camera that stalls without an error is tests/test_daemon_systemd.py's
stall test; a camera that fails while open, tests/test_sources_reopening.py.)
"""

from __future__ import annotations

import os
import time

from daemon_process import Daemon, replay_config
from shared_data import shared_path


def test_camera_that_disappears_and_comes_back_is_reopened_with_levels_unknown_between(tmp_path):
    camera = tmp_path / "camera"
    camera.mkdir()
    images = shared_path("data", "mall", "train", "images")
    for name in sorted(os.listdir(images))[:8]:
        (camera / name).symlink_to(images / name)
    config = replay_config(tmp_path, camera, at_end="loop", pace="realtime", stale_after_s=1.0)
    config.write_text(config.read_text().replace(
        "stall_timeout_s = 5.0", "stall_timeout_s = 5.0\nbackoff_initial_s = 0.2\nbackoff_max_s = 1.0"))
    daemon = Daemon("-c", str(config), "--json")
    try:
        daemon.wait_for(lambda u: u["total"] is not None, timeout=60)

        camera.rename(tmp_path / "unplugged")   # the device node is gone
        gone = daemon.wait_for(lambda u: all(v == "unknown" for v in u["levels"].values()),
                               timeout=20)
        assert gone["total"] is None
        time.sleep(3.0)                          # several reopen attempts fail meanwhile
        assert daemon.proc.poll() is None, "a missing camera does not stop the daemon"

        (tmp_path / "unplugged").rename(camera)  # plugged in again
        back = daemon.wait_for(lambda u: u["total"] is not None, timeout=20)
        assert back["frame"] > gone["frame"], "frame numbers go on across the reopen"
        assert daemon.terminate() == 0

        warnings = [line for line in daemon.stderr_lines if "WARNING" in line and "camera" in line]
        assert len(warnings) == 1, "one warning per outage, retries at debug level"
        assert any("is back after" in line for line in daemon.stderr_lines)
        assert any("levels are unknown" in line for line in daemon.stderr_lines)
    finally:
        daemon.kill()
