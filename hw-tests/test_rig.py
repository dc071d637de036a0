"""crowdsign on a board (the VM image, or a Pi on a bench), checked as a technician would.

The tests run in file order on one booted rig; the watchdog test, which
breaks the daemon on purpose and mends it, is last.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from conftest import VM_ZONES

UNIT = "crowdsign"
LINE = r"\w+=(\d+|--)(;\w+=(\d+|--))*"   # the sign's template "{zones}\r\n"


def show(rig, *props: str) -> dict[str, str]:
    out = rig.run(f"systemctl show {UNIT} " + " ".join(f"-p {p}" for p in props)).check()
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(rig, *args: str) -> str:
    return rig.run(f"journalctl -u {UNIT} -b --no-pager " + " ".join(args)).check()


def test_unit_is_active_only_after_ready(rig):
    props = show(rig, "ActiveState", "SubState", "Type", "NotifyAccess", "StatusText",
                 "ActiveEnterTimestampMonotonic", "NRestarts")
    assert props["Type"] == "notify"
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    assert props["NRestarts"] == "0"
    # A notify unit turns active on READY=1, which the daemon sends just before it
    # logs "ready: first frame counted" -- well after "starting:" (logged before the
    # camera opens), since the first frame takes seconds to count.
    entries = [json.loads(line) for line in journal(rig, "-o", "json").splitlines()
               if line.startswith("{")]

    def when(prefix: str) -> int:
        return next(int(e["__MONOTONIC_TIMESTAMP"]) for e in entries
                    if str(e.get("MESSAGE", "")).startswith(prefix))

    active = int(props["ActiveEnterTimestampMonotonic"])
    starting, ready = when("starting: model"), when("ready: first frame counted")
    assert starting < active <= ready + 1_000_000, (starting, active, ready)


def test_systemctl_status_shows_the_status_line(rig):
    out = rig.run(f"systemctl status {UNIT} --no-pager -l").out  # exit 0 only when active
    assert "Active: active (running)" in out, out
    assert re.search(r'Status: "\d+ people \| \d+ zones \| [\d.]+ fps \| serial ok"', out), out


def test_journal_has_the_crowdsign_fields(rig):
    def summaries(out: str) -> list[dict]:
        entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [e for e in entries if "CROWDSIGN_TOTAL" in e]

    out = rig.wait_for(f"journalctl -u {UNIT} -b --no-pager -o json -n 50",
                       lambda o: summaries(o), timeout=60)
    entry = summaries(out)[-1]
    assert entry["SYSLOG_IDENTIFIER"] == "crowdsign"
    assert float(entry["CROWDSIGN_FPS"]) >= 0   # 0 when frames are over 5 s apart (TCG)
    assert float(entry["CROWDSIGN_INFER_MS"]) > 0
    assert float(entry["CROWDSIGN_TOTAL"]) >= 0
    zones = {k for k in entry if k.startswith("CROWDSIGN_ZONE_")}
    assert zones, entry
    if rig.name == "vm":
        assert zones == {f"CROWDSIGN_ZONE_{z.upper()}" for z in VM_ZONES}


@pytest.mark.display
def test_counts_arrive_on_the_signs_bus(rig):
    # Under TCG a frame takes seconds to count; on a Pi the sign gets rate_hz lines a second.
    lines = rig.display_lines(4, timeout=60)
    counted = [line for line in lines if re.fullmatch(LINE, line)]
    assert len(counted) >= 3, lines
    assert any(re.search(r"=\d+", line) for line in counted), "only unknown counts: " + repr(lines)
    assert all(re.fullmatch(LINE, line) for line in lines), lines


@pytest.mark.vm_only
@pytest.mark.display
def test_the_boot_partition_config_wins_over_etc(rig):
    # /etc/crowdsign/crowdsign.toml in the image has zones left/centre/right;
    # the boot partition's (hw-tests/conftest.py) has car1/car2.
    assert "name = \"left\"" in rig.run("cat /etc/crowdsign/crowdsign.toml").check()
    assert "car1" in rig.run("cat /boot/firmware/crowdsign.toml").check()
    lines = rig.display_lines(2, timeout=60)
    assert lines and all(re.fullmatch(r"car1=(\d+|--);car2=(\d+|--)", line) for line in lines), lines


def test_root_is_read_only_without_swap_and_the_journal_in_ram(rig):
    assert "ro" in rig.run("findmnt -no OPTIONS /").check().strip().split(",")
    probe = f"/crowdsign-probe-{uuid.uuid4().hex[:8]}"
    result = rig.run(f"touch {probe}")
    assert result.rc != 0 and "Read-only file system" in result.out, result
    assert rig.run("tail -n +2 /proc/swaps").check().strip() == ""
    assert "Storage=volatile" in rig.run(
        "cat /etc/systemd/journald.conf.d/*.conf").check()
    assert rig.run("test -d /run/log/journal && ! test -e /var/log/journal").rc == 0


def test_the_service_cannot_write_anywhere(rig):
    """Inside the service's mount namespace and as its dynamic user, every write fails."""
    pid = show(rig, "MainPID")["MainPID"]
    assert int(pid) > 0
    ids = rig.run(f"stat -c '%u %g' /proc/{pid}").check().split()
    uid, gid = ids
    assert int(uid) != 0, "DynamicUser: the daemon does not run as root"
    # crowdsign marks itself not dumpable (prctl PR_SET_DUMPABLE 0): the kernel then
    # gives the files inside /proc/PID (not the folder itself) to root.
    owner = rig.run(f"stat -c '%u' /proc/{pid}/environ").check().strip()
    assert owner == "0", "not dumpable: no core dump, no ptrace by the service's user"
    targets = ["/", "/etc", "/etc/crowdsign", "/opt/crowdsign", "/usr/share/crowdsign",
               "/var/log", "/var/lib", "/run", "/boot/firmware", "/dev/shm", "/root", "/home"]
    script = "; ".join(
        f"if (echo x > {t}/.probe) 2>/dev/null; then echo WROTE {t}; fi" for t in targets)
    out = rig.run(f"nsenter -t {pid} -m setpriv --reuid={uid} --regid={gid} --clear-groups "
                  f"sh -c '{script}; echo done'").check()
    assert out.strip().endswith("done"), out
    assert "WROTE" not in out, out
    # As root, inside the service's view: the file system is read-only, not just unwritable.
    out = rig.run(f"nsenter -t {pid} -m sh -c 'touch /etc/crowdsign/.probe'")
    assert out.rc != 0 and "Read-only file system" in out.out, out


@pytest.mark.serial_loopback
def test_serial_loopback_carries_a_line(rig):
    nonce = uuid.uuid4().hex[:8]
    code = ("import serial; p = serial.Serial(%r, 115200, timeout=3); "
            "p.reset_input_buffer(); p.write(b'crowdsign-%s\\r\\n'); print(p.readline())"
            % (rig.loopback_port, nonce))
    out = rig.run(f"/opt/crowdsign/venv/bin/python -c \"{code}\"").check()
    assert f"crowdsign-{nonce}" in out, out


def test_doctor_on_the_device(rig):
    result = rig.run("crowdsign doctor", timeout=300)
    lines = [line for line in result.out.splitlines() if re.match(r"(OK|WARN|FAIL) ", line)]
    names = [line[5:].split()[0] for line in lines]
    assert names[:3] == ["config", "model", "camera"], result.out
    for name in ("temperature", "throttling", "journal", "rootfs", "swap", "service"):
        assert name in names, result.out
    status = {line[5:].split()[0]: line.split()[0] for line in lines}
    assert status["config"] == "OK" and "/boot/firmware/crowdsign.toml" in result.out
    for name in ("model", "camera", "rootfs", "journal", "swap", "service"):
        assert status[name] == "OK", result.out
    assert result.rc == (1 if "FAIL" in status.values() else 0), result.out


@pytest.mark.camera
def test_camera_sees_people_on_the_monitor(rig):
    """Bench: the camera faces a monitor playing a clip with people in it."""
    out = rig.run("crowdsign doctor", timeout=300).out
    camera = next(line for line in out.splitlines() if line[5:].startswith("camera"))
    assert camera.startswith("OK") and "exposure" in camera and "n/a" not in camera, camera
    summaries = rig.wait_for(
        f"journalctl -u {UNIT} -b --no-pager -o json -n 50 | grep CROWDSIGN_TOTAL",
        lambda o: any(float(json.loads(line)["CROWDSIGN_TOTAL"]) > 0
                      for line in o.splitlines() if line.startswith("{")), timeout=120)
    assert summaries


def test_a_hung_pipeline_is_restarted_by_the_watchdog(rig):
    """The test-only fault switch hangs the counter; WatchdogSec restarts the daemon."""
    dropin = "/run/systemd/system/crowdsign.service.d"
    rig.run(f"mkdir -p {dropin} && printf '[Service]\\nEnvironment=CROWDSIGN_FAULT="
            f"hang-after-frames:20\\n' > {dropin}/fault.conf && systemctl daemon-reload "
            f"&& systemctl restart --no-block {UNIT}").check()
    try:
        watchdog_s = float(show(rig, "WatchdogUSec")["WatchdogUSec"].rstrip("s"))
        assert watchdog_s == 15
        out = rig.wait_for(f"systemctl show {UNIT} -p NRestarts --value",
                           lambda o: o.strip().isdigit() and int(o) >= 1, timeout=300, interval=5)
        assert int(out) >= 1
        log = journal(rig, "-o", "cat")
        assert "fault hang-after-frames:20: the counter hangs now" in log, log[-3000:]
        assert "Watchdog timeout" in log, log[-3000:]
    finally:
        rig.run(f"rm -f {dropin}/fault.conf && systemctl daemon-reload && "
                f"systemctl reset-failed {UNIT}; systemctl restart --no-block {UNIT}").check()
    rig.wait_for(f"systemctl show {UNIT} -p ActiveState --value",
                 lambda o: o.strip() == "active", timeout=300, interval=5)
    assert "CROWDSIGN_FAULT" not in show(rig, "Environment")["Environment"]
