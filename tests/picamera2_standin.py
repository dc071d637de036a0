"""A stand-in for the picamera2 module, the one fake this project allows.

libcamera needs a Pi and its camera, so Picamera2Source is tested against
this instead. It follows the real API's shape (raspberrypi/picamera2,
picamera2.py and request.py) wherever the source touches it:

- `Picamera2(camera_num)`, raising RuntimeError for a camera that is not there;
- `create_video_configuration(main, lores, raw, transform, colour_space,
  buffer_count, controls, display, encode, queue, sensor, use_case)` returning
  the config dict; `configure()` checking it as the real one does (even
  sizes, lores no larger than main, lores must be YUV on VC4) and filling in
  each stream's stride; `camera_configuration()`, `start`, `stop`, `close`;
- `capture_request(wait, flush)`: `wait` a number of seconds raises
  concurrent.futures.TimeoutError when no frame comes, `wait` 0/False would
  return a Job in picamera2 and is refused here so the source cannot pass it;
  `captured_request()` as the real context manager; `cancel_all_and_flush()`;
- `CompletedRequest` with a reference count, `release()` and `get_metadata()`
  (SensorTimestamp in CLOCK_BOOTTIME nanoseconds);
- `MappedArray(request, stream)` mapping the request's buffer as the real one
  reshapes it: YUV420 as (h * 3/2, stride) rows, RGB888/BGR888 as (h, w, 3).

Behind it is a `Rig`: real pixels (frames of ../shared/video/vtest.avi
scaled to the lores size, laid out in the buffer exactly as libcamera lays
them out, stride padding included), `buffer_count` buffers that circulate,
and switches to make the camera stall (no frame within `wait`) or fail
(RuntimeError, as a camera that vanished). On release a buffer is filled
with POISON, so a test can prove a frame was a view of the camera buffer and
that nothing read it afterwards; a request that is never released keeps its
buffer, so a leaking source starves the camera as it would on a Pi.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
import time
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

POISON = 0xA5


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


class Rig:
    """The simulated camera hardware: pixels, buffers, failure switches and records.

    video:          a video file whose first `frames` frames are the picture.
    cameras:        how many cameras are attached.
    platform:       "pisp" (Pi 5: any lores format) or "vc4" (Pi 4: lores must be YUV).
    stride_align:   bytes each row is padded to, as the ISP does.
    """

    def __init__(self, video: Path, *, frames: int = 8, cameras: int = 1,
                 platform: str = "pisp", stride_align: int = 64):
        cap = cv2.VideoCapture(str(video))
        self._bgr = []
        while len(self._bgr) < frames:
            ok, image = cap.read()
            if not ok:
                break
            self._bgr.append(image)
        cap.release()
        if not self._bgr:
            raise RuntimeError(f"stand-in: no frames in {video}")
        self.cameras, self.platform, self.stride_align = cameras, platform, stride_align
        self.mode = "ok"                      # "ok", "stall" or "error"
        self.configurations: list[dict] = []  # every config passed to configure()
        self.instances: list[Picamera2] = []
        self.requests: list[CompletedRequest] = []  # every request handed out
        self.cancels = 0
        self.lock = threading.Lock()
        # The module interface the source uses.
        self.Picamera2 = functools.partial(Picamera2, self)
        self.MappedArray = MappedArray

    def reference_bgr(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Frame `index` as the camera delivers it, scaled to `size`, in BGR."""
        return cv2.resize(self._bgr[index % len(self._bgr)], size, interpolation=cv2.INTER_AREA)

    def fill(self, buffer: np.ndarray, stream: dict, index: int) -> None:
        """Write frame `index` into a 1-D buffer laid out as libcamera lays out `stream`."""
        w, h = stream["size"]
        stride, fmt = stream["stride"], stream["format"]
        bgr = self.reference_bgr(index, (w, h))
        if fmt == "YUV420":
            i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
            buffer[:h * stride].reshape(h, stride)[:, :w] = i420[:h]
            chroma = (h // 2) * (stride // 2)
            planes = i420[h:].reshape(2, h // 2, w // 2)
            for p in range(2):
                start = h * stride + p * chroma
                buffer[start:start + chroma].reshape(h // 2, stride // 2)[:, :w // 2] = planes[p]
        else:  # libcamera "RGB888" is B,G,R in memory, "BGR888" is R,G,B
            pixels = bgr if fmt == "RGB888" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            buffer[:h * stride].reshape(h, stride)[:, :w * 3] = pixels.reshape(h, w * 3)

    def outstanding(self) -> int:
        """Requests handed out and not yet released."""
        return sum(1 for r in self.requests if r.ref_count > 0)


class Picamera2:
    """The parts of picamera2.Picamera2 a frame source uses."""

    def __init__(self, rig: Rig, camera_num: int = 0, tuning: Any = None):
        if not 0 <= camera_num < rig.cameras:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.rig, self.camera_num = rig, camera_num
        self.camera_config: Optional[dict] = None
        self.started = self.closed = False
        self.frames = 0
        self._free: list[np.ndarray] = []
        rig.instances.append(self)

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None,
                                   colour_space=None, buffer_count=6, controls={},
                                   display="main", encode="main", queue=True, sensor={},
                                   use_case="video") -> dict:
        self._check_open()
        main = {"format": "XBGR8888", "size": (1280, 720), **main}
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], **lores}
        return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores,
                "raw": raw, "controls": dict(controls), "sensor": sensor,
                "display": display, "encode": encode}

    def configure(self, config: dict) -> None:
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = {**config, "main": dict(config["main"]),
                  "lores": dict(config["lores"]) if config["lores"] else None}
        streams = [s for s in (config["main"], config["lores"]) if s is not None]
        for stream in streams:
            w, h = stream["size"]
            if w % 2 or h % 2:
                raise RuntimeError("width and height should be even")
        lores = config["lores"]
        if lores is not None:
            if lores["size"][0] > config["main"]["size"][0] or \
               lores["size"][1] > config["main"]["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.rig.platform == "vc4" and lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
        for stream in streams:
            w, h = stream["size"]
            fmt = stream["format"]
            bpp = {"YUV420": 1, "RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}[fmt]
            stream["stride"] = _align(w * bpp, self.rig.stride_align)
            rows = h * 3 // 2 if fmt == "YUV420" else h
            stream["framesize"] = stream["stride"] * rows
        self.camera_config = config
        self.rig.configurations.append(config)
        if lores is not None:
            self._free = [np.zeros(lores["framesize"], np.uint8)
                          for _ in range(config["buffer_count"])]

    def camera_configuration(self) -> Optional[dict]:
        return self.camera_config

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        self._check_open()
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True

    def cancel_all_and_flush(self) -> None:
        self.rig.cancels += 1

    def capture_request(self, wait: Any = None, signal_function: Any = None,
                        flush: Any = None) -> "CompletedRequest":
        if signal_function is not None or wait is False or wait == 0:
            raise TypeError(f"stand-in: capture_request(wait={wait!r}) returns a Job in "
                            f"picamera2, not a request")
        if wait is None or wait is True:
            wait = None
        self._check_open()
        if not self.started:
            raise RuntimeError("Camera is not running")
        if self.rig.mode == "error":
            raise RuntimeError("stand-in: camera vanished (Device or resource busy)")
        with self.rig.lock:
            buffer = self._free.pop(0) if self._free and self.rig.mode == "ok" else None
        if buffer is None:  # stalled, or every buffer still held by the application
            if wait is None:
                raise AssertionError("stand-in: waiting forever on a camera with no frame")
            time.sleep(wait)
            raise concurrent.futures.TimeoutError()
        assert self.camera_config is not None
        self.rig.fill(buffer, self.camera_config["lores"], self.frames)
        request = CompletedRequest(self, buffer, self.frames)
        self.frames += 1
        self.rig.requests.append(request)
        return request

    @contextlib.contextmanager
    def captured_request(self, wait: Any = None, flush: Any = None):
        request = self.capture_request(wait=wait, flush=flush)
        try:
            yield request
        finally:
            request.release()

    def _give_back(self, buffer: np.ndarray) -> None:
        buffer.fill(POISON)
        with self.rig.lock:
            self._free.append(buffer)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")


class CompletedRequest:
    """A completed camera request holding one lores buffer until released."""

    def __init__(self, picam2: Picamera2, buffer: np.ndarray, sequence: int):
        assert picam2.camera_config is not None
        self.picam2 = picam2
        self.buffer: Optional[np.ndarray] = buffer
        self.sequence = sequence
        self.ref_count = 1
        self.config = dict(picam2.camera_config)
        boottime_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self._metadata = {"SensorTimestamp": boottime_ns - 20_000_000, "ExposureTime": 10_000,
                          "ScalerCrop": picam2.camera_config["controls"].get("ScalerCrop")}

    def acquire(self) -> None:
        if self.ref_count == 0:
            raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
        self.ref_count += 1

    def release(self) -> None:
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        if self.ref_count == 0:
            assert self.buffer is not None
            self.picam2._give_back(self.buffer)
            self.buffer = None

    def get_metadata(self) -> dict:
        self._check_live()
        return dict(self._metadata)

    def _check_live(self) -> None:
        if self.ref_count <= 0 or self.buffer is None:
            raise RuntimeError("stand-in: request used after release")


class MappedArray:
    """Maps a request's stream buffer as a numpy array, shaped as picamera2 shapes it."""

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True,
                 write: bool = True):
        if stream != "lores":
            raise RuntimeError(f"stand-in maps the lores stream only, not {stream!r}")
        self._request, self._reshape = request, reshape
        self._array: Optional[np.ndarray] = None

    def __enter__(self) -> "MappedArray":
        request = self._request
        request._check_live()
        assert request.buffer is not None
        array = request.buffer
        if self._reshape:
            config = request.config["lores"]
            fmt, (w, h), stride = config["format"], config["size"], config["stride"]
            if fmt in ("RGB888", "BGR888"):
                array = array[:h * stride].reshape(h, stride)[:, :w * 3].reshape(h, w, 3)
            elif fmt in ("YUV420", "YVU420"):
                array = array.reshape(h * 3 // 2, stride)
            else:
                raise RuntimeError("Format " + fmt + " not supported")
        self._array = array
        return self

    def __exit__(self, *exc: Any) -> None:
        self._array = None

    @property
    def array(self) -> Optional[np.ndarray]:
        return self._array
