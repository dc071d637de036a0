"""Recorded footage as a frame source: a video file or a folder of images.

Replay is how the daemon is tried without a camera (and how the tests and
benchmarks feed it real pixels), so it behaves like a camera where that
matters to the pipeline:

- `pace="realtime"` delivers frame k at `start + k / fps` on the monotonic
  clock. Deadlines are absolute, so sleeping a little long never adds up to
  drift. When the consumer is slower than the recording, the frames whose
  time has passed are skipped, as a live camera drops frames nobody took:
  the recording keeps wall-clock time and `Frame.index` shows the gap.
  `pace="fast"` delivers every frame as soon as it is asked for (benchmarks,
  accuracy runs).
- `capture(timeout)` never blocks longer than `timeout`. If the next frame is
  due later than that, it sleeps `timeout` and yields None: "no frame yet",
  exactly what a camera slower than the caller's timeout gives. (So a
  ReopeningSource's stall timeout must be longer than one frame period; at
  the default 5 s it is, for anything above 0.2 fps.)
- at the end of the recording: `loop` starts it again (Frame.index keeps
  counting), `exit` raises SourceExhausted (the daemon stops cleanly),
  `stall` delivers nothing more, as a camera that went silent would.

Frames are BGR, OpenCV's own order, so decoding costs no extra conversion.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np

from crowdsign.frames import Frame, PixelFormat
from crowdsign.sources.base import FrameSource, SourceError, SourceExhausted

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_FPS = 10.0  # image folders, and videos whose container has no rate
PACES = ("realtime", "fast")
AT_END = ("loop", "exit", "stall")
# A wake-up this close before a deadline counts as on time (sleep granularity).
_EARLY_S = 0.0005
# At most this much of the recording is skipped to catch up with the clock.
_MAX_SKIP_S = 1.0


class _VideoReader:
    """Frames of a video file through cv2.VideoCapture (FFmpeg)."""

    def __init__(self, path: Path, name: str):
        self._path, self._name = path, name
        self._cap = self._open()
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self._path))
        if not cap.isOpened():
            raise SourceError(f"{self._name}: cannot be decoded as a video or image folder")
        return cap

    def read(self, decode: bool) -> tuple[bool, Optional[np.ndarray]]:
        """(got a frame, its pixels); grab() alone when skipping saves the colour conversion."""
        if not decode:
            return bool(self._cap.grab()), None
        ok, image = self._cap.read()
        return (True, image) if ok else (False, None)

    def rewind(self) -> None:
        # Reopening rather than seeking: seeking to 0 is unreliable in some
        # containers and streams, and a reopen once per loop costs milliseconds.
        self._cap.release()
        self._cap = self._open()

    def close(self) -> None:
        self._cap.release()


class _FolderReader:
    """Images of a folder in name order, decoded with cv2.imread."""

    def __init__(self, path: Path, name: str):
        self._name = name
        self._files = sorted(p for p in path.iterdir()
                             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise SourceError(f"{name}: no .jpg, .jpeg or .png images in the folder")
        self._next = 0
        self.fps = 0.0

    def read(self, decode: bool) -> tuple[bool, Optional[np.ndarray]]:
        if self._next >= len(self._files):
            return False, None
        path = self._files[self._next]
        self._next += 1
        if not decode:
            return True, None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self._name}: cannot decode image {path.name}")
        return True, image

    def rewind(self) -> None:
        self._next = 0

    def close(self) -> None:
        pass


_Reader = Union[_VideoReader, _FolderReader]


class _DecodeAhead:
    """Decodes the next frame on a worker thread while the current one is counted.

    A camera fills its next buffer while the last one is being read; with
    `pace="fast"` this makes a recording do the same, so the frame loop's
    capture step is a hand-over, not a decode (OpenCV releases the GIL while
    it decodes). At most one frame is decoded ahead.
    """

    def __init__(self, reader: "_Reader"):
        self._reader = reader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-decode")
        self._next: Optional[Future] = None

    def start(self) -> None:
        if self._next is None:
            self._next = self._pool.submit(self._reader.read, True)

    def take(self) -> tuple[bool, Optional[np.ndarray]]:
        """The frame decoded ahead (or decoded now, if none was started)."""
        future, self._next = self._next, None
        return future.result() if future is not None else self._reader.read(True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._next = None


class ReplaySource(FrameSource):
    """A video file or image folder replayed as a camera.

    path:   a video file OpenCV's FFmpeg can decode, or a folder of
            .jpg/.jpeg/.png images (sorted by name).
    pace:   `realtime` (the recording's own rate) or `fast` (no waiting).
    at_end: `loop`, `exit` (SourceExhausted) or `stall` (no more frames).
    fps:    frames per second; 0 means the file's own rate (10 for folders).
    clock:  monotonic seconds, for deadlines and Frame.timestamp; waiting
            itself uses time.sleep.
    """

    def __init__(self, path: Union[str, Path], *, pace: str = "realtime", at_end: str = "loop",
                 fps: float = 0.0, clock: Callable[[], float] = time.monotonic):
        if pace not in PACES:
            raise ValueError(f"pace must be one of {PACES}, got {pace!r}")
        if at_end not in AT_END:
            raise ValueError(f"at_end must be one of {AT_END}, got {at_end!r}")
        if fps < 0:
            raise ValueError(f"fps must be >= 0, got {fps}")
        self.path = Path(path)
        self._pace, self._at_end, self._fps, self._clock = pace, at_end, fps, clock
        self._reader: Optional[_Reader] = None
        self._ahead: Optional[_DecodeAhead] = None
        self._pending: Optional[np.ndarray] = None  # frame 0, decoded by open() to prove the file
        self._period = 1.0 / DEFAULT_FPS
        self._position = 0        # recording frames consumed since open, across loops
        self._start: Optional[float] = None  # when frame 0 is due; set by the first capture
        self._ended = False       # at_end="stall" reached the end

    def describe(self) -> str:
        return f"replay:{self.path}"

    @property
    def fps(self) -> float:
        """The replay rate in frames per second (valid after open)."""
        return 1.0 / self._period

    def open(self) -> None:
        """Open the recording and decode its first frame, so a bad file fails here."""
        self.close()
        name = self.describe()
        if self.path.is_dir():
            reader: _Reader = _FolderReader(self.path, name)
        elif self.path.is_file():
            reader = _VideoReader(self.path, name)
        else:
            raise SourceError(f"{name}: no such file or folder")
        try:
            got, first = reader.read(decode=True)
        except SourceError:
            reader.close()
            raise
        if not got:
            reader.close()
            raise SourceError(f"{name}: cannot be decoded: no frames in it")
        self._reader, self._pending = reader, first
        if self._pace == "fast":
            self._ahead = _DecodeAhead(reader)
        self._period = 1.0 / (self._fps or reader.fps or DEFAULT_FPS)
        self._position = 0
        self._start, self._ended = None, False

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
        if self._reader is not None:
            self._reader.close()
        self._reader, self._pending, self._ahead = None, None, None

    @contextmanager
    def capture(self, timeout: float) -> Iterator[Optional[Frame]]:
        yield self._next_frame(timeout)

    # --- internals -------------------------------------------------------------

    def _next_frame(self, timeout: float) -> Optional[Frame]:
        if self._reader is None:
            raise SourceError(f"{self.describe()}: capture before open")
        entered = time.monotonic()
        if self._ended:
            return self._silence(timeout, entered)
        if self._pace == "realtime":
            now = self._clock()
            if self._start is None:
                self._start = now
            due = self._start + self._position * self._period
            if now < due - _EARLY_S:
                time.sleep(min(due - now, max(0.0, timeout)))
                now = self._clock()
                if now < due - _EARLY_S:
                    return None
            # Frames whose time has passed are dropped, as a camera drops them;
            # after a longer pause (a suspended process) the replay resumes
            # instead of decoding its way through the whole gap.
            late = int((now - due) / self._period)
            limit = int(_MAX_SKIP_S / self._period) + 1
            if late > limit:
                self._start += (late - limit) * self._period
                late = limit
            for _ in range(late):
                if not self._advance(decode=False)[0]:
                    return self._silence(timeout, entered)
        got, image = self._advance(decode=True)
        if not got:
            return self._silence(timeout, entered)
        return Frame(pixels=image, format=PixelFormat.BGR, timestamp=self._clock(),
                     index=self._position - 1)

    @staticmethod
    def _silence(timeout: float, entered: float) -> None:
        """What a silent camera gives after the end with at_end="stall": nothing, at `timeout`."""
        time.sleep(max(0.0, timeout - (time.monotonic() - entered)))

    def _advance(self, decode: bool) -> tuple[bool, Optional[np.ndarray]]:
        """Move one frame on: (True, pixels if `decode`), or (False, None) once stalled."""
        assert self._reader is not None
        if self._pending is not None:  # frame 0, decoded by open()
            image, self._pending = self._pending, None
        else:
            got, image = self._ahead.take() if self._ahead else self._reader.read(decode)
            if not got:
                if self._at_end == "exit":
                    raise SourceExhausted(f"{self.describe()}: end of the recording "
                                          f"after {self._position} frames")
                if self._at_end == "stall":
                    self._ended = True
                    return False, None
                self._reader.rewind()
                got, image = self._reader.read(decode)
                if not got:
                    raise SourceError(f"{self.describe()}: no frames after rewinding")
        self._position += 1
        if self._ahead is not None:
            self._ahead.start()
        return True, image
