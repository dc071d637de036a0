"""`crowdsign run --json`: one JSON object per update per line, on stdout.

    {"t": 1234.567, "frame": 812, "total": 14.6, "zones": {"A": 12.4, "B": null},
     "levels": {"A": "high", "B": "unknown"}, "fps": 9.87, "infer_ms": 31.2}

t is time.monotonic() seconds (null on the final "no data" update at
shutdown, made at t = inf); counts are the smoothed counts (one decimal),
null when stale; fps and infer_ms are rounded to two decimals. Lines are
written and flushed at once, in the caller's thread: this sink is for tests
and shell pipelines (`crowdsign run --json | jq`), where a reader that keeps
up is the norm. When the reader goes away (`| head -3`) the sink marks itself
down and writes nothing more; counting and the other sinks carry on.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Optional, TextIO

from crowdsign.sinks.base import Sink, Update


def _finite(x: float, digits: int) -> Optional[float]:
    """Rounded, or None for inf / NaN, which JSON cannot carry (the final
    update on shutdown is made at t = inf)."""
    return round(x, digits) if math.isfinite(x) else None


def _count(x: Optional[float]) -> Optional[float]:
    """A count as JSON carries it: None when unknown, or inf / NaN (a broken model)."""
    return x if x is None or math.isfinite(x) else None


def update_record(update: Update) -> dict[str, Any]:
    """The JSON fields shared by every JSON output: t, frame, total, zones, levels."""
    return {
        "t": _finite(update.t, 3),
        "frame": update.frame,
        "total": _count(update.total),
        "zones": {z: _count(v) for z, v in update.zones.items()},
        "levels": dict(update.levels),
    }


def update_json_line(update: Update) -> str:
    """The stream's line: the update record with fps and infer_ms, and a newline."""
    record = update_record(update)
    record["fps"] = _finite(update.fps, 2)
    record["infer_ms"] = _finite(update.infer_ms, 2)
    return json.dumps(record) + "\n"


class JsonStreamSink(Sink):
    """Writes each update as a JSON line to `stream` (stdout by default)."""

    def __init__(self, stream: Optional[TextIO] = None):
        self._stream = stream if stream is not None else sys.stdout
        self._down = False

    def open(self) -> None:
        pass

    def publish(self, update: Update) -> None:
        if self._down:
            return
        try:
            self._stream.write(update_json_line(update))
            self._stream.flush()
        except (OSError, ValueError):   # reader gone (EPIPE), or stream closed
            self._down = True
            self._silence_stdout()

    def close(self) -> None:
        if self._down:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._down = True
            self._silence_stdout()

    def describe(self) -> str:
        return "json " + getattr(self._stream, "name", "stream")

    def health(self) -> str:
        return "down" if self._down else "ok"

    def _silence_stdout(self) -> None:
        """After EPIPE on stdout, point its descriptor at /dev/null so that the
        interpreter's final flush does not print a BrokenPipeError traceback
        (the recipe in the Python docs, "Note on SIGPIPE")."""
        if self._stream is not sys.stdout and self._stream is not sys.__stdout__:
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
