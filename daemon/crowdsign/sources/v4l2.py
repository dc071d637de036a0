"""USB and other V4L2 cameras, and GStreamer pipelines, through cv2.VideoCapture.

VideoCapture.read() blocks for as long as the driver likes (OpenCV's V4L2
backend waits up to 10 s in select()) and a camera's own queue hands out
frames that may be seconds old if the counter is slow. Both are wrong for a
sign that must show the crowd *now* and a daemon that must answer its
watchdog. So a small reader thread does the blocking reads, keeping only the
newest frame (older ones are dropped, and Frame.index shows the gap), and
`capture(timeout)` waits at most `timeout` for a frame newer than the last
one it delivered. CAP_PROP_BUFFERSIZE=1 is asked for as well, where the
backend honours it, so the driver's queue is short too.

The reader thread owns the VideoCapture once started and releases it when it
ends: releasing it from another thread while read() is blocked in the driver
would free memory the read is still using.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from crowdsign.frames import Frame, PixelFormat
from crowdsign.sources.base import FrameSource, SourceError

# How long close() waits for a read blocked in the driver before leaving the
# thread to finish (and release the device) on its own.
_CLOSE_JOIN_S = 2.0


def is_gstreamer_pipeline(target: str) -> bool:
    """A target with a `!` link is a GStreamer pipeline, not a device."""
    return "!" in target


def gstreamer_available() -> bool:
    """Whether this OpenCV build has the GStreamer backend (pip's wheels do not)."""
    return bool(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))


def _open_capture(target: str, name: str) -> cv2.VideoCapture:
    if is_gstreamer_pipeline(target):
        if not gstreamer_available():
            raise SourceError(f"{name}: this OpenCV has no GStreamer support (pip's "
                              f"opencv-python wheels lack it; use the distribution's "
                              f"python3-opencv, or a v4l2: device)")
        cap = cv2.VideoCapture(target, cv2.CAP_GSTREAMER)
    elif target.isdigit():
        cap = cv2.VideoCapture(int(target), cv2.CAP_V4L2)
    elif target.startswith("/dev/"):
        if not Path(target).exists():
            raise SourceError(f"{name}: no such device")
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
    else:  # a file or a stream URL: whatever backend OpenCV picks (FFmpeg)
        cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{name}: cannot open (no such camera, busy, or no permission)")
    return cap


class _NewestFrameReader:
    """A thread reading frames as fast as the camera gives them, keeping the newest."""

    def __init__(self, cap: cv2.VideoCapture, name: str):
        self._cap, self._name = cap, name
        self._cond = threading.Condition()
        self._image: Optional[np.ndarray] = None
        self._stamp = 0.0
        self._count = 0      # frames read so far
        self._error: Optional[str] = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                ok, image = self._cap.read()
                stamp = time.monotonic()
                with self._cond:
                    if not ok:
                        self._error = (f"{self._name}: read failed (camera unplugged, "
                                       f"or the stream ended)")
                    else:
                        self._image, self._stamp = image, stamp
                        self._count += 1
                    self._cond.notify_all()
                if not ok:
                    return
        except cv2.error as e:
            with self._cond:
                self._error = f"{self._name}: read failed: {e}"
                self._cond.notify_all()
        finally:
            self._cap.release()

    def newer_than(self, count: int, timeout: float) -> Optional[tuple[np.ndarray, float, int]]:
        """The newest frame if it is newer than frame number `count`, waiting up to `timeout`.

        Returns (pixels, timestamp, frames read so far), or None on timeout;
        raises SourceError once the camera failed and no newer frame is left.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count <= count and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._count > count:
                assert self._image is not None
                return self._image, self._stamp, self._count
            raise SourceError(self._error)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(_CLOSE_JOIN_S)


class V4l2Source(FrameSource):
    """A V4L2 camera (`/dev/video0` or `0`), a GStreamer pipeline, or a video URL/file.

    target:         `/dev/videoN`, `N`, or a GStreamer pipeline ending in
                    appsink (recognised by its `!`); anything else is handed
                    to OpenCV as is (a file or stream URL; the tests use this).
    width, height:  the size to ask the camera for, in pixels; 0 leaves the
                    camera's default. The camera may pick the nearest it has.
    fps:            the frame rate to ask for; 0 leaves the camera's default.

    Frames are BGR as OpenCV delivers them. Frame.index counts the frames
    read from the camera, so a gap is a frame dropped because the counter was
    busy; Frame.timestamp is when read() returned it.
    """

    def __init__(self, target: str, width: int = 0, height: int = 0, fps: float = 0.0):
        self.target, self.width, self.height, self.fps = target, width, height, fps
        self._reader: Optional[_NewestFrameReader] = None
        self._delivered = 0  # frames read when the last delivered one was

    def describe(self) -> str:
        return f"{'gst' if is_gstreamer_pipeline(self.target) else 'v4l2'}:{self.target}"

    def open(self) -> None:
        self.close()
        cap = _open_capture(self.target, self.describe())
        if self.width > 0 and self.height > 0:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps > 0:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # ignored (False) by backends without it
        self._delivered = 0
        self._reader = _NewestFrameReader(cap, self.describe())

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None

    @contextmanager
    def capture(self, timeout: float) -> Iterator[Optional[Frame]]:
        if self._reader is None:
            raise SourceError(f"{self.describe()}: capture before open")
        newest = self._reader.newer_than(self._delivered, max(0.0, timeout))
        if newest is None:
            yield None
            return
        pixels, stamp, count = newest
        self._delivered = count
        yield Frame(pixels=pixels, format=PixelFormat.BGR, timestamp=stamp, index=count - 1)
