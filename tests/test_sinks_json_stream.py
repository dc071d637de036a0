"""`crowdsign run --json`: one JSON object per update per line."""

from __future__ import annotations

import io
import json
import os

from crowdsign.sinks.base import Update
from crowdsign.sinks.json_stream import JsonStreamSink

FRESH = Update(t=1234.56789, frame=812, total=14.6, zones={"A": 12.4, "B": 2.2},
               levels={"A": "high", "B": "low"}, fps=9.87654, infer_ms=31.2049)
STALE = Update(t=1240.0, frame=812, total=None, zones={"A": None, "B": None},
               levels={"A": "unknown", "B": "unknown"}, fps=0.0, infer_ms=0.0)


def test_each_update_is_one_json_object_on_one_line():
    out = io.StringIO()
    sink = JsonStreamSink(out)
    sink.open()
    sink.publish(FRESH)
    sink.publish(STALE)
    sink.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and out.getvalue().endswith("\n")
    assert json.loads(lines[0]) == {
        "t": 1234.568, "frame": 812, "total": 14.6, "zones": {"A": 12.4, "B": 2.2},
        "levels": {"A": "high", "B": "low"}, "fps": 9.88, "infer_ms": 31.2}
    assert json.loads(lines[1]) == {
        "t": 1240.0, "frame": 812, "total": None, "zones": {"A": None, "B": None},
        "levels": {"A": "unknown", "B": "unknown"}, "fps": 0.0, "infer_ms": 0.0}


def test_lines_are_flushed_to_a_pipe_reader_at_once():
    r, w = os.pipe()
    with os.fdopen(w, "w") as writer, os.fdopen(r, "r") as reader:
        sink = JsonStreamSink(writer)
        sink.publish(FRESH)
        # nothing closed or flushed by the test: the line is already in the pipe
        assert json.loads(reader.readline())["frame"] == 812
        assert sink.health() == "ok"


def test_reader_gone_marks_the_sink_down_without_raising():
    r, w = os.pipe()
    os.close(r)
    writer = os.fdopen(w, "w")
    sink = JsonStreamSink(writer)
    sink.publish(FRESH)                      # EPIPE: Python ignores SIGPIPE
    assert sink.health() == "down"
    sink.publish(FRESH)                      # stays quiet
    sink.close()
    try:
        writer.close()
    except BrokenPipeError:
        pass


def test_final_update_at_infinite_time_is_still_valid_json():
    """The supervisor's shutdown update is made at t = inf; JSON has no inf."""
    out = io.StringIO()
    JsonStreamSink(out).publish(Update(t=float("inf"), frame=3, total=None, zones={"A": None},
                                       levels={"A": "unknown"}, fps=float("nan"), infer_ms=0.0))

    def reject(constant):
        raise AssertionError(f"not JSON: {constant}")

    record = json.loads(out.getvalue(), parse_constant=reject)
    assert (record["t"], record["fps"], record["levels"]) == (None, None, {"A": "unknown"})
