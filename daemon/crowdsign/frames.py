"""The frame a source hands to the counter.

A frame is only a view: for the Pi camera it points into the camera's own
buffer, which goes back to the camera as soon as the counter is done. Nothing
downstream of the counter ever sees a Frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class PixelFormat(str, Enum):
    """How a frame's pixels are laid out.

    RGB:    H x W x 3 uint8, red first.
    BGR:    H x W x 3 uint8, OpenCV's order (what VideoCapture gives).
    GRAY:   H x W uint8, luma only.
    YUV420: (H * 3 / 2) x W uint8, planar I420 as picamera2's lores stream
            delivers it; the first H rows are the luma plane.
    """

    RGB = "rgb"
    BGR = "bgr"
    GRAY = "gray"
    YUV420 = "yuv420"


@dataclass(frozen=True)
class Frame:
    """One camera frame, valid only while its source's capture block is open.

    pixels:    a view of the pixels in `format`; may alias the camera buffer.
    format:    the pixel layout.
    timestamp: time.monotonic() seconds when the frame was captured.
    index:     frame number since the daemon started, counting from 0.
    """

    pixels: np.ndarray
    format: PixelFormat
    timestamp: float
    index: int

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.pixels.shape[0])
        return rows * 2 // 3 if self.format is PixelFormat.YUV420 else rows
