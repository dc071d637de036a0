"""Hardware-in-the-loop tests: the same tests on the virtual rig and on a bench.

    pytest hw-tests                                   # the amd64 image in QEMU (default)
    pytest hw-tests --rig-env hw-tests/envs/pi-bench.yaml   # a Raspberry Pi on a bench

Markers say what hardware a test needs; a test is skipped only when the rig
lacks it (the rig's `features`):

    camera           a real camera aimed at a monitor playing a known clip
    serial_loopback  a serial port on the device whose TX is wired to its own RX
    display          the sign's bus, readable from the test host

The virtual rig has `display` (ttyS1 goes to a file on the host) and
`serial_loopback` (ttyS2 looped through a UDP socket), not `camera`.
Under CI=true a missing image or tool fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from rig import REPO, BenchRig, QemuRig

HARDWARE_MARKERS = {
    "camera": "needs a camera aimed at a monitor playing a known clip",
    "serial_loopback": "needs a serial port on the device looped TX to RX",
    "display": "needs the sign's bus readable from the test host",
}

# The virtual rig's boot partition: its crowdsign.toml wins over the image's
# /etc/crowdsign/crowdsign.toml (zones left/centre/right); these zone names
# show that it did.
VM_BOOT_CONFIG = """\
# crowdsign.toml on the boot partition (written by hw-tests/conftest.py)
[source]
uri = "replay:/usr/share/crowdsign/video/vtest.avi"
pace = "realtime"
at_end = "loop"
stall_timeout_s = 10.0

[model]
path = "/usr/share/crowdsign/models/crowdsign_density_gray.toml"
num_threads = 2

[[zones]]
name = "car1"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]

[[zones]]
name = "car2"
polygon = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]

[levels]
window = 3
thresholds = [2, 5]
stale_after_s = 10.0

[[outputs]]
type = "serial"
port = "/dev/ttyS1"
baudrate = 115200
template = "{zones}\\r\\n"
rate_hz = 2.0

[logging]
summary_interval_s = 3
"""
VM_ZONES = ("car1", "car2")


def pytest_addoption(parser):
    group = parser.getgroup("crowdsign rig")
    group.addoption("--rig-env", metavar="YAML",
                    help="a bench's environment file (labgrid format, see hw-tests/envs/); "
                         "without it the tests boot the amd64 image in QEMU")
    group.addoption("--image-dir", default=str(REPO / "build" / "image"),
                    help="where image-build/build.sh put the VM image (default build/image)")


def pytest_configure(config):
    for name, why in HARDWARE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why}")
    config.addinivalue_line("markers", "vm_only: a check only the virtual rig can make")


def pytest_collection_modifyitems(config, items):
    """A rig boots once per session, inside the first test's time limit: 15 minutes
    each (an emulated boot and a watchdog cycle take minutes under TCG)."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    if not condition:
        if on_ci():
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def rig(request):
    env_file = request.config.getoption("--rig-env")
    if env_file:
        import yaml

        bench = BenchRig(yaml.safe_load(Path(env_file).read_text()))
        bench.wait_for("systemctl is-active crowdsign", lambda o: o.strip() == "active", 180)
        yield bench
        bench.close()
        return
    image_dir = Path(request.config.getoption("--image-dir"))
    require(shutil.which("qemu-system-x86_64") is not None,
            "qemu-system-x86_64 missing: run scripts/install-deps.sh")
    require(shutil.which("mcopy") is not None, "mtools missing: run scripts/install-deps.sh")
    require((image_dir / "rootfs.ext4").exists(),
            f"no VM image in {image_dir}: run image-build/build.sh")
    work = REPO / "build" / "hw-tests"
    vm = QemuRig(image_dir, work, boot_config=VM_BOOT_CONFIG)
    timings = {"accel": vm.accel, "boot_to_shell_s": round(vm.boot_s, 1)}
    try:
        vm.wait_for("systemctl show -p ActiveState --value crowdsign",
                    lambda o: o.strip() in ("active", "failed"), timeout=300)
        timings["boot_to_active_s"] = round(time.monotonic() - vm.started, 1)
        (work / "timings.json").write_text(json.dumps(timings) + "\n")
        print(f"\nvirtual rig: {vm.accel}, shell after {timings['boot_to_shell_s']} s, "
              f"crowdsign active after {timings['boot_to_active_s']} s")
        yield vm
    finally:
        vm.close()


@pytest.fixture(autouse=True)
def _hardware_markers(request):
    """Skip a test whose marker names hardware this rig lacks (never under any other reason)."""
    needed = [m for m in HARDWARE_MARKERS if request.node.get_closest_marker(m)]
    vm_only = request.node.get_closest_marker("vm_only") is not None
    if not needed and not vm_only:
        return
    rig = request.getfixturevalue("rig")
    missing = [m for m in needed if m not in rig.features]
    if missing:
        pytest.skip(f"the {rig.name} rig has no {', '.join(missing)}")
    if vm_only and rig.name != "vm":
        pytest.skip("a virtual-rig-only check")
