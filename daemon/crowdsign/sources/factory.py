"""From `[source]` config to a running frame source, and `crowdsign check`'s look at it.

The config holds plain values only; this is where they become a backend.
Every backend is wrapped in a ReopeningSource, so the supervisor deals with
one kind of source whatever the camera.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path

from crowdsign.config import SourceConfig
from crowdsign.frames import PixelFormat
from crowdsign.sources.base import FrameSource, SourceError
from crowdsign.sources.picamera2 import INSTALL_HINT, Picamera2Source
from crowdsign.sources.reopening import ReopeningSource
from crowdsign.sources.replay import ReplaySource
from crowdsign.sources.v4l2 import V4l2Source, gstreamer_available, is_gstreamer_pipeline


def make_source(config: SourceConfig, *, model_size: tuple[int, int],
                model_format: PixelFormat, stop: threading.Event,
                log: logging.Logger) -> ReopeningSource:
    """The configured source, reopened on failure; not yet opened.

    model_size:   the model's input (width, height) in pixels, the camera size
                  when the config leaves width/height at 0.
    model_format: the colour order the model wants (RGB or BGR), so a
                  3-channel Pi camera stream is delivered in that order.
    Raises SourceError for a target that cannot name a source at all.
    """
    return ReopeningSource(
        lambda: make_backend(config, model_size, model_format),
        stall_timeout_s=config.stall_timeout_s, backoff_initial_s=config.backoff_initial_s,
        backoff_max_s=config.backoff_max_s, stop=stop, log=log)


def make_backend(config: SourceConfig, model_size: tuple[int, int],
                 model_format: PixelFormat) -> FrameSource:
    """The bare backend for `config` (see make_source for the arguments), unopened."""
    width = config.width or model_size[0]
    height = config.height or model_size[1]
    kind = config.kind
    if kind == "replay":
        return ReplaySource(Path(config.target), pace=config.pace, at_end=config.at_end,
                            fps=config.fps)
    if kind in ("v4l2", "gst"):
        return V4l2Source(config.target, width, height, fps=config.fps)
    if kind == "picamera2":
        crop = config.scaler_crop  # validated: [x, y, width, height]
        return Picamera2Source(
            _camera_number(config), width, height,
            fmt=_picamera2_format(config.format, model_format),
            buffer_count=config.buffer_count,
            scaler_crop=(crop[0], crop[1], crop[2], crop[3]) if crop else None,
            luma_only=model_format is PixelFormat.GRAY)
    raise SourceError(f"{config.uri}: unknown source kind {kind!r}")


def _camera_number(config: SourceConfig) -> int:
    target = config.target or "0"
    if not target.isdigit():
        raise SourceError(f"{config.uri}: the camera number must be a whole number, got {target!r}")
    return int(target)


def _picamera2_format(name: str, model_format: PixelFormat) -> PixelFormat:
    """yuv420 stays YUV420; rgb888 means three channels, in the model's own order."""
    if name == "yuv420":
        return PixelFormat.YUV420
    return PixelFormat.BGR if model_format is PixelFormat.BGR else PixelFormat.RGB


def check_source(config: SourceConfig) -> list[str]:
    """Problems with the configured source that `crowdsign check` can see, one line each.

    A replay is opened and its first frame decoded; a device must exist and
    be readable and writable by this user; picamera2 must be importable (the
    camera itself is not opened: the running daemon may hold it).
    """
    kind, target = config.kind, config.target
    if kind == "replay":
        source = ReplaySource(Path(target), pace=config.pace, at_end=config.at_end,
                              fps=config.fps)
        try:
            source.open()
        except SourceError as e:
            return [str(e)]
        finally:
            source.close()
        return []
    if kind == "gst" or (kind == "v4l2" and is_gstreamer_pipeline(target)):
        if not gstreamer_available():
            return [f"{config.uri}: this OpenCV has no GStreamer support (use the "
                    f"distribution's python3-opencv, or a v4l2: device)"]
        return []
    if kind == "v4l2":
        device = f"/dev/video{target}" if target.isdigit() else target
        if not os.path.exists(device):
            return [f"{config.uri}: no such device {device}"]
        if not os.access(device, os.R_OK | os.W_OK):
            return [f"{config.uri}: no permission to use {device} "
                    f"(add the service user to the video group)"]
        return []
    if kind == "picamera2":
        problems = []
        try:
            _camera_number(config)
        except SourceError as e:
            problems.append(str(e))
        if importlib.util.find_spec("picamera2") is None:
            problems.append(INSTALL_HINT)
        return problems
    return [f"{config.uri}: unknown source kind {kind!r}"]
