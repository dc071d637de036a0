"""The Raspberry Pi camera through picamera2 (libcamera), without copying pixels.

The ISP scales the sensor image down to the model's size in hardware, into
the `lores` stream, so the CPU never touches full-resolution pixels. The
frame handed to the counter is a view of that camera buffer (MappedArray),
valid only inside the capture block; the request goes back to the camera
when the block ends, so nothing can keep a picture of anyone.

Configuration, and why:
- lores is YUV420 by default: every Pi's ISP can output it, and a gray model
  reads the luma plane for free. A 3-channel lores (`PixelFormat.RGB/BGR`) is
  possible only on Pi 5 (PiSP): on Pi 4 and earlier (VC4) picamera2 refuses
  a non-YUV lores ("lores stream must be YUV") and open() fails with that.
  Note libcamera's names are byte orders read backwards: "BGR888" is R,G,B
  in memory and "RGB888" is B,G,R, hence the table below.
- main is the same size as lores and YUV420, the cheapest stream the
  configuration must still have (lores may not exceed main). Mind that the
  sensor mode picamera2 picks follows main's size, and on some sensors the
  small modes crop the field of view (imx219's 640x480): check the picture
  once when commissioning a camera, and use scaler_crop to frame the platform.
- queue=False: picamera2 then holds no completed request back, so a capture
  gets the next frame the camera completes, never a stale one.
- buffer_count as configured; ScalerCrop (sensor pixels) when given.

YUV420 and stride: MappedArray gives a YUV420 buffer as (h * 3/2, stride)
rows, stride >= width. When they are equal the view is exactly the planar
I420 image Frame promises, passed on without a copy. When the ISP padded the
rows (a 300-wide lores usually gets a 320-byte stride), slicing [:, :width]
would give a correct luma plane but scrambled chroma, because each chroma row
is stride/2 long; so the frame is repacked into one preallocated buffer
(1.5 bytes a pixel, about 0.1 ms at 300 x 300). Choose a width that is a
multiple of 64 to keep the zero-copy path; `zero_copy` says which one runs.

A grayscale model needs the luma plane only: with `luma_only` the frame is
PixelFormat.GRAY, a strided view of the first `height` rows of the buffer,
cut to `width` columns. That is a view whatever the stride, so a gray model
never copies a pixel, and the chroma planes are never touched.

picamera2 is imported inside open() only, so the daemon and its tests run on
machines without it; tests pass a stand-in module instead.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Optional

import numpy as np

from crowdsign.frames import Frame, PixelFormat
from crowdsign.sources.base import FrameSource, SourceError

# Frame format -> the libcamera format whose memory layout it is.
LIBCAMERA_FORMATS = {
    PixelFormat.YUV420: "YUV420",
    PixelFormat.RGB: "BGR888",   # R, G, B in memory
    PixelFormat.BGR: "RGB888",   # B, G, R in memory
}
# picamera2's capture_request(wait=...) raises concurrent.futures.TimeoutError,
# which is the builtin TimeoutError only from Python 3.11.
_TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError)
# picamera2 takes wait=0 as "don't wait" and returns a Job instead of a request.
_MIN_WAIT_S = 0.001

INSTALL_HINT = "picamera2 is not installed (on Raspberry Pi OS: apt install python3-picamera2)"


def import_picamera2() -> ModuleType:
    """The picamera2 module, or SourceError saying how to install it."""
    try:
        import picamera2
    except ImportError as e:
        raise SourceError(f"{INSTALL_HINT}: {e}") from None
    return picamera2


class Picamera2Source(FrameSource):
    """A Pi camera's lores stream.

    camera_num:     libcamera camera number (0 for the only or first camera).
    width, height:  lores size in pixels, even numbers; usually the model's
                    input size. picamera2 may align it; the frames say the size.
    fmt:            PixelFormat.YUV420 (default, any Pi) or RGB/BGR (Pi 5 only).
    buffer_count:   camera buffers; more absorbs jitter, fewer saves memory.
    scaler_crop:    (x, y, width, height) in sensor pixels, or None for the
                    whole field of view.
    luma_only:      with YUV420, hand over the luma plane alone as a GRAY
                    frame (for grayscale models): always a view, never a copy.
    picamera2_module: the module providing Picamera2 and MappedArray; None
                    imports picamera2 at open().

    Frame.timestamp is the sensor's start-of-exposure time (SensorTimestamp,
    CLOCK_BOOTTIME) moved onto time.monotonic(), falling back to the delivery
    time; Frame.index counts delivered frames.
    """

    def __init__(self, camera_num: int = 0, width: int = 320, height: int = 240, *,
                 fmt: PixelFormat = PixelFormat.YUV420, buffer_count: int = 4,
                 scaler_crop: Optional[tuple[int, int, int, int]] = None,
                 luma_only: bool = False, picamera2_module: Optional[Any] = None):
        if fmt not in LIBCAMERA_FORMATS:
            raise ValueError(f"fmt must be one of {list(LIBCAMERA_FORMATS)}, got {fmt!r}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"lores size must be positive and even, got {width}x{height}")
        self.camera_num, self.width, self.height = camera_num, width, height
        self.fmt, self.buffer_count, self.scaler_crop = fmt, buffer_count, scaler_crop
        self.luma_only = luma_only and fmt is PixelFormat.YUV420
        self._frame_format = PixelFormat.GRAY if self.luma_only else fmt
        self._module = picamera2_module
        self._cam: Any = None
        self._mapped_array: Any = None
        self._packed: Optional[np.ndarray] = None  # I420 repack buffer when the stride is padded
        self._delivered = 0
        self.zero_copy = True

    def describe(self) -> str:
        return f"picamera2:{self.camera_num}"

    def open(self) -> None:
        self.close()
        module = self._module if self._module is not None else import_picamera2()
        name = self.describe()
        try:
            cam = module.Picamera2(self.camera_num)
        except Exception as e:  # RuntimeError/IndexError from libcamera: no such camera, busy
            raise SourceError(f"{name}: cannot open the camera: {e}") from None
        try:
            size = (self.width, self.height)
            controls = {"ScalerCrop": tuple(self.scaler_crop)} if self.scaler_crop else {}
            config = cam.create_video_configuration(
                main={"size": size, "format": "YUV420"},
                lores={"size": size, "format": LIBCAMERA_FORMATS[self.fmt]},
                buffer_count=self.buffer_count, queue=False, controls=controls,
                display=None, encode=None)
            cam.configure(config)
            lores = cam.camera_configuration()["lores"]
            cam.start()
        except Exception as e:
            _close_quietly(cam)
            raise SourceError(f"{name}: cannot configure or start the camera: {e}") from None
        self._cam, self._mapped_array = cam, module.MappedArray
        self.width, self.height = (int(v) for v in lores["size"])
        self.zero_copy = (self.fmt is not PixelFormat.YUV420 or self.luma_only
                          or int(lores["stride"]) == self.width)
        self._packed = None if self.zero_copy else np.empty(
            (self.height * 3 // 2, self.width), np.uint8)
        self._delivered = 0

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _close_quietly(cam)

    @contextmanager
    def capture(self, timeout: float) -> Iterator[Optional[Frame]]:
        cam = self._cam
        if cam is None:
            raise SourceError(f"{self.describe()}: capture before open")
        request = None
        try:
            request = cam.capture_request(wait=max(_MIN_WAIT_S, timeout))
        except _TIMEOUTS:
            # The timed-out job stays queued and would take (and never give
            # back) the next buffer; cancelling it keeps the buffers circulating.
            self._cancel_jobs(cam)
        except Exception as e:
            raise SourceError(f"{self.describe()}: camera failed: {e}") from None
        if request is None:
            yield None
            return
        try:
            stamp = self._timestamp(request)
            with self._mapped_array(request, "lores") as mapped:
                frame = Frame(pixels=self._pixels(mapped.array), format=self._frame_format,
                              timestamp=stamp, index=self._delivered)
                self._delivered += 1
                yield frame
        finally:
            request.release()

    # --- internals -------------------------------------------------------------

    def _pixels(self, array: np.ndarray) -> np.ndarray:
        """The frame's pixels: the mapped view, its luma plane, or the I420 repack of a padded one."""
        if self.luma_only:
            return array[:self.height, :self.width]
        if self._packed is None:
            return array
        h, w = self.height, self.width
        stride = array.shape[1]
        flat = array.reshape(-1)  # the buffer is contiguous: still a view
        chroma = (h // 2) * (stride // 2)
        packed = self._packed
        packed[:h] = flat[:h * stride].reshape(h, stride)[:, :w]
        planes = packed[h:].reshape(2, h // 2, w // 2)
        planes[0] = flat[h * stride:h * stride + chroma].reshape(h // 2, stride // 2)[:, :w // 2]
        planes[1] = flat[h * stride + chroma:h * stride + 2 * chroma].reshape(
            h // 2, stride // 2)[:, :w // 2]
        return packed

    def _cancel_jobs(self, cam: Any) -> None:
        try:
            cam.cancel_all_and_flush()
        except Exception as e:
            raise SourceError(f"{self.describe()}: camera failed: {e}") from None

    @staticmethod
    def _timestamp(request: Any) -> float:
        """Start of exposure on the monotonic clock, or now if the camera does not say."""
        now = time.monotonic()
        sensor_ns = request.get_metadata().get("SensorTimestamp")
        if not sensor_ns:
            return now
        stamp = now - (time.clock_gettime(time.CLOCK_BOOTTIME) - sensor_ns * 1e-9)
        return stamp if now - 10.0 < stamp <= now else now


def _close_quietly(cam: Any) -> None:
    """stop() and close(); a camera that vanished may fail either, and it is gone anyway."""
    try:
        cam.stop()
    except Exception:
        pass
    finally:
        try:
            cam.close()
        except Exception:
            pass
