"""Soak: does the daemon grow over hours? RSS and open fds of `crowdsign run`.

Runs `crowdsign run` as a subprocess, as systemd would, on a looping replay
(realtime pace: the footage's own 10 fps, as a camera would deliver it) with
the COCO SSD, optionally a serial output on a socat pty read away by a
thread, for `--minutes N`. Every `--interval` seconds it samples the
process's VmRSS (/proc/PID/status) and its open file descriptors
(/proc/PID/fd), and reports:

- RSS at start, end and maximum;
- the least-squares slope of RSS in MB per hour, after a warm-up (allocator
  pools, TFLite arenas and FFmpeg's buffers settle in the first minutes);
- the fd count's minimum and maximum (after the warm-up and overall).

The goal (issue 6): under 1 MB/h, fds flat. Samples go to a CSV (default
build/soak/samples.csv; build/ is not tracked).

    nice -n 5 .venv/bin/python benchmarks/soak.py --minutes 60 --serial \
        --csv build/soak/soak-60min.csv --json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "video" / "vtest.avi"
DEFAULT_CARD = REPO / "models" / "cards" / "ssd_mobilenet_v1_coco_quant.toml"

CONFIG = """
[source]
uri = "replay:{video}"
pace = "realtime"
at_end = "loop"

[model]
path = "{card}"
num_threads = {threads}

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
thresholds = [2, 5]

[logging]
summary_interval_s = 60
"""

SERIAL = """
[[outputs]]
type = "serial"
port = "{port}"
baudrate = 115200
template = "{{zones}}\\r\\n"
rate_hz = 2
"""


def rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def fd_count(pid: int) -> Optional[int]:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against ts (seconds), per hour; 0 with < 2 points."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var * 3600.0


class SerialReader:
    """socat's pty pair: the daemon writes to one end, a thread reads the other away."""

    def __init__(self, directory: Path):
        if shutil.which("socat") is None:
            raise SystemExit("soak: --serial needs socat (apt install socat)")
        self.device = directory / "ttyDISPLAY"
        self.host = directory / "ttyHOST"
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.host}"],
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (self.device.exists() and self.host.exists()):
            if time.monotonic() > deadline:
                raise SystemExit("soak: socat did not create its ptys")
            time.sleep(0.05)
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = os.open(self.host, os.O_RDONLY | os.O_NOCTTY)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    self.lines += os.read(fd, 4096).count(b"\n")
        finally:
            os.close(fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.proc.terminate()
        self.proc.wait()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=2.0,
                   help="minutes left out of the slope and the fd range (default 2)")
    p.add_argument("-c", "--config", type=Path,
                   help="run this config instead of the built-in replay one")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--model", type=Path, default=DEFAULT_CARD, help="model card")
    p.add_argument("--threads", type=int, default=2, help="TFLite threads")
    p.add_argument("--serial", action="store_true",
                   help="add a serial output on a socat pty, read away by a thread")
    p.add_argument("--csv", type=Path, default=REPO / "build" / "soak" / "samples.csv")
    p.add_argument("--json", action="store_true", help="the summary as one JSON object")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="crowdsign-soak-"))
    serial = SerialReader(workdir) if args.serial else None
    if args.config is not None:
        config = args.config.resolve()
    else:
        config = workdir / "crowdsign.toml"
        text = CONFIG.format(video=args.video.resolve(), card=args.model.resolve(),
                             threads=args.threads)
        if serial is not None:
            text += SERIAL.format(port=serial.device)
        config.write_text(text)

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.csv.with_suffix(".daemon.log")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with open(log_path, "w") as daemon_log:
        proc = subprocess.Popen([sys.executable, "-m", "crowdsign", "run", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=daemon_log, env=env)
    samples: list[tuple[float, int, int]] = []  # (seconds since start, rss KiB, fds)
    started = time.monotonic()
    end = started + args.minutes * 60.0
    exit_code: Optional[int] = None
    try:
        with open(args.csv, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["t_s", "rss_kib", "fds"])
            while time.monotonic() < end:
                if proc.poll() is not None:
                    exit_code = proc.returncode
                    break
                rss, fds = rss_kib(proc.pid), fd_count(proc.pid)
                if rss is not None and fds is not None:
                    t = time.monotonic() - started
                    samples.append((t, rss, fds))
                    out.writerow([f"{t:.1f}", rss, fds])
                    f.flush()
                time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_code = proc.wait()
        if serial is not None:
            serial.close()

    warm = [s for s in samples if s[0] >= args.warmup * 60.0] or samples
    summary = {
        "minutes": round((samples[-1][0] if samples else 0.0) / 60.0, 2),
        "samples": len(samples),
        "warmup_minutes": args.warmup,
        "rss_start_mb": round(samples[0][1] / 1024, 1) if samples else None,
        "rss_after_warmup_mb": round(warm[0][1] / 1024, 1) if warm else None,
        "rss_end_mb": round(samples[-1][1] / 1024, 1) if samples else None,
        "rss_max_mb": round(max(s[1] for s in samples) / 1024, 1) if samples else None,
        "rss_slope_mb_per_h": round(slope_per_hour([s[0] for s in warm],
                                                   [s[1] / 1024 for s in warm]), 3),
        "fds_min": min(s[2] for s in warm) if warm else None,
        "fds_max": max(s[2] for s in warm) if warm else None,
        "fds_min_overall": min(s[2] for s in samples) if samples else None,
        "fds_max_overall": max(s[2] for s in samples) if samples else None,
        "serial_lines_read": serial.lines if serial is not None else None,
        "exit_code": exit_code,
        "csv": str(args.csv),
        "daemon_log": str(log_path),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"soak: {summary['minutes']} min, {summary['samples']} samples "
              f"(warm-up {args.warmup} min left out of slope and fd range)")
        print(f"RSS MB: start {summary['rss_start_mb']}, after warm-up "
              f"{summary['rss_after_warmup_mb']}, end {summary['rss_end_mb']}, "
              f"max {summary['rss_max_mb']}")
        print(f"RSS slope: {summary['rss_slope_mb_per_h']:+.3f} MB/h (goal: under 1 MB/h)")
        print(f"fds: {summary['fds_min']}..{summary['fds_max']} after warm-up "
              f"({summary['fds_min_overall']}..{summary['fds_max_overall']} overall)")
        if serial is not None:
            print(f"serial lines read: {serial.lines}")
        print(f"daemon exit code {exit_code}; samples in {args.csv}")
    ok_exit = exit_code == 0
    return 0 if ok_exit else 1


if __name__ == "__main__":
    raise SystemExit(main())
