"""Clock jumps (NTP stepping the clock at boot, a board without an RTC starting
in 1970, a technician setting the date) cannot touch the daemon: all its
timing (frame pacing, stale data, reopen backoff, watchdog thinning, publish
intervals, the sign's "valid until") runs on the monotonic clock.

The package is read as source: no wall-clock call anywhere in it, and every
stage that takes a clock defaults to time.monotonic.
"""

from __future__ import annotations

import ast
import inspect
import time
from pathlib import Path

import crowdsign
from crowdsign.notify import Notifier
from crowdsign.sources.reopening import ReopeningSource
from crowdsign.sources.replay import ReplaySource
from crowdsign.supervisor import Supervisor

PACKAGE = Path(crowdsign.__file__).parent
WALL_CLOCK = {("time", "time"), ("time", "time_ns"), ("time", "localtime"), ("time", "gmtime"),
              ("time", "ctime"), ("time", "asctime"), ("time", "strftime"), ("time", "mktime"),
              ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
              ("date", "today"), ("datetime", "fromtimestamp")}
WALL_NAMES = {name for _, name in WALL_CLOCK}


def wall_clock_uses(source: str) -> list[str]:
    """`module.func` wall-clock calls and imports in Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if (owner, node.attr) in WALL_CLOCK:
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            for alias in node.names:
                if alias.name in WALL_NAMES or alias.name == "datetime":
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    return found


def test_no_wall_clock_anywhere_in_the_daemon():
    uses = {str(p.relative_to(PACKAGE)): wall_clock_uses(p.read_text())
            for p in sorted(PACKAGE.rglob("*.py"))}
    assert {name: found for name, found in uses.items() if found} == {}
    assert len(uses) > 30, "the whole package was read"


def test_the_scan_finds_wall_clock_calls():
    assert wall_clock_uses("import time\nt = time.time()\n") == ["line 2: time.time"]
    assert wall_clock_uses("from datetime import datetime\n")
    assert wall_clock_uses("import datetime\nx = datetime.datetime.now()\n")
    assert wall_clock_uses("from time import time\n")


def test_every_stage_with_a_clock_defaults_to_the_monotonic_one():
    for cls in (Supervisor, ReopeningSource, ReplaySource, Notifier):
        clock = inspect.signature(cls.__init__).parameters["clock"].default
        assert clock is time.monotonic, cls.__name__
