"""An LED matrix of MAX7219 modules on SPI, through luma.led_matrix.

The cheapest platform sign there is: 8x8 LED modules in a chain (4-in-1
boards are 32x8), one SPI bus. It shows one slot per car (the [[cars]], or
each zone), left to right in train order, and an arrow above the least
crowded car:

    layout = "bars"     a bar per car, one row per level step (code 1 = one
                        row, code 3 = three rows), bottom-aligned
    layout = "numbers"  people per car in a 3x5 font

With `arrow` on and a matrix 8 rows high, the top three rows hold the arrow
(a small down-pointing triangle over the recommended car) and the bottom
five the bars or numbers. With no data the matrix shows `no_data_text`
centred (`--` by default; "" blanks it), never old numbers. The public
notice scrolls across once every `notice_every_s` seconds.

Drawing is pure (update in, PIL image out: `render_layout`,
`notice_frames`), so it is tested on images; the `LedMatrixDevice` puts the
images on luma's `max7219` device or, for bench rigs and tests, on luma's
in-memory `dummy` device, chosen explicitly in the config. The device runs
in a `DeviceWorker` thread like every display sink: a missing /dev/spidev is
retried with backoff, and the frame loop never waits for SPI.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from PIL import Image, ImageDraw

from crowdsign.config import LedMatrixOutputConfig
from crowdsign.sinks.base import Update, whole
from crowdsign.sinks.notice import NoticeCycle
from crowdsign.sinks.worker import Device, DeviceSink, DeviceWorker

ARROW_ROWS = 3
Frames = Sequence[tuple[Image.Image, float]]
"""What the device shows for one update: images, each held for its seconds."""


def _fonts():
    from luma.core.legacy.font import CP437_FONT, TINY_FONT, proportional
    return proportional(TINY_FONT), proportional(CP437_FONT)


def _legacy_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font) -> None:
    from luma.core.legacy import text as legacy_text
    legacy_text(draw, xy, text, fill=1, font=font)


def text_width(text: str, font) -> int:
    from luma.core.legacy import textsize
    return textsize(text, font=font)[0]


def slots(width: int, n: int) -> list[tuple[int, int]]:
    """(x0, width) of each of n equal slots across `width` pixels, centred.

    >>> slots(32, 3)
    [(1, 10), (11, 10), (21, 10)]
    """
    if n <= 0:
        return []
    w = max(width // n, 1)
    x0 = (width - w * n) // 2
    return [(x0 + i * w, w) for i in range(n)]


def draw_arrow(draw: ImageDraw.ImageDraw, cx: int) -> None:
    """A 5-3-1 pixel down-pointing triangle, its tip at (cx, 2)."""
    for row, half in enumerate((2, 1, 0)):
        draw.line([(cx - half, row), (cx + half, row)], fill=1)


def render_layout(update: Update, config: LedMatrixOutputConfig) -> Image.Image:
    """The matrix for `update`: bars or numbers per car and the arrow, or the
    no-data text when the counts are stale."""
    width, height = config.pixels
    image = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(image)
    tiny, _ = _fonts()
    if update.stale:
        if config.no_data_text:
            w = text_width(config.no_data_text, tiny)
            _legacy_text(draw, ((width - w) // 2, (height - 8) // 2 + 1), config.no_data_text,
                         tiny)
        return image
    arrow_rows = ARROW_ROWS if config.arrow and height >= 8 else 0
    top = arrow_rows
    rows = height - top
    cars = list(update.cars)
    for (x0, w), name in zip(slots(width, len(cars)), cars):
        cx = x0 + (w - 1) // 2
        if arrow_rows and name == update.recommended:
            draw_arrow(draw, cx)
        if config.layout == "bars":
            code = min(update.car_codes.get(name, 0), rows)
            bar_w = max(w - 1, 1)
            if code > 0:
                draw.rectangle([(x0, height - code), (x0 + bar_w - 1, height - 1)], fill=1)
        else:
            label = str(whole(update.cars[name]))
            tw = text_width(label, tiny)
            # TINY_FONT glyphs light rows 1..5 of their 8: y = height - 6
            # puts the digits on the bottom five rows
            _legacy_text(draw, (x0 + max((w - tw) // 2, 0), height - 6), label, tiny)
    return image


def notice_frames(text: str, size: tuple[int, int], px_s: float, max_s: float) -> Frames:
    """`text` scrolled right to left across a matrix of `size`, one pixel a
    frame at `px_s` pixels per second, for at most `max_s` seconds."""
    width, height = size
    _, font = _fonts()
    tw = text_width(text, font)
    strip = Image.new("1", (width + tw + width, height), 0)
    _legacy_text(ImageDraw.Draw(strip), (width, (height - 8) // 2), text, font)
    hold = 1.0 / px_s
    steps = min(width + tw, max(int(max_s * px_s), 1))
    return [(strip.crop((x, 0, x + width, height)), hold) for x in range(steps + 1)]


def lit(image: Image.Image) -> set[tuple[int, int]]:
    """The lit pixels of a matrix image, as (x, y)."""
    img = image.convert("1")
    w, h = img.size
    px = img.load()
    return {(x, y) for y in range(h) for x in range(w) if px[x, y]}


class LedMatrixDevice(Device):
    """luma's max7219 chain on SPI, or luma's in-memory dummy device.

    The dummy keeps the last image (`image`) and, with `capture_png`, writes
    every frame shown to that file (atomically: written aside, then renamed),
    so a test or a bench rig running the daemon can look at the display.
    """

    def __init__(self, config: LedMatrixOutputConfig):
        from luma.core.error import Error as LumaError

        self.lost_errors = (OSError, LumaError)
        self._config = config
        self._luma: Any = None
        self._abort = threading.Event()
        self.image: Optional[Image.Image] = None
        self.shown = 0

    def open(self) -> None:
        c = self._config
        width, height = c.pixels
        self._abort.clear()
        if c.device == "dummy":
            from luma.core.device import dummy
            self._luma = dummy(width=width, height=height, mode="1")
            return
        from luma.core.interface.serial import noop, spi
        from luma.led_matrix.device import max7219

        interface = spi(port=c.spi_port, device=c.spi_device, gpio=noop())
        device = max7219(interface, width=width, height=height, cascaded=c.cascaded,
                         block_orientation=c.block_orientation, rotate=c.rotate)
        device.contrast(c.contrast)
        device.persist = True       # on close the last image (the no-data state) stays lit
        self._luma = device

    def write(self, data: Frames) -> None:
        """Show each frame for its time. The first is always shown; after a
        stop_soon() the rest (a notice scrolling by) are skipped."""
        for i, (image, hold) in enumerate(data):
            if i and self._abort.is_set():
                break
            if self._luma is None:
                raise OSError("LED matrix is not open")
            self._luma.display(image)
            self.image = image
            self.shown += 1
            if self._config.capture_png:
                _save_atomically(image, Path(self._config.capture_png))
            if hold and i < len(data) - 1:
                self._abort.wait(hold)

    def close(self) -> None:
        device, self._luma = self._luma, None
        if device is not None and self._config.device != "dummy":
            try:
                device.cleanup()
            except Exception:
                pass

    def stop_soon(self) -> None:
        self._abort.set()

    def interrupt(self) -> None:
        self._abort.set()

    def describe(self) -> str:
        return f"led_matrix {self._config.port}"


def _save_atomically(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


class LedMatrixSink(DeviceSink):
    """Shows each update on an LED matrix: bars or numbers per car, the arrow
    to the least crowded car, the no-data text, and the scrolling notice.

    config: the [[outputs]] table.
    log:    where the lost / back lines go.
    clock:  monotonic seconds, for the notice cycle.
    """

    def __init__(self, config: LedMatrixOutputConfig, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.device = LedMatrixDevice(config)
        self._clock = clock
        self._notice = NoticeCycle(config.notice_every_s, config.notice_for_s, clock())
        self._notice_shown_in: Optional[int] = None
        self._worker = DeviceWorker(
            self.device, self._frames, rate_hz=config.rate_hz,
            backoff_initial_s=config.backoff_initial_s, backoff_max_s=config.backoff_max_s,
            log=log, clock=clock)

    def _frames(self, update: Update) -> Frames:
        """The frames for `update`: the layout, preceded by the notice scrolling
        by once per notice period (never over a no-data state)."""
        layout = render_layout(update, self.config)
        now = self._clock()
        if not update.stale and self._notice.active(now):
            period = math.floor((now - self._notice.origin) / self._notice.every_s)
            if period != self._notice_shown_in:
                self._notice_shown_in = period
                c = self.config
                return [*notice_frames(c.notice, c.pixels, c.scroll_px_s, c.notice_for_s),
                        (layout, 0.0)]
        return [(layout, 0.0)]

