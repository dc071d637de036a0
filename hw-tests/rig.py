"""Test rigs: a board the tests can run commands on and whose sign they can read.

Two kinds, one interface (`Rig`):

- `QemuRig`: the amd64 image (image-build/build.sh) booted by
  qemu-system-x86_64, driven through its serial console with pexpect; the
  second UART (the sign's bus, ttyS1 in the guest) goes to a file on the host,
  a third (ttyS2) is looped back on itself through a UDP socket.
- `BenchRig`: a Raspberry Pi on a bench, described by a labgrid-style
  environment file (hw-tests/envs/pi-bench.yaml): commands over SSH or its
  serial console, the sign's bus read through a USB-serial adapter on the
  test host.

Commands run in a root shell; each command's output comes back base64-encoded
between markers, so console noise (kernel or systemd messages) cannot be
mistaken for it.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pexpect

REPO = Path(__file__).resolve().parents[1]
PROMPT = "crowdsign-rig# "


@dataclass
class Result:
    rc: int
    out: str

    def check(self) -> str:
        assert self.rc == 0, f"exit {self.rc}: {self.out}"
        return self.out


class ConsoleShell:
    """A root shell on a pexpect-driven console (QEMU's stdio, or a serial port)."""

    def __init__(self, child: pexpect.spawnbase.SpawnBase):
        self.child = child

    def prepare(self) -> None:
        """Quiet the console and make the shell predictable."""
        self.child.sendline(f"stty -echo cols 1000; export PS1='{PROMPT}' TERM=dumb "
                            "SYSTEMD_COLORS=0 SYSTEMD_PAGER= SYSTEMD_LESS= PAGER=cat; "
                            "dmesg -n 1")
        self.child.expect_exact(PROMPT, timeout=60)
        self.run("true", timeout=60)

    def run(self, command: str, timeout: float = 120) -> Result:
        marker = uuid.uuid4().hex[:12]
        self.child.sendline(
            f"( {command} ) >/tmp/.rig-out 2>&1; echo \"@@{marker} $? $(base64 -w0 /tmp/.rig-out)@@\"")
        self.child.expect(rf"@@{marker} (\d+) ([A-Za-z0-9+/=]*)@@", timeout=timeout)
        rc = int(self.child.match.group(1))
        out = base64.b64decode(self.child.match.group(2)).decode("utf-8", "replace")
        return Result(rc, out)


class SshShell:
    """Commands over `ssh` (key authentication, BatchMode), one connection per command."""

    def __init__(self, address: str, username: str = "root", port: int = 22):
        self.target = f"{username}@{address}"
        self.port = port

    def prepare(self) -> None:
        self.run("true", timeout=30).check()

    def run(self, command: str, timeout: float = 120) -> Result:
        proc = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
             "-p", str(self.port), self.target,
             "SYSTEMD_COLORS=0 SYSTEMD_PAGER= sh -c " + shlex.quote(command)],
            capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout + proc.stderr)


class Rig:
    """What a test needs from a rig."""

    name = "rig"
    features: frozenset = frozenset()
    shell: object

    def run(self, command: str, timeout: float = 120) -> Result:
        return self.shell.run(command, timeout)

    def display_lines(self, count: int, timeout: float) -> list[str]:
        """Whole lines the device writes to the sign's bus from now on: at least
        `count`, or what came within `timeout` seconds."""
        raise NotImplementedError

    def wait_for(self, command: str, predicate, timeout: float, interval: float = 2.0) -> str:
        """Run `command` until `predicate(output)` holds; its last output."""
        deadline = time.monotonic() + timeout
        out = ""
        while True:
            out = self.run(command).out
            if predicate(out):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{command!r}: condition not met in {timeout} s; last: {out}")
            time.sleep(interval)

    def close(self) -> None:
        pass


# --- the virtual rig -----------------------------------------------------------

def kvm_usable() -> bool:
    """Whether /dev/kvm opens and creates a VM (a nested or locked-down host may refuse)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
        os.close(vm)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def kvm_boots(image_dir: Path, seconds: float = 20.0) -> bool:
    """Whether the image's kernel really starts under KVM: on some nested hosts
    /dev/kvm opens but the guest hangs before its first console line."""
    try:
        proc = subprocess.run(
            ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none",
             "-no-reboot", "-kernel", str(image_dir / "vmlinuz"),
             "-append", "console=ttyS0 panic=-1 rdinit=/crowdsign-kvm-probe",
             "-serial", "stdio", "-monitor", "none", "-nic", "none"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=seconds)
        output = proc.stdout
    except subprocess.TimeoutExpired as e:
        output = e.stdout or b""
    return b"Linux version" in output


def choose_accel(image_dir: Path) -> str:
    """CROWDSIGN_VM_ACCEL=tcg|kvm, else KVM where it really boots, else TCG."""
    wanted = os.environ.get("CROWDSIGN_VM_ACCEL", "auto")
    if wanted in ("tcg", "kvm"):
        return wanted
    return "kvm" if kvm_usable() and kvm_boots(image_dir) else "tcg"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_boot_partition(template: Path, target: Path, config_text: Optional[str]) -> None:
    """A copy of the image's boot partition, with `config_text` as its crowdsign.toml."""
    shutil.copyfile(template, target)
    if config_text is not None:
        src = target.with_suffix(".toml")
        src.write_text(config_text)
        subprocess.run(["mcopy", "-o", "-i", str(target), str(src), "::crowdsign.toml"],
                       check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})


@dataclass
class QemuRig(Rig):
    """The amd64 image in qemu-system-x86_64; see the module docstring."""

    image_dir: Path
    work_dir: Path
    boot_config: Optional[str] = None
    accel: str = ""                      # "" chooses (choose_accel)
    memory_mib: int = 1536
    boot_timeout_s: float = 600.0
    name = "vm"
    features = frozenset({"display", "serial_loopback"})
    loopback_port = "/dev/ttyS2"

    def __post_init__(self) -> None:
        self.accel = self.accel or choose_accel(self.image_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.uart_log = self.work_dir / "ttyS1-display.log"
        self.uart_log.write_bytes(b"")
        self.console_log_path = self.work_dir / "console.log"
        boot = self.work_dir / "bootfs.img"
        make_boot_partition(self.image_dir / "bootfs.img", boot, self.boot_config)
        loop_port = free_udp_port()
        cpu = ["-cpu", "host"] if self.accel == "kvm" else ["-cpu", "max"]
        self.command = [
            "qemu-system-x86_64", "-accel", self.accel, *cpu, "-smp", "2",
            "-m", str(self.memory_mib), "-nographic", "-no-reboot",
            "-kernel", str(self.image_dir / "vmlinuz"),
            "-initrd", str(self.image_dir / "initrd.img"),
            "-append", "root=/dev/vda ro console=ttyS0 loglevel=4 panic=-1",
            # snapshot=on: the guest's writes (there should be none) never reach the cached image.
            "-drive", f"file={self.image_dir / 'rootfs.ext4'},if=virtio,format=raw,snapshot=on",
            "-drive", f"file={boot},if=virtio,format=raw",
            "-serial", "mon:stdio",                                  # ttyS0: the console
            "-serial", f"file:{self.uart_log}",                      # ttyS1: the sign's bus
            "-chardev", f"udp,id=loop,host=127.0.0.1,port={loop_port},localport={loop_port}",
            "-serial", "chardev:loop",                               # ttyS2: looped back
            "-nic", "none",
        ]
        self.console_log = open(self.console_log_path, "w", encoding="utf-8", errors="replace")
        self.started = started = time.monotonic()
        self.child = pexpect.spawn(self.command[0], self.command[1:], encoding="utf-8",
                                   codec_errors="replace", timeout=self.boot_timeout_s,
                                   logfile=self.console_log, dimensions=(50, 1000))
        try:
            self.child.expect(r"root@crowdsign:~# ", timeout=self.boot_timeout_s)
        except (pexpect.TIMEOUT, pexpect.EOF):
            self.close()
            raise AssertionError(f"the VM gave no root shell within {self.boot_timeout_s} s "
                                 f"({self.accel}); console: {self.console_log_path}") from None
        self.boot_s = time.monotonic() - started
        self.shell = ConsoleShell(self.child)
        self.shell.prepare()

    def display_lines(self, count: int, timeout: float) -> list[str]:
        start = self.uart_log.stat().st_size
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(1.0)
            with open(self.uart_log, "rb") as f:
                f.seek(start)
                lines = whole_lines(f.read())
            if len(lines) >= count or time.monotonic() > deadline:
                return lines

    def close(self) -> None:
        child = getattr(self, "child", None)
        if child is not None and child.isalive():
            child.sendcontrol("a")
            child.send("x")          # QEMU's monitor escape: quit
            try:
                child.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                child.terminate(force=True)
        if not self.console_log.closed:
            self.console_log.close()


# --- a Raspberry Pi on a bench --------------------------------------------------

@dataclass
class BenchRig(Rig):
    """A real board described by an environment file (see envs/pi-bench.yaml)."""

    env: dict
    name = "bench"

    def __post_init__(self) -> None:
        target = self.env["targets"]["main"]
        resources = target.get("resources", {})
        self.features = frozenset(target.get("features", []))
        options = self.env.get("crowdsign", {})
        if "NetworkService" in resources:
            net = resources["NetworkService"]
            self.shell = SshShell(net["address"], net.get("username", "root"), net.get("port", 22))
        elif "RawSerialPort" in resources:
            import serial
            from pexpect import fdpexpect

            port = resources["RawSerialPort"]
            self._console = serial.Serial(port["port"], port.get("speed", 115200), timeout=0)
            child = fdpexpect.fdspawn(self._console.fileno(), encoding="utf-8",
                                      codec_errors="replace", timeout=60)
            child.sendline("")
            child.expect(r"[#$] ", timeout=30)
            self.shell = ConsoleShell(child)
        else:
            raise ValueError("the environment's main target needs a NetworkService (SSH) "
                             "or a RawSerialPort (serial console)")
        self.shell.prepare()
        self.display_port = options.get("display_port")
        self.display_baud = int(options.get("display_baud", 9600))
        self.loopback_port = options.get("loopback_port")  # on the device

    def display_lines(self, count: int, timeout: float) -> list[str]:
        import serial

        if not self.display_port:
            raise AssertionError("no crowdsign.display_port in the environment file")
        with serial.Serial(self.display_port, self.display_baud, timeout=0.2) as port:
            port.reset_input_buffer()
            deadline = time.monotonic() + timeout
            data = b""
            while time.monotonic() < deadline and len(whole_lines(data)) < count:
                data += port.read(4096)
        return whole_lines(data)


def whole_lines(data: bytes) -> list[str]:
    """The complete CR LF lines in `data`, leaving out the first (it may be cut)."""
    lines = data.decode("ascii", "replace").split("\r\n")
    return [line for line in lines[1:-1] if line]
