"""`crowdsign doctor`, run as a technician would, and its checks one by one.

The end-to-end tests run the real command on this machine with the replay
source, the real SSD and a pseudo-terminal standing in for the sign, and check
every line against what is actually true here (this machine's root is
probably writable, its journal persistent, and systemd may not be PID 1:
the report must say so). The unit tests feed single checks a fake system.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crowdsign import doctor
from crowdsign.doctor import FAIL, OK, WARN, System
from daemon_process import SSD_CARD
from shared_data import shared_path

ORDER = ["config", "model", "camera", "output", "temperature", "throttling", "journal",
         "rootfs", "swap", "service"]
LINE = re.compile(r"(OK|WARN|FAIL) +(\S+(?: #\d+)?) +(.+)")


def write_config(tmp_path: Path, video: Path, port: str, extra: str = "") -> Path:
    path = tmp_path / "crowdsign.toml"
    path.write_text(f"""
[source]
uri = "replay:{video}"
pace = "realtime"

[model]
path = "{SSD_CARD}"
num_threads = 2

[[zones]]
name = "left"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
[[zones]]
name = "right"
polygon = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]

[[outputs]]
type = "serial"
port = "{port}"
{extra}
""")
    return path


def run_doctor(*args: str, cwd: Path) -> tuple[int, list[tuple[str, str, str]], str]:
    proc = subprocess.run([sys.executable, "-m", "crowdsign", "doctor", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    parsed = []
    for line in lines:
        m = LINE.fullmatch(line)
        assert m, f"not a report line: {line!r}\n{proc.stdout}"
        parsed.append((m.group(1), m.group(2), m.group(3)))
    return proc.returncode, parsed, proc.stdout


def test_doctor_reports_this_machine_truthfully(tmp_path, pty_pair):
    master, port = pty_pair
    work = tmp_path / "cwd"
    work.mkdir()
    config = write_config(tmp_path, shared_path("video", "vtest.avi"), port)
    rc, report, text = run_doctor("-c", str(config), cwd=work)
    print("\n" + text)
    status = {name.split(" #")[0].split()[0]: (s, detail) for s, name, detail in report}
    assert [name.split(" #")[0].split()[0] for _, name, _ in report] == ORDER, text

    assert status["config"] == (OK, f"{config}: valid, 2 zones (left, right), 1 output")
    s, detail = status["model"]
    assert s == OK and re.search(r"one inference [\d.]+ ms", detail), detail
    s, detail = status["camera"]
    assert s == OK, detail
    frames, fps = re.search(r"(\d+) frames in 2\.0 s \(([\d.]+) fps\), 768x576", detail).groups()
    assert int(frames) >= 5 and 5 < float(fps) < 15, "vtest.avi plays at 10 fps"
    assert detail.endswith("exposure n/a (a recording)")
    assert status["output"] == (OK, f"serial {port}: present and opens (nothing written)")

    # The board's lines, against what this machine really is.
    zones = sorted(Path("/sys/class/thermal").glob("thermal_zone*"))
    s, detail = status["temperature"]
    if not zones:
        assert s == WARN and detail.startswith("no thermal zone"), detail
    else:
        hottest = max(int((z / "temp").read_text()) / 1000 for z in zones)
        assert abs(float(detail.split()[0]) - hottest) < 5, detail
    s, detail = status["throttling"]
    if shutil.which("vcgencmd") is None:
        assert (s, detail.split(":")[0]) == (OK, "n/a")
    root = [line.split() for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == "/"][-1]
    s, detail = status["rootfs"]
    if "ro" in root[3].split(","):
        assert s == OK and "read-only" in detail
    else:
        assert s == WARN and detail.startswith("/ is mounted read-write"), detail
    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    assert status["swap"][0] == (WARN if swaps else OK)
    storage, _ = doctor.journald_storage(System())
    s, detail = status["journal"]
    assert f"Storage={storage}" in detail
    assert s == (OK if storage in ("volatile", "none") else WARN)
    if not Path("/run/systemd/system").is_dir():
        assert status["service"][0] == WARN and "systemd is not running" in status["service"][1]

    assert rc == (1 if any(s == FAIL for s, _, _ in report) else 0)
    # Nothing went to the sign, nothing was saved.
    os.set_blocking(master, False)
    with pytest.raises(BlockingIOError):
        os.read(master, 1024)
    assert list(work.iterdir()) == []


def test_a_missing_sign_and_a_missing_video_fail(tmp_path):
    config = write_config(tmp_path, tmp_path / "gone.avi", "/dev/ttyUSB97")
    rc, report, text = run_doctor("-c", str(config), cwd=tmp_path)
    status = {name: (s, detail) for s, name, detail in report}
    assert rc == 1
    assert status["camera"][0] == FAIL and "gone.avi" in status["camera"][1]
    s, detail = status["output #1"]
    assert s == FAIL and "/dev/ttyUSB97" in detail and "no such device" in detail
    assert "hint:" in detail
    assert status["model"][0] == OK, "the other checks still run"


def test_a_bad_config_fails_and_the_board_is_still_checked(tmp_path):
    config = tmp_path / "crowdsign.toml"
    config.write_text("[levels]\nwindow = 0\n[bogus]\n")
    rc, report, text = run_doctor("-c", str(config), cwd=tmp_path)
    names = [name for _, name, _ in report]
    assert rc == 1
    assert report[0][0] == FAIL and "[bogus]: unknown section" in report[0][2]
    assert all(s == WARN and "not checked" in d for s, n, d in report[1:4]), text
    assert names[4:] == ["temperature", "throttling", "journal", "rootfs", "swap", "service"]


# --- single checks on a fake system -------------------------------------------

def fake_system(tmp_path: Path, **kw) -> System:
    defaults = dict(proc_mounts=tmp_path / "mounts", proc_swaps=tmp_path / "swaps",
                    thermal=tmp_path / "thermal", journald_conf=tmp_path / "journald.conf",
                    journald_dirs=(tmp_path / "usr.d", tmp_path / "run.d", tmp_path / "etc.d"),
                    persistent_journal=tmp_path / "var-log-journal",
                    systemd_running=tmp_path / "run-systemd-system",
                    vcgencmd=str(tmp_path / "no-vcgencmd"))
    defaults.update(kw)
    return System(**defaults)


@pytest.mark.parametrize("millideg, expected", [(48_500, OK), (72_000, WARN), (85_000, FAIL)])
def test_temperature_levels(tmp_path, millideg, expected):
    for i, t in enumerate((30_000, millideg)):
        zone = tmp_path / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(f"{t}\n")
        (zone / "type").write_text("cpu-thermal\n")
    check = doctor.check_temperature(fake_system(tmp_path))
    assert check.status == expected and check.detail.startswith(f"{millideg / 1000:.1f} °C")
    assert (check.hint != "") == (expected != OK)


@pytest.mark.parametrize("answer, expected, words", [
    ("throttled=0x0", OK, "never throttled"),
    ("throttled=0x50000", WARN, "since boot under-voltage, throttled"),
    ("throttled=0x50005", FAIL, "now under-voltage, throttled"),
])
def test_vcgencmd_get_throttled(tmp_path, answer, expected, words):
    fake = tmp_path / "vcgencmd"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = get_throttled ] && echo {answer}\n")
    fake.chmod(0o755)
    check = doctor.check_throttling(fake_system(tmp_path, vcgencmd=str(fake)))
    assert check.status == expected and words in check.detail, check


def test_journald_drop_ins_are_read_in_systemd_order(tmp_path):
    system = fake_system(tmp_path)
    for d in system.journald_dirs:
        d.mkdir()
    system.journald_conf.write_text("[Journal]\nStorage=persistent\n")
    (tmp_path / "usr.d" / "50-vendor.conf").write_text("[Journal]\nStorage=persistent\n")
    assert doctor.check_journal(system).status == WARN
    (tmp_path / "etc.d" / "crowdsign-volatile.conf").write_text("[Journal]\nStorage=volatile\n")
    check = doctor.check_journal(system)
    assert check.status == OK and str(tmp_path / "etc.d") in check.detail
    # A later name wins; the same name in /etc hides /usr/lib's.
    (tmp_path / "usr.d" / "zz-late.conf").write_text("[Journal]\nStorage=auto\n")
    system.persistent_journal.mkdir()
    assert doctor.check_journal(system).status == WARN
    (tmp_path / "etc.d" / "zz-late.conf").write_text("[Journal]\nStorage=volatile\n")
    assert doctor.check_journal(system).status == OK


def test_root_swap_and_service_on_a_fake_system(tmp_path):
    system = fake_system(tmp_path)
    system.proc_mounts.write_text("/dev/root / ext4 rw 0 0\n/dev/vda / ext4 ro,noatime 0 0\n")
    assert doctor.check_root(system).status == OK
    system.proc_mounts.write_text("/dev/vda / ext4 rw,relatime 0 0\n")
    assert doctor.check_root(system).status == WARN
    system.proc_swaps.write_text("Filename Type Size Used Priority\n")
    assert doctor.check_swap(system).status == OK
    system.proc_swaps.write_text("Filename Type Size Used Priority\n/swap file 1 0 -2\n")
    assert doctor.check_swap(system).status == WARN
    assert doctor.check_service(system).status == WARN
