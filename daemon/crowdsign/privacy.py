"""`crowdsign privacy`: the processing description a DPIA needs, from the live config.

What the camera captures, where frames live and for how long, what leaves the
device and how often, what is never produced, and which measure enforces each
point. Built from the same config and model the daemon runs with, so what an
operator hands to a data-protection authority describes this board, not a
brochure. Plain text, or one JSON object (`--json`).
"""

from __future__ import annotations

from typing import Any

from crowdsign.config import (Config, IbisOutputConfig, LedMatrixOutputConfig,
                              ModbusOutputConfig, SerialOutputConfig)
from crowdsign.frames import PixelFormat

MEASURES = {
    "no_storage": [
        "crowdsign.guard: an audit hook, on in every `crowdsign run` with no way to turn it "
        "off, refuses and logs as a privacy violation any file opened for writing, created, "
        "renamed or removed (only the declared output devices and /dev/null may be written)",
        "tests/test_privacy_strace.py: the daemon counts 300 frames of real footage under "
        "strace -f (every thread, C libraries included): no file written or created, no "
        "write of 64 KiB or more anywhere (a frame is 270 KB at the least), under 2 KiB "
        "written per frame in all",
        "systemd unit: ProtectSystem=strict, no writable path, PrivateTmp, read-only /dev/shm",
        "read-only root file system in the image; journald volatile (RAM)",
    ],
    "no_core_dumps": [
        "prctl(PR_SET_DUMPABLE, 0) at start: no core dump, no ptrace by other processes",
        "systemd unit: LimitCORE=0",
    ],
    "no_network": [
        "crowdsign.guard refuses sockets other than AF_UNIX (sd_notify, journald) unless an "
        "output is a pyserial network URL, and then any peer but that one",
        "systemd unit: PrivateNetwork=yes, IPAddressDeny=any, RestrictAddressFamilies=AF_UNIX",
        "tests/test_privacy_strace.py: no AF_INET/AF_INET6 socket in a whole run",
    ],
    "no_tracking": [
        "only counts per zone leave the counter (crowdsign.counting.types.ZoneCounts); "
        "tests/test_tracking_free.py fails if any type downstream of it can carry "
        "coordinates, boxes, per-person records or arrays",
        "no identity, re-identification or tracking model exists in the code; each frame is "
        "counted on its own and forgotten",
    ],
    "frames_transient": [
        "a frame is only a view, valid inside the source's capture block "
        "(crowdsign.sources.base); camera buffers go back to the camera when it ends",
        "the model's input tensor is written in place for each frame (one buffer, reused)",
        "the sign shows `no data` when counts are stale; nothing is kept to fill gaps",
    ],
}

NEVER_PRODUCED = ["images or video (no frame is stored, sent or displayed)",
                  "bounding boxes, positions or trajectories",
                  "identities, faces, re-identification features",
                  "attributes of people (age, gender, clothing, ...)",
                  "per-person records of any kind"]


def describe(config: Config, model_size: tuple[int, int], model_format: PixelFormat,
             model_name: str, threads: int) -> dict[str, Any]:
    """The processing description as a JSON-ready dict."""
    s = config.source
    w, h = model_size
    colour = "luma (grey) only" if model_format is PixelFormat.GRAY else "colour (RGB)"
    tiles = tuple(config.model.tiles)
    if s.kind == "picamera2":
        cw, ch = s.width or w, s.height or h
        stream = (f"the camera's low-resolution stream, {cw}x{ch} "
                  f"{'YUV420 (the model reads the luma plane only)' if model_format is PixelFormat.GRAY and s.format == 'yuv420' else s.format}; "
                  "the full-resolution stream is not requested")
        buffers = (f"{s.buffer_count} camera buffers (DMA memory, reused in turn) and the "
                   "model's input tensor")
        period = f"{1 / s.fps:.3f} s" if s.fps else "one camera frame period"
    elif s.kind in ("v4l2", "gst"):
        cw, ch = s.width or w, s.height or h
        stream = f"the camera asked for {cw}x{ch}, colour, resized to the model input"
        buffers = ("the V4L2 driver's queue of kernel buffers, one decoded frame, and the "
                   "model's input tensor")
        period = f"{1 / s.fps:.3f} s" if s.fps else "one camera frame period"
    else:
        stream = "a recording (replay), decoded at its own resolution, resized to the model input"
        buffers = ("one decoded frame" + (" and one decoded ahead" if s.pace == "fast" else "")
                   + ", and the model's input tensor")
        period = "one frame period of the recording"
    outputs = [_output(o, config) for o in config.outputs]
    return {
        "source": s.uri,
        "captured": {
            "stream": stream,
            "model_input": f"{w}x{h} {colour}",
            "model": f"{model_name}, {threads} threads"
                     + (f", {tiles[0]}x{tiles[1]} tiles" if tiles != (1, 1) else ""),
            "zones": [z.name for z in config.zone_list()],
        },
        "storage": {
            "where": "RAM only; nothing is written to any storage",
            "buffers": buffers,
            "kept_for": f"{period} plus one inference, then overwritten by the next frame",
            "swap": "none: the image has no swap (dphys-swapfile purged, noswap); MemoryMax=512M in the unit",
        },
        "leaves_device": {
            "what": "people counted per zone (smoothed over "
                    f"{config.levels.window} frames), crowding levels "
                    f"({', '.join(config.levels.names)}, or unknown), per-car sums and "
                    "the recommended car",
            "outputs": outputs,
            "journal": (f"a summary line every {config.logging.summary_interval_s:g} s: "
                        "totals per zone, frames per second, inference time (journald, "
                        "volatile in the image)"),
            "systemd_status": "one status line (total people, zones, fps, output health)",
        },
        "never_produced": NEVER_PRODUCED,
        "measures": MEASURES,
    }


def _output(o, config: Config) -> dict[str, Any]:
    if isinstance(o, SerialOutputConfig):
        what = ("one JSON line: counts and levels per zone" if o.format == "json"
                else f"one line from the template {o.template!r}")
        return {"type": "serial", "to": o.port, "what": what,
                "how_often": f"at most {o.rate_hz:g} per second"}
    if isinstance(o, IbisOutputConfig):
        kinds = ", ".join(f"{t.type} {t.template!r}" for t in o.telegrams)
        return {"type": "ibis", "to": o.port, "what": f"IBIS telegrams: {kinds}",
                "how_often": f"at most {o.rate_hz:g} per second"}
    if isinstance(o, ModbusOutputConfig):
        return {"type": "modbus", "to": f"{o.port} (unit {o.unit_id})",
                "what": "holding registers: counts, level codes and data age per zone and car",
                "how_often": "when the controller polls"}
    if isinstance(o, LedMatrixOutputConfig):
        return {"type": "led_matrix", "to": o.port,
                "what": f"{o.layout} per car" + (", arrow to the recommended car" if o.arrow else ""),
                "how_often": f"at most {o.rate_hz:g} per second"}
    return {"type": o.type, "to": getattr(o, "port", "?"), "what": "counts", "how_often": "?"}


def render_text(d: dict[str, Any]) -> str:
    lines = ["crowdsign: processing description (for a data-protection impact assessment)", ""]
    c, st, out = d["captured"], d["storage"], d["leaves_device"]
    lines += ["What is captured",
              f"  source:       {d['source']}",
              f"  stream:       {c['stream']}",
              f"  model input:  {c['model_input']}",
              f"  model:        {c['model']}",
              f"  zones:        {', '.join(c['zones'])}",
              "", "Where it lives",
              f"  where:        {st['where']}",
              f"  buffers:      {st['buffers']}",
              f"  kept for:     {st['kept_for']}",
              f"  swap:         {st['swap']}",
              "", "What leaves the device",
              f"  data:         {out['what']}"]
    if not out["outputs"]:
        lines.append("  outputs:      none configured")
    for o in out["outputs"]:
        lines.append(f"  output:       {o['type']} -> {o['to']}: {o['what']} ({o['how_often']})")
    lines += [f"  journal:      {out['journal']}",
              f"  systemd:      {out['systemd_status']}",
              "", "Never produced"]
    lines += [f"  - {item}" for item in d["never_produced"]]
    lines += ["", "Measures that enforce it"]
    for point, measures in d["measures"].items():
        lines.append(f"  {point.replace('_', ' ')}:")
        lines += [f"    - {m}" for m in measures]
    return "\n".join(lines)
