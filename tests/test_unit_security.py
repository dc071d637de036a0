"""The shipped unit: systemd accepts it, and its exposure score is at most 1.0.

Runs Debian's `systemd-analyze` on systemd/crowdsign.service as shipped
(`security --offline=yes` scores the file itself, with no running manager).
The score is printed (`pytest -s`, or in the failure message).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from shared_data import require_tool

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "crowdsign.service"
NETWORK_DROPIN = REPO / "systemd" / "crowdsign-network-output.conf"
JOURNALD_DROPIN = REPO / "systemd" / "journald-volatile.conf"
MAX_EXPOSURE = 1.0


def systemd_analyze() -> str:
    path = require_tool("systemd-analyze", "systemd")
    return path


def settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat; an empty value resets the list)."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if value == "":
            found[key] = []
        else:
            found.setdefault(key, []).append(value)
    return found


def exposure(unit: Path) -> tuple[float, str]:
    out = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit)],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", out.stdout)
    assert match, out.stdout + out.stderr
    return float(match.group(1)), match.group(2)


def test_exposure_score_is_at_most_one():
    score, verdict = exposure(UNIT)
    print(f"\nsystemd-analyze security --offline=yes {UNIT.name}: {score} {verdict}")
    assert score <= MAX_EXPOSURE, f"exposure {score} {verdict} > {MAX_EXPOSURE}"


def test_network_output_dropin_only_opens_the_network(tmp_path):
    """The unit with the network drop-in folded in: still far from the default 9.6."""
    merged = tmp_path / "crowdsign.service"
    merged.write_text(UNIT.read_text() + "\n" + NETWORK_DROPIN.read_text())
    score, verdict = exposure(merged)
    print(f"\nwith crowdsign-network-output.conf: {score} {verdict}")
    base = {k: v[-1] for k, v in settings(UNIT.read_text()).items() if v}
    opened = {k: v[-1] for k, v in settings(merged.read_text()).items() if v}
    assert opened["PrivateNetwork"] == "no"
    assert "AF_INET" in opened["RestrictAddressFamilies"]
    assert opened["IPAddressDeny"] == "any", "the drop-in allows listed addresses only"
    changed = {k for k in base.keys() | opened.keys() if base.get(k) != opened.get(k)}
    assert changed == {"PrivateNetwork", "RestrictAddressFamilies", "IPAddressAllow"}
    assert score <= 2.0


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    """`verify` wants ExecStart to exist: the copy points it at this venv's crowdsign."""
    crowdsign = Path(sys.executable).parent / "crowdsign"
    assert crowdsign.exists(), "crowdsign is not installed in this venv (scripts/venv.sh)"
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/crowdsign run\n" in text
    copy = tmp_path / "crowdsign.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/crowdsign", f"ExecStart={crowdsign}"))
    out = subprocess.run([systemd_analyze(), "verify", str(copy)], capture_output=True,
                         text=True, timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "crowdsign.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_the_unit_says_what_the_issue_asks():
    s = settings(UNIT.read_text())
    one = {k: v[-1] for k, v in s.items() if v}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert float(one["WatchdogSec"]) > 0
    assert one["Restart"] == "always" and one["RestartPreventExitStatus"] == "2"
    assert int(one["StartLimitBurst"]) > 0 and int(one["StartLimitIntervalSec"]) > 0
    assert one["DynamicUser"] == "yes"
    assert set(one["SupplementaryGroups"].split()) == {"video", "dialout", "spi", "gpio", "i2c"}
    assert one["ProtectSystem"] == "strict"
    assert not any(k in s for k in ("ReadWritePaths", "StateDirectory", "LogsDirectory",
                                    "CacheDirectory", "RuntimeDirectory"))
    assert s["CapabilityBoundingSet"] == [] and one["LimitCORE"] == "0" and "MemoryMax" in one
    assert one["PrivateNetwork"] == "yes" and one["IPAddressDeny"] == "any"
    assert one["DevicePolicy"] == "closed"
    assert {a.split()[0] for a in s["DeviceAllow"]} == {
        "char-video4linux", "char-media", "char-dma_heap", "char-ttyS", "char-ttyAMA",
        "char-ttyUSB", "char-ttyACM", "char-spidev"}
    assert one["MemoryDenyWriteExecute"] == "yes" and "@system-service" in s["SystemCallFilter"]
    assert "ProcSubset" not in s, "XNNPACK reads /proc/cpuinfo"
    assert "TimeoutStopSec" in one


def test_the_journal_stays_in_ram():
    s = settings(JOURNALD_DROPIN.read_text())
    assert s["Storage"] == ["volatile"]
