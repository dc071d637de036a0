"""What the daemon does at the system-call level: nothing kept, nothing sent.

`crowdsign run` counts 300 frames of real footage (OpenCV's vtest.avi,
768x576 colour) through the COCO SSD, with a serial sign on a pseudo-terminal
and systemd's notify socket, under Debian's `strace -f` (every thread, so
OpenCV's FFmpeg and TFLite's C++ are watched as well as Python). Then:

- no file is opened for writing (open/openat/creat with O_WRONLY, O_RDWR,
  O_CREAT, O_TRUNC or O_APPEND) except the declared serial device;
- no file or folder is created, renamed, removed, linked or truncated;
- no file is mapped shared and writable (a write through memory);
- every socket is AF_UNIX (the notify socket), none AF_INET/AF_INET6/netlink:
  no network traffic at all, since no output declares a network peer;
- no single write (write, pwrite, writev, send*) is anywhere near a frame:
  each is under 64 KiB, where the smallest picture the daemon handles is the
  model input, 300x300x3 = 270,000 bytes (a 300x300 luma plane would still be
  90,000), and the decoded frames are 768x576x3 = 1.3 MB;
- and in all, fewer than 2 KiB per counted frame are written anywhere
  (stdout's JSON, the serial lines, the log, the notify datagrams), so a
  frame cannot leave in small pieces either.

The daemon runs with PYTHONDONTWRITEBYTECODE, as the unit runs it (and the
guard sets sys.dont_write_bytecode itself), so imports write no .pyc.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from daemon_process import NotifySocket, replay_config
from shared_data import require_tool, shared_path

FRAMES = 300
MAX_WRITE = 64 * 1024
MAX_BYTES_PER_FRAME = 2 * 1024
SMALLEST_FRAME = 300 * 300 * 3

WRITE_FLAGS = re.compile(r"\bO_(WRONLY|RDWR|CREAT|TRUNC|APPEND|TMPFILE)\b")
LINE = re.compile(r"^(?P<pid>\d+) +(?P<call>\w+)\((?P<args>.*)$")
CHANGES = {"rename", "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat",
           "rmdir", "link", "linkat", "symlink", "symlinkat", "truncate", "ftruncate",
           "fallocate", "mknod", "mknodat", "creat"}
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2", "sendto", "sendmsg",
          "sendmmsg"}
TRACED = ("%file,%network,write,pwrite64,writev,pwritev,pwritev2,mmap,ftruncate,fallocate,"
          "memfd_create")


def strace() -> str:
    path = require_tool("strace", "strace")
    return path


def write_lengths(call: str, args: str) -> list[int]:
    """Bytes a write-like call asks to write, from its strace arguments (-s 0)."""
    if call in ("writev", "pwritev", "pwritev2", "sendmsg", "sendmmsg"):
        return [sum(int(n) for n in re.findall(r"iov_len=(\d+)", args))]
    # write(fd, ""..., N), pwrite64(fd, ""..., N, off), sendto(fd, ""..., N, flags, ...)
    m = re.match(r"[^,]*, (?:\"\"\.\.\.|\"\"|NULL|0x[0-9a-f]+), (\d+)", args)
    return [int(m.group(1))] if m else []


@pytest.fixture
def traced_run(tmp_path):
    """Run the daemon under strace; (exit code, parsed calls, strace lines, daemon stderr)."""
    tracer = strace()
    master, slave = os.openpty()
    port = os.ttyname(slave)
    notify = NotifySocket(tmp_path)
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"), extra=f"""
[[outputs]]
type = "serial"
port = "{port}"
baudrate = 115200
rate_hz = 50
""")
    out = tmp_path / "strace.txt"
    env = {**os.environ, **notify.env(), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("JOURNAL_STREAM", None)
    reader_stop = False
    import threading

    def drain_pty():
        import select
        while not reader_stop:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    def drain_notify():  # as systemd does: a full datagram queue would block the sender
        while not reader_stop:
            notify.drain(0.2)

    threads = [threading.Thread(target=drain_pty, daemon=True),
               threading.Thread(target=drain_notify, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        proc = subprocess.run(
            [tracer, "-f", "-qq", "-s", "0", "-yy", "-e", f"trace={TRACED}", "-o", str(out),
             sys.executable, "-m", "crowdsign", "run", "-c", str(config), "--json",
             "--frames", str(FRAMES)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=240)
    finally:
        reader_stop = True
        for thread in threads:
            thread.join(timeout=2)
        notify.close()
        os.close(master)
        os.close(slave)
    calls = []
    for line in out.read_text().splitlines():
        m = LINE.match(line)
        if m and not line.startswith("<"):
            calls.append((m.group("call"), m.group("args"), line))
    return proc, calls, port, notify


def test_strace_finds_no_file_written_no_network_and_no_frame_sized_write(traced_run):
    proc, calls, port, notify = traced_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(frames) >= FRAMES, "the daemon counted its frames under strace"
    assert any("READY=1" in m for _, m in notify.messages)
    assert "privacy violation" not in proc.stderr
    assert len(calls) > 1000, "strace saw the run"

    # no file opened for writing but the declared serial device
    opened_for_writing = []
    for call, args, line in calls:
        if call in ("open", "openat", "openat2") and WRITE_FLAGS.search(args):
            path = re.search(r'"([^"]*)"', args)
            if path is None or path.group(1) not in (port, "/dev/null"):
                opened_for_writing.append(line)
    assert opened_for_writing == []
    assert any(call == "openat" and port in args for call, args, _ in calls), \
        "the serial sign was opened: the trace covers the outputs too"

    # nothing created, renamed, removed, linked or truncated
    assert [line for call, _, line in calls if call in CHANGES] == []

    # no writable shared mapping of a file
    shared = [line for call, args, line in calls if call == "mmap"
              and "MAP_SHARED" in args and "PROT_WRITE" in args and ", -1," not in args]
    assert shared == []

    # only AF_UNIX sockets: no network at all
    families = {re.match(r"(\w+)", args).group(1) for call, args, _ in calls
                if call in ("socket", "socketpair")}
    assert families <= {"AF_UNIX"}, families
    inet = [line for call, args, line in calls
            if call in ("connect", "sendto", "sendmsg", "bind") and "AF_INET" in args]
    assert inet == []

    # no write anywhere near a frame, and little written in all
    sizes = [n for call, args, _ in calls if call in WRITES for n in write_lengths(call, args)]
    assert sizes, "the writes (JSON lines, serial, log, notify) were seen"
    assert max(sizes) < MAX_WRITE < SMALLEST_FRAME, max(sizes)
    assert sum(sizes) < MAX_BYTES_PER_FRAME * FRAMES, sum(sizes)
