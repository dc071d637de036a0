"""The no-persistence guard: the daemon refuses to write files or open the network.

`install(config, log)` runs first thing in `crowdsign run` (there is no way to
turn it off) and, for the rest of the process:

- adds a `sys.addaudithook` hook that refuses, by raising `PrivacyViolation`
  (a PermissionError, so callers that handle a failed open carry on), and
  logs as a privacy violation:
  - opening a file for writing (`open` events from `open()`, `io.open()` and
    `os.open()` with a write mode or any of O_WRONLY, O_RDWR, O_CREAT,
    O_TRUNC, O_APPEND), except the devices the config declares (see
    `allowed_write_paths`) and /dev/null;
  - removing, renaming, creating or truncating files and folders (`os.remove`,
    `os.rename`, `os.mkdir`, `os.rmdir`, `os.truncate`, `os.link`,
    `os.symlink`, `os.mknod`), except the one PNG an LED-matrix bench output
    (`device = "dummy"`, `capture_png`) replaces in place;
  - opening a socket of any family other than AF_UNIX (sd_notify, journald,
    asyncio's self-pipe), unless an output is a pyserial network URL
    (`socket://`, `rfc2217://`), and then connecting or sending only to that
    output's host and port;
  - starting another program (`subprocess.Popen`, `os.system`, `os.exec*`,
    `os.posix_spawn`, `os.fork`): a child would not be watched;
- sets `sys.dont_write_bytecode` (no .pyc written by imports after this);
- marks the process not dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core dump
  holding a frame, no ptrace attach by another process of the same user.

What C libraries do below Python (OpenCV's FFmpeg, TFLite) raises no audit
events: tests/test_privacy_strace.py watches the system calls of the whole
process for that.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Iterable, Optional
from urllib.parse import urlsplit

from crowdsign.config import Config, LedMatrixOutputConfig

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

WRITE_FLAGS = (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
               | getattr(os, "O_TMPFILE", 0))
ALWAYS_WRITABLE = frozenset({"/dev/null"})
NETWORK_SCHEMES = ("socket", "rfc2217")

_FILE_CHANGES = frozenset({"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.truncate",
                           "os.link", "os.symlink", "os.mknod", "shutil.rmtree",
                           "shutil.copyfile", "shutil.move"})
_SPAWNS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                     "os.fork", "os.forkpty", "os.spawn", "pty.spawn"})
_SOCKET_ADDRESSED = frozenset({"socket.connect", "socket.sendto", "socket.bind"})
_WATCHED = (frozenset({"open", "socket.__new__"}) | _FILE_CHANGES | _SPAWNS
            | _SOCKET_ADDRESSED)


class PrivacyViolation(PermissionError):
    """Something tried to write a file, reach the network or start a program."""


@dataclass(frozen=True)
class Policy:
    """What the config declares, as the guard sees it.

    write_paths:  absolute paths that may be opened for writing (output devices).
    replace_dirs: (folder, final name) pairs an output may write a temporary
                  file in and rename onto (the LED-matrix bench capture).
    network:      (host, port) of each network output; empty: AF_UNIX only.
    """

    write_paths: frozenset[str]
    replace: frozenset[tuple[str, str]]
    network: frozenset[tuple[str, int]]


def policy_for(config: Config) -> Policy:
    """The devices, files and network peers the config's outputs declare."""
    paths: set[str] = set(ALWAYS_WRITABLE)
    replace: set[tuple[str, str]] = set()
    network: set[tuple[str, int]] = set()
    for o in config.outputs:
        if isinstance(o, LedMatrixOutputConfig):
            if o.device == "max7219":
                paths.add(f"/dev/spidev{o.spi_port}.{o.spi_device}")
            elif o.capture_png:
                final = os.path.abspath(o.capture_png)
                folder, name = os.path.split(final)
                tmp = os.path.join(folder, f".{name}.tmp")
                paths.update({final, tmp})
                replace.add((tmp, final))
            continue
        port = o.port
        if "://" in port:
            url = urlsplit(port)
            if url.scheme in NETWORK_SCHEMES and url.hostname and url.port:
                network.add((url.hostname, url.port))
            continue  # loop://, spy:// wrap nothing on disk
        paths.update(_device_names(port))
    if config.source.kind == "picamera2":  # libcamera buffers come from the DMA heap
        paths.update({"/dev/dma_heap/linux,cma", "/dev/dma_heap/system"})
    return Policy(frozenset(paths), frozenset(replace), frozenset(network))


def _device_names(port: str) -> Iterable[str]:
    """A device path as configured, absolute, and what its links lead to
    (`/dev/serial/by-id/...` -> `/dev/ttyUSB0`)."""
    yield os.path.abspath(port)
    yield os.path.realpath(port)


class Guard:
    """The audit hook's logic, apart from installing it (tests drive it directly)."""

    def __init__(self, policy: Policy, log: logging.Logger):
        self.policy = policy
        self.log = log
        self.violations = 0
        self._inside = threading.local()
        self._addresses = self._resolve(policy.network)

    @staticmethod
    def _resolve(peers: frozenset[tuple[str, int]]) -> frozenset[tuple[str, int]]:
        """Declared peers as numbers as well as names (connect() sees numbers).

        Resolved once, here, before the hook is on: a name that does not
        resolve yet (the network comes later) is kept as written.
        """
        found = set(peers)
        for host, port in peers:
            try:
                for *_, addr in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
                    found.add((str(addr[0]), int(addr[1])))
            except OSError:
                pass
        return frozenset(found)

    def update(self, policy: Policy) -> None:
        """A reloaded config's outputs replace the declared ones (SIGHUP)."""
        self.policy = policy
        self._addresses = self._resolve(policy.network)

    def __call__(self, event: str, args: tuple) -> None:
        if event not in _WATCHED or getattr(self._inside, "busy", False):
            return
        self._inside.busy = True
        try:
            why = self.refusal(event, args)
        finally:
            self._inside.busy = False
        if why is not None:
            self.violations += 1
            self._inside.busy = True
            try:
                self.log.error("privacy violation refused: %s", why)
            finally:
                self._inside.busy = False
            raise PrivacyViolation(f"privacy guard: {why}")

    def refusal(self, event: str, args: tuple) -> Optional[str]:
        """Why `event` is refused, or None when it is allowed."""
        if event == "open":
            return self._open(*args[:3])
        if event in _FILE_CHANGES:
            return self._file_change(event, args)
        if event in _SPAWNS or event.startswith("os.exec"):
            return f"{event}: starting another program ({_show(args[:1])})"
        if event == "socket.__new__":
            family = args[1] if len(args) > 1 else None
            if family in (socket.AF_UNIX, -1, None):  # -1: from an existing fd
                return None
            if family in (socket.AF_INET, socket.AF_INET6) and self.policy.network:
                return None
            return f"socket of family {_family(family)}: no output declares a network peer"
        if event in _SOCKET_ADDRESSED:
            return self._addressed(event, args)
        return None

    def _open(self, path, mode, flags) -> Optional[str]:
        if isinstance(path, int):
            return None  # an fd already open (stdout, a socket): nothing new is opened
        writing = bool(isinstance(flags, int) and flags & WRITE_FLAGS)
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            writing = True
        if not writing:
            return None
        name = os.path.abspath(os.fsdecode(path))
        if name in self.policy.write_paths or os.path.realpath(name) in self.policy.write_paths:
            return None
        return f"open {name!r} for writing ({_mode(mode, flags)}): not a declared output"

    def _file_change(self, event: str, args: tuple) -> Optional[str]:
        if event == "os.rename" and len(args) >= 2:
            src, dst = (os.path.abspath(os.fsdecode(a)) for a in args[:2])
            if (src, dst) in self.policy.replace:
                return None
        return f"{event} {_show(args[:2])}: nothing is written to storage"

    def _addressed(self, event: str, args: tuple) -> Optional[str]:
        sock, address = args[0], args[1] if len(args) > 1 else None
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX or not isinstance(address, tuple):
            return None
        if event == "socket.bind":
            return f"{event} {address!r}: the daemon listens on no network port"
        host, port = str(address[0]), int(address[1])
        if (host, port) in self._addresses:
            return None
        return f"{event} to {host}:{port}: not a declared output"


def _family(family) -> str:
    try:
        return socket.AddressFamily(family).name
    except (ValueError, TypeError):
        return repr(family)


def _mode(mode, flags) -> str:
    if isinstance(mode, str):
        return f"mode {mode!r}"
    return f"flags {flags:#o}" if isinstance(flags, int) else "unknown mode"


def _show(args: tuple) -> str:
    text = ", ".join(repr(os.fsdecode(a)) if isinstance(a, (str, bytes, os.PathLike)) else repr(a)
                     for a in args)
    return text if len(text) <= 200 else text[:197] + "..."


def set_not_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): no core dumps, no same-user ptrace. True if done."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)  # the libc already loaded: no lookup, no subprocess
    return libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def is_dumpable() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


_installed: Optional[Guard] = None


def install(config: Config, log: logging.Logger) -> Guard:
    """Turn the guard on for the rest of the process (audit hooks cannot be removed).

    A later call (a config reloaded on SIGHUP) replaces the declared outputs
    with the new config's; the hook itself stays.
    """
    global _installed
    sys.dont_write_bytecode = True
    if _installed is None:
        set_not_dumpable()
        _installed = Guard(policy_for(config), log)
        sys.addaudithook(_installed)
    else:
        _installed.update(policy_for(config))
    return _installed


def installed() -> Optional[Guard]:
    return _installed
