"""Frame pixels into the model's input tensor, in place.

Everything that does not depend on the frame is done once, at load: the
scratch buffers at model size, and a 256-entry lookup table per channel that
maps a pixel value straight to the value the input tensor wants,
(pixel - mean) / std quantized with the tensor's own scale and zero point (or
left as a float for a float model). Per frame there is one resize at most one
small colour conversion and one table lookup, each writing into a buffer that
already exists; when the table is the identity (a uint8 model fed raw pixels)
the resize writes straight into the tensor.

Colour conversions are done after the resize wherever the order allows
(BGR -> RGB, gray <-> RGB), so they touch model-size pixels, not the frame's.
Only I420 into an RGB model needs a full-frame conversion; a gray model takes
the I420 luma plane as a view, without a copy.
"""

from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from crowdsign.counting.modelcard import ModelCard, ModelError
from crowdsign.counting.runtime import TensorInfo
from crowdsign.frames import Frame, PixelFormat

# dtypes cv2.LUT can write, so the table lookup lands in the tensor directly.
_LUT_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)

# (frame format, model channels) -> cv2 code applied after the resize, or None.
_AFTER_RESIZE = {
    (PixelFormat.RGB, 3): None,
    (PixelFormat.BGR, 3): cv2.COLOR_BGR2RGB,
    (PixelFormat.GRAY, 3): cv2.COLOR_GRAY2RGB,
    (PixelFormat.YUV420, 3): None,  # converted to RGB before, at frame size
    (PixelFormat.GRAY, 1): None,
    (PixelFormat.YUV420, 1): None,  # the luma plane is the gray image
    (PixelFormat.RGB, 1): cv2.COLOR_RGB2GRAY,
    (PixelFormat.BGR, 1): cv2.COLOR_BGR2GRAY,
}


def input_lut(card: ModelCard, info: TensorInfo) -> np.ndarray:
    """pixel value -> input tensor value, 1 x 256 x channels in the tensor's dtype."""
    pixels = np.arange(256, dtype=np.float64)[:, None]
    real = (pixels - np.asarray(card.input_mean)) / np.asarray(card.input_std)
    dtype = info.dtype
    if info.quantized:
        real = np.round(real / info.scale) + info.zero_point
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        real = np.clip(np.round(real), limits.min, limits.max)
    return real.astype(dtype)[None, :, :]


class InputWriter:
    """Writes a frame, or a rectangle of it, into the model's input tensor."""

    def __init__(self, interpreter: Any, info: TensorInfo, card: ModelCard):
        where = card.file
        if len(info.shape) != 4 or info.shape[0] != 1:
            raise ModelError(f"{where}: input must be [1, height, width, channels], "
                             f"got {list(info.shape)}")
        _, height, width, channels = info.shape
        if channels != card.channels:
            raise ModelError(f"{where}: input has {channels} channels but the card "
                             f"{card.path.name} says input_colour = {card.input_colour}")
        if info.dtype.type not in _LUT_DTYPES:
            raise ModelError(f"{where}: unsupported input dtype {info.dtype}")
        self.info = info
        self.width, self.height, self.channels = width, height, channels
        self.format = PixelFormat.RGB if channels == 3 else PixelFormat.GRAY
        self._tensor = interpreter.tensor(info.index)
        self._lut = input_lut(card, info)
        self.identity = bool(info.dtype == np.uint8
                             and np.array_equal(self._lut[0], np.repeat(
                                 np.arange(256, dtype=np.uint8)[:, None], channels, 1)))
        self._resized = {1: np.empty((height, width), np.uint8),
                         3: np.empty((height, width, 3), np.uint8)}
        self._converted = self._resized[1] if channels == 1 else np.empty(
            (height, width, 3), np.uint8)
        self._frame_rgb: Optional[np.ndarray] = None

    def source(self, frame: Frame) -> tuple[np.ndarray, Optional[int]]:
        """The frame as an image to crop and resize, and the conversion due after.

        Only I420 into an RGB model is converted here, at frame size, into a
        buffer kept for the next frame of the same size.
        """
        fmt = frame.format
        pixels = frame.pixels
        if fmt is PixelFormat.YUV420:
            if self.channels == 1:
                return pixels[:frame.height], None
            shape = (frame.height, frame.width, 3)
            if self._frame_rgb is None or self._frame_rgb.shape != shape:
                self._frame_rgb = np.empty(shape, np.uint8)
            cv2.cvtColor(pixels, cv2.COLOR_YUV2RGB_I420, dst=self._frame_rgb)
            return self._frame_rgb, None
        return pixels, _AFTER_RESIZE[(fmt, self.channels)]

    def write(self, image: np.ndarray, conversion: Optional[int],
              rect: Optional[tuple[int, int, int, int]] = None, mirror: bool = False) -> None:
        """Resize `image` (or its rect x0, y0, x1, y1) into the input tensor,
        mirrored left to right if `mirror`."""
        if rect is not None:
            x0, y0, x1, y1 = rect
            image = image[y0:y1, x0:x1]
        size = (self.width, self.height)
        view = self._tensor()[0]
        if self.channels == 1:
            view = view[:, :, 0]
        if conversion is None:
            if self.identity:
                cv2.resize(image, size, dst=view, interpolation=cv2.INTER_LINEAR)
            else:
                resized = self._resized[self.channels]
                cv2.resize(image, size, dst=resized, interpolation=cv2.INTER_LINEAR)
                cv2.LUT(resized, self._lut, dst=view)
        else:
            resized = self._resized[1 if image.ndim == 2 else 3]
            cv2.resize(image, size, dst=resized, interpolation=cv2.INTER_LINEAR)
            if self.identity:
                cv2.cvtColor(resized, conversion, dst=view)
            else:
                cv2.cvtColor(resized, conversion, dst=self._converted)
                cv2.LUT(self._converted, self._lut, dst=view)
        if mirror:
            view[:] = view[:, ::-1]  # numpy copies overlapping operands first
        del view
