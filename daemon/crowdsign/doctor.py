"""`crowdsign doctor`: is this board ready to count and drive its sign?

For field technicians. Every check prints one line,

    OK   camera       replay:/usr/share/crowdsign/video/vtest.avi: 20 frames in 2.0 s (9.9 fps), 768x576 bgr; exposure n/a (a recording)
    WARN root fs      / is mounted read-write (ext4 /dev/mmcblk0p2) | hint: the image mounts / read-only ...

and the command exits 1 if any line is FAIL, else 0. What the statuses mean:

    OK    as the image intends;
    WARN  crowdsign works, but something a technician should fix or know
          (a writable root wears the SD card, the journal is persisted, the
          board was throttled, the service is stopped);
    FAIL  counting or the sign is broken (bad config, the model does not run,
          no frames, a configured output device is missing, the board is too
          hot or under-voltage right now).

Checks: config, model (loads, one inference timed), camera (frames over
about two seconds: rate, size, exposure where picamera2 reports it), each
output device (present and openable; nothing is ever written to the sign),
CPU temperature, throttling (`vcgencmd get_throttled` on a Raspberry Pi),
journal storage (journald.conf and its drop-ins), read-only root, swap, and
the service itself. A frame is looked at only inside the source's capture
block, counted, and dropped: the doctor never saves or shows one.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, TextIO

import numpy as np

OK, WARN, FAIL = "OK", "WARN", "FAIL"

TEMP_WARN_C = 70.0   # a Pi 4/5 starts soft throttling at 80 °C (60 °C on some firmware)
TEMP_FAIL_C = 80.0   # ...and hard throttling at 85 °C

# `vcgencmd get_throttled` bits (Raspberry Pi firmware documentation).
THROTTLE_NOW = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled",
                3: "soft temperature limit"}
THROTTLE_SINCE_BOOT = {16: "under-voltage", 17: "ARM frequency capped", 18: "throttled",
                       19: "soft temperature limit"}

JOURNALD_CONF_DIRS = ("/usr/lib/systemd/journald.conf.d", "/usr/local/lib/systemd/journald.conf.d",
                      "/run/systemd/journald.conf.d", "/etc/systemd/journald.conf.d")


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, its status, what was found, what to do."""

    name: str
    status: str
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name:<12} {self.detail}"
        return f"{text} | hint: {self.hint}" if self.hint else text


@dataclass(frozen=True)
class System:
    """Where the doctor looks: the real system by default, a fake root in tests."""

    proc_mounts: Path = Path("/proc/mounts")
    proc_swaps: Path = Path("/proc/swaps")
    thermal: Path = Path("/sys/class/thermal")
    journald_conf: Path = Path("/etc/systemd/journald.conf")
    journald_dirs: tuple[Path, ...] = tuple(Path(d) for d in JOURNALD_CONF_DIRS)
    persistent_journal: Path = Path("/var/log/journal")
    systemd_running: Path = Path("/run/systemd/system")
    vcgencmd: Optional[str] = None        # found on PATH when None
    unit: str = "crowdsign.service"


# --- the report ----------------------------------------------------------------

def doctor_main(load_config: Callable, camera_seconds: float = 2.0,
                out: TextIO = sys.stdout, system: System = System()) -> int:
    """Run every check, print one line each as it finishes, return the exit code.

    load_config: returns the Config (the CLI's loader with its search path and
                 overrides) or raises ConfigError.
    """
    log = logging.getLogger("crowdsign.doctor")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    failed = False
    for check in run_checks(load_config, camera_seconds, system, log):
        print(check.line(), file=out, flush=True)
        failed |= check.status == FAIL
    return 1 if failed else 0


def run_checks(load_config: Callable, camera_seconds: float, system: System,
               log: logging.Logger) -> Iterable[Check]:
    config_check, config = check_config(load_config)
    yield config_check
    if config is None:
        for name in ("model", "camera", "output"):
            yield Check(name, WARN, "not checked: the config above is invalid",
                        "fix the config, then run crowdsign doctor again")
    else:
        model_check, counter = check_model(config)
        yield model_check
        yield check_camera(config, counter, camera_seconds, log)
        if counter is not None:
            counter.close()
        yield from check_outputs(config)
    yield check_temperature(system)
    yield check_throttling(system)
    yield check_journal(system)
    yield check_root(system)
    yield check_swap(system)
    yield check_service(system)


# --- config, model, camera, outputs --------------------------------------------

def check_config(load_config: Callable):
    from crowdsign.config import ConfigError

    try:
        config = load_config()
    except ConfigError as e:
        return Check("config", FAIL, "; ".join(e.problems),
                     "each problem names the file and key; `crowdsign check` lists them too"), None
    zones = ", ".join(z.name for z in config.zone_list())
    outputs = len(config.outputs)
    what = f"{len(config.zone_list())} zones ({zones}), {outputs} output{'s' * (outputs != 1)}"
    if config.path is None:
        return Check("config", WARN, f"no config file found: built-in defaults, {what}",
                     "put crowdsign.toml on the boot partition or in /etc/crowdsign/"), config
    return Check("config", OK, f"{config.path}: valid, {what}"), config


def check_model(config):
    from crowdsign.counting.counter import load_counter
    from crowdsign.counting.modelcard import ModelError
    from crowdsign.frames import Frame, PixelFormat
    from crowdsign.zones import ZoneGeometry

    started = time.perf_counter()
    try:
        counter = load_counter(config.model, ZoneGeometry(config.zone_list()))
    except ModelError as e:
        return Check("model", FAIL, f"{config.model.path}: {e}",
                     "check [model].path and that the .tflite is beside its card"), None
    loaded_ms = (time.perf_counter() - started) * 1e3
    width, height = counter.input_size
    shape = (height, width) if counter.input_format is PixelFormat.GRAY else (height, width, 3)
    blank = Frame(np.zeros(shape, np.uint8), counter.input_format, time.monotonic(), 0)
    try:
        counter.count(blank)                      # the first invoke also sets XNNPACK up
        started = time.perf_counter()
        counter.count(blank)
        infer_ms = (time.perf_counter() - started) * 1e3
    except Exception as e:  # noqa: BLE001 - any failure of the runtime is the finding
        counter.close()
        return Check("model", FAIL, f"{counter.describe()}: inference failed: {e}",
                     "the model or the TFLite runtime is broken; reinstall the image"), None
    return Check("model", OK, f"{counter.describe()}: loaded in {loaded_ms:.0f} ms, "
                              f"one inference {infer_ms:.1f} ms"), counter


def check_camera(config, counter, seconds: float, log: logging.Logger) -> Check:
    """Frames for `seconds`: rate and size; exposure where the camera reports it."""
    from crowdsign.frames import PixelFormat
    from crowdsign.sources.base import SourceError, SourceExhausted
    from crowdsign.sources.factory import make_backend

    uri = config.source.uri
    size = counter.input_size if counter is not None else (300, 300)
    fmt = counter.input_format if counter is not None else PixelFormat.RGB
    try:
        source = make_backend(config.source, size, fmt)
        source.open()
    except Exception as e:  # noqa: BLE001 - SourceError, or a driver's own exception
        return Check("camera", FAIL, f"{uri}: cannot open: {e}", _camera_hint(config))
    frames, shape, exposure = 0, "", _exposure_na(config)
    try:
        started = time.monotonic()
        first = last = None
        while time.monotonic() - started < seconds:
            try:
                with source.capture(0.5) as frame:
                    if frame is None:
                        continue
                    now = time.monotonic()
                    first = now if first is None else first
                    last = now
                    frames += 1
                    shape = f"{frame.width}x{frame.height} {frame.format.value}"
            except SourceExhausted:
                break
        exposure = _exposure(source, config) or exposure
    except SourceError as e:
        return Check("camera", FAIL, f"{uri}: failed after {frames} frames: {e}",
                     _camera_hint(config))
    finally:
        source.close()
    if frames == 0:
        return Check("camera", FAIL, f"{uri}: no frame in {seconds:.1f} s", _camera_hint(config))
    rate = (frames - 1) / (last - first) if frames > 1 and last > first else 0.0
    detail = (f"{uri}: {frames} frames in {seconds:.1f} s ({rate:.1f} fps), {shape}; "
              f"exposure {exposure}")
    if frames < 2:
        return Check("camera", WARN, detail, "one frame only: is the camera starved or the "
                                             "scene too dark for the frame rate?")
    return Check("camera", OK, detail)


def _camera_hint(config) -> str:
    kind = config.source.kind
    if kind == "picamera2":
        return ("is the ribbon cable seated, `rpicam-hello --list-cameras` lists it, and no "
                "other program holds it (systemctl stop crowdsign while checking)?")
    if kind in ("v4l2", "gst"):
        return "is the camera plugged in (ls /dev/video*) and not held by another program?"
    return "does the recording exist and decode (ffprobe it)?"


def _exposure_na(config) -> str:
    if config.source.kind == "replay":
        return "n/a (a recording)"
    return "n/a (this camera reports none)"


def _exposure(source, config) -> Optional[str]:
    """Exposure time and gain from picamera2's metadata; None for other sources.

    Reads the backend's camera (picamera2 keeps it in `_cam`): one metadata
    request, no pixels.
    """
    if config.source.kind != "picamera2":
        return None
    cam = getattr(source, "_cam", None)
    if cam is None:
        return None
    try:
        meta = cam.capture_metadata()
    except Exception:  # noqa: BLE001 - exposure is a nice-to-have
        return None
    exposure_us, gain = meta.get("ExposureTime"), meta.get("AnalogueGain")
    if exposure_us is None:
        return None
    text = f"{exposure_us / 1000:.1f} ms"
    return f"{text}, analogue gain {gain:.1f}" if gain is not None else text


def check_outputs(config) -> Iterable[Check]:
    from crowdsign.sinks.factory import check_outputs as output_problems
    from crowdsign.sinks.factory import is_url

    if not config.outputs:
        yield Check("output", WARN, "no [[outputs]] configured: the counts go nowhere",
                    "add the sign's serial port as an [[outputs]] table")
        return
    for i, output in enumerate(config.outputs):
        port = getattr(output, "port", None)
        name = f"output #{i + 1}"
        what = f"{output.type} {port}" if port else output.type
        problems = output_problems([output])
        if problems:
            detail = "; ".join(p.split(": ", 1)[1] if p.startswith("[[outputs]]") else p
                               for p in problems)
            yield Check(name, FAIL, f"{what}: {detail}",
                        "plug in the display's adapter or fix the port in the config")
        elif port and is_url(port):
            yield Check(name, WARN, f"{what}: a URL, not checked without connecting",
                        "a device path is checked here; a URL only when the daemon connects")
        elif port:
            yield Check(name, OK, f"{what}: present and opens (nothing written)")
        else:
            yield Check(name, OK, f"{what}: configured (no device to look at)")


# --- the board -------------------------------------------------------------------

def check_temperature(system: System) -> Check:
    readings = []
    for zone in sorted(system.thermal.glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            kind = (zone / "type").read_text().strip()
        except OSError:
            kind = zone.name
        readings.append((millideg / 1000.0, kind))
    if not readings:
        return Check("temperature", WARN, f"no thermal zone under {system.thermal}",
                     "no CPU temperature on this machine (a VM or a container?); on a Pi "
                     "this means the firmware or kernel is broken")
    hottest, kind = max(readings)
    detail = f"{hottest:.1f} °C ({kind}, hottest of {len(readings)} zones)"
    if hottest >= TEMP_FAIL_C:
        return Check("temperature", FAIL, detail, "the CPU is throttling: add a heatsink or "
                     "fan, shade the enclosure, check its vents")
    if hottest >= TEMP_WARN_C:
        return Check("temperature", WARN, detail, "close to throttling: check the heatsink "
                     "and the enclosure's airflow")
    return Check("temperature", OK, detail)


def check_throttling(system: System) -> Check:
    vcgencmd = system.vcgencmd or shutil.which("vcgencmd")
    if not vcgencmd:
        return Check("throttling", OK, "n/a: no vcgencmd (not a Raspberry Pi); see temperature")
    try:
        out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        bits = int(out.split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return Check("throttling", WARN, "vcgencmd get_throttled gave no answer",
                     "is the firmware interface (/dev/vcio) there?")
    now = [name for bit, name in THROTTLE_NOW.items() if bits & (1 << bit)]
    since = [name for bit, name in THROTTLE_SINCE_BOOT.items() if bits & (1 << bit)]
    if now:
        return Check("throttling", FAIL, f"{out}: now {', '.join(now)}",
                     "use the official power supply (5.1 V) and a short cable; cool the board")
    if since:
        return Check("throttling", WARN, f"{out}: since boot {', '.join(since)}",
                     "it happened earlier: check the power supply and the cooling")
    return Check("throttling", OK, f"{out}: never throttled since boot")


def journald_storage(system: System) -> tuple[str, str]:
    """The effective Storage= and the file that set it, as journald reads its config:
    journald.conf, then drop-ins by file name (a name in /etc hides the same name
    in /run and /usr/lib), the last setting winning."""
    storage, where = "auto", "the default"
    files: dict[str, Path] = {}
    for directory in system.journald_dirs:  # later directories override same names
        for path in sorted(directory.glob("*.conf")) if directory.is_dir() else ():
            files[path.name] = path
    for path in [system.journald_conf] + [files[n] for n in sorted(files)]:
        try:
            text = path.read_text()
        except OSError:
            continue
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif section == "Journal" and line.startswith("Storage="):
                storage, where = line.split("=", 1)[1].strip().lower(), str(path)
    return storage, where


def check_journal(system: System) -> Check:
    storage, where = journald_storage(system)
    persisted = system.persistent_journal.is_dir()
    if storage in ("volatile", "none"):
        return Check("journal", OK, f"Storage={storage} ({where}): logs stay in RAM")
    if storage == "auto" and not persisted:
        return Check("journal", WARN, f"Storage=auto ({where}): in RAM only while "
                                      f"{system.persistent_journal} does not exist",
                     "install the journald drop-in crowdsign-volatile.conf (Storage=volatile)")
    return Check("journal", WARN, f"Storage={storage} ({where}): the journal is written to "
                                  f"{system.persistent_journal}",
                 "install the journald drop-in crowdsign-volatile.conf (Storage=volatile): "
                 "logs wear the SD card")


def check_root(system: System) -> Check:
    mount = None
    try:
        for line in system.proc_mounts.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "/":
                mount = fields  # the last mount on / is the one in effect
    except OSError as e:
        return Check("rootfs", WARN, f"cannot read {system.proc_mounts}: {e.strerror}")
    if mount is None:
        return Check("rootfs", WARN, f"no / in {system.proc_mounts}")
    device, fstype, options = mount[0], mount[2], mount[3].split(",")
    if "ro" in options:
        return Check("rootfs", OK, f"/ is read-only ({fstype} {device})")
    if fstype == "overlay":
        return Check("rootfs", OK, f"/ is an overlay ({device}): writes go to RAM")
    return Check("rootfs", WARN, f"/ is mounted read-write ({fstype} {device})",
                 "the image mounts / read-only (fstab: ro) so a power cut cannot corrupt "
                 "the SD card; this is not that image, or it was remounted")


def check_swap(system: System) -> Check:
    try:
        lines = system.proc_swaps.read_text().splitlines()[1:]
    except OSError as e:
        return Check("swap", WARN, f"cannot read {system.proc_swaps}: {e.strerror}")
    active = [line.split()[0] for line in lines if line.strip()]
    if active:
        return Check("swap", WARN, f"swap in use: {', '.join(active)}",
                     "frames could be paged to storage; the image has no swap (swapoff -a, "
                     "remove it from fstab)")
    return Check("swap", OK, "no swap: frames never leave RAM")


def check_service(system: System) -> Check:
    if not system.systemd_running.is_dir() or shutil.which("systemctl") is None:
        return Check("service", WARN, "systemd is not running here: the unit was not looked at",
                     "on the device: systemctl status crowdsign")
    try:
        out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState",
                              "-p", "StatusText", "-p", "NRestarts", "-p", "LoadState",
                              system.unit], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return Check("service", WARN, f"systemctl failed: {e}")
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
    status = props.get("StatusText") or "no status"
    detail = f"{system.unit} {state}, {props.get('NRestarts', '?')} restarts: {status}"
    if props.get("LoadState") == "not-found":
        return Check("service", FAIL, f"{system.unit} is not installed",
                     "this is not the crowdsign image, or the unit was removed")
    if props.get("ActiveState") == "failed":
        return Check("service", FAIL, detail, "journalctl -u crowdsign -b says why")
    if props.get("ActiveState") != "active":
        return Check("service", WARN, detail, "systemctl start crowdsign (enabled at boot?)")
    return Check("service", OK, detail)
