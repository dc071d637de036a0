"""The no-persistence guard (crowdsign.guard) refuses writes, network and programs.

The guard is an audit hook, which cannot be removed once added, so it is
installed in a child Python process (as `crowdsign run` installs it), never
in pytest's own: the child tries each thing for real and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from crowdsign.config import parse_config
from crowdsign.guard import policy_for

PROBE = textwrap.dedent("""
    import json, logging, os, socket, subprocess, sys
    from pathlib import Path
    from crowdsign.config import load_config
    from crowdsign import guard

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_config(sys.argv[1])
    g = guard.install(config, logging.getLogger("crowdsign"))
    tmp = Path(sys.argv[2])
    results = {}

    def attempt(name, fn):
        try:
            fn()
            results[name] = "allowed"
        except guard.PrivacyViolation:
            results[name] = "refused"
        except OSError as e:
            results[name] = f"oserror {e.errno}"

    attempt("read config", lambda: open(sys.argv[1]).read())
    attempt("open w", lambda: open(tmp / "frame.raw", "w"))
    attempt("open ab", lambda: open(tmp / "frame.raw", "ab"))
    attempt("open r+", lambda: open(sys.argv[1], "r+"))
    attempt("os.open creat", lambda: os.open(tmp / "x", os.O_WRONLY | os.O_CREAT))
    attempt("Path.write_bytes", lambda: (tmp / "y.jpg").write_bytes(b"x"))
    attempt("os.remove", lambda: os.remove(sys.argv[1]))
    attempt("os.rename", lambda: os.rename(sys.argv[1], tmp / "moved"))
    attempt("os.mkdir", lambda: os.mkdir(tmp / "d"))
    attempt("declared serial", lambda: os.close(os.open(sys.argv[3], os.O_RDWR | os.O_NOCTTY)))
    attempt("dev null", lambda: os.close(os.open(os.devnull, os.O_WRONLY)))
    attempt("inet socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    attempt("inet6 socket", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
    attempt("unix socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close())
    attempt("subprocess", lambda: subprocess.run(["true"]))
    results["dont_write_bytecode"] = sys.dont_write_bytecode
    results["dumpable"] = guard.is_dumpable()
    results["violations"] = g.violations
    results["left on disk"] = sorted(p.name for p in tmp.iterdir())
    print(json.dumps(results))
""")


def run_probe(tmp_path: Path, outputs: str = "") -> tuple[dict, str]:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    config = tmp_path / "crowdsign.toml"
    config.write_text(outputs.replace("PORT", port))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE, str(config), str(scratch), port],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


SERIAL = """
[[outputs]]
type = "serial"
port = "PORT"
"""


def test_guard_refuses_every_file_write_and_logs_each_as_a_privacy_violation(tmp_path):
    results, log = run_probe(tmp_path, SERIAL)
    for name in ("open w", "open ab", "open r+", "os.open creat", "Path.write_bytes",
                 "os.remove", "os.rename", "os.mkdir"):
        assert results[name] == "refused", name
    assert results["left on disk"] == [], "nothing was created"
    assert results["read config"] == "allowed"
    assert results["violations"] == log.count("privacy violation refused") >= 10
    assert "frame.raw" in log and "not a declared output" in log


def test_guard_allows_the_declared_serial_device_and_dev_null_only(tmp_path):
    results, _ = run_probe(tmp_path, SERIAL)
    assert results["declared serial"] == "allowed"
    assert results["dev null"] == "allowed"
    (tmp_path / "other").mkdir()
    undeclared, _ = run_probe(tmp_path / "other")
    assert undeclared["declared serial"] == "refused", "a serial port no output names"


def test_guard_refuses_network_sockets_and_programs_but_not_unix_sockets(tmp_path):
    results, _ = run_probe(tmp_path, SERIAL)
    assert results["inet socket"] == "refused"
    assert results["inet6 socket"] == "refused"
    assert results["subprocess"] == "refused"
    assert results["unix socket"] == "allowed", "sd_notify and journald are AF_UNIX"


def test_guard_turns_off_bytecode_writes_and_core_dumps(tmp_path):
    results, _ = run_probe(tmp_path)
    assert results["dont_write_bytecode"] is True
    assert results["dumpable"] is False


def test_policy_names_only_what_outputs_declare():
    config = parse_config({"source": {"uri": "v4l2:/dev/video0"}, "outputs": [
        {"type": "serial", "port": "/dev/ttyUSB0"},
        {"type": "serial", "port": "socket://192.0.2.10:4001"},
        {"type": "ibis", "port": "loop://"},
        {"type": "led_matrix", "device": "max7219", "spi_port": 0, "spi_device": 1}]},
        Path("/etc/crowdsign/crowdsign.toml"))
    policy = policy_for(config)
    assert {"/dev/ttyUSB0", "/dev/spidev0.1", "/dev/null"} <= policy.write_paths
    assert policy.network == {("192.0.2.10", 4001)}
    assert not any(p.startswith("/dev/dma_heap") for p in policy.write_paths)
    camera = policy_for(parse_config({"source": {"uri": "picamera2"}}))
    assert "/dev/dma_heap/linux,cma" in camera.write_paths, "libcamera's buffers"
    assert camera.network == frozenset()
