"""The Counter: a frame in, people per zone out.

`load_counter` does all the work that does not depend on a frame, once: it
reads the card, opens one interpreter with the configured threads, allocates
its tensors, builds the input lookup table, picks the backend for the card's
kind and makes the zone masks. `Counter.count` then only moves pixels into
the input tensor, invokes, and reads the outputs back into counts.

This is the privacy boundary (see types.py): boxes and density maps are
local to `count`; only `ZoneCounts` leaves.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from time import perf_counter
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Optional, Union

import numpy as np

from crowdsign.config import MIRROR_MODES, ModelConfig
from crowdsign.counting.capwatch import CapWatch
from crowdsign.counting.density import DensityHead
from crowdsign.counting.detections import DetectorHead, counted_class_ids, mirrored_back
from crowdsign.counting.modelcard import (ModelCard, ModelError, card_path_for,
                                          load_model_card)
from crowdsign.counting.preprocess import InputWriter
from crowdsign.counting.runtime import TensorInfo, open_interpreter
from crowdsign.counting.ssd import SsdHead
from crowdsign.counting.tiling import Tiler, to_frame
from crowdsign.counting.types import StageTimings, ZoneCounts
from crowdsign.counting.yolox import YoloxHead
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry

log = logging.getLogger("crowdsign.counting")


class Counter:
    """Counts people per zone in frames with one TFLite model.

    Not thread-safe: one counter per thread (the daemon has one).
    """

    def __init__(self, card: ModelCard, config: ModelConfig, interpreter: Any,
                 writer: InputWriter, head: Union[DetectorHead, DensityHead],
                 zones: ZoneGeometry, tiler: Optional[Tiler]):
        self.card = card
        self.timings = StageTimings(invokes=0)
        self._config = config
        self._interpreter = interpreter
        self._writer = writer
        self._head = head
        self._zones = zones
        self._tiler = tiler
        self._mirror = MirrorSchedule(config.mirror or card.mirror)
        self._cap_watch = CapWatch(head.cap) if getattr(head, "cap", 0) else None

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (width, height) in pixels: a source delivering this avoids a resize."""
        return self._writer.width, self._writer.height

    @property
    def input_format(self) -> PixelFormat:
        """GRAY or RGB: the pixel format the model is fed."""
        return self._writer.format

    @property
    def frames_at_cap(self) -> int:
        """Frames so far whose detections filled the model's detection slots."""
        return self._cap_watch.frames_hit if self._cap_watch else 0

    @property
    def mirror(self) -> str:
        """The views counted of each frame: `off`, `alternate` or `both` (MirrorSchedule)."""
        return self._mirror.mode

    def describe(self) -> str:
        """One line for the journal: model, input, threads and tiles."""
        w, h = self.input_size
        text = (f"{self.card.name} {w}x{h} {self.card.input_colour} "
                f"{self._writer.info.dtype}, {self._config.num_threads} threads")
        if self._tiler is not None and not self._tiler.single:
            text += f", {self._tiler.rows}x{self._tiler.cols} tiles"
        if self._mirror.mode == "alternate":
            text += ", every other frame mirrored"
        elif self._mirror.mode == "both":
            text += ", each frame also mirrored"
        return text

    def close(self) -> None:
        """Release the interpreter and its tensors; the counter is unusable afterwards."""
        self._interpreter = self._head = self._writer = None

    def count(self, frame: Frame) -> ZoneCounts:
        """People in the frame, in total and per zone; sets `timings` for this frame.

        Each view the mirror schedule asks for (the frame, its mirror, or
        both) is counted on its own; two views are averaged.
        """
        spent = _Spent()
        with spent.step("pre"):
            image, conversion = self._writer.source(frame)
        if isinstance(self._head, DensityHead):
            views = [self._count_density(image, conversion, m, spent) for m in self._mirror.views()]
        else:
            views = self._count_detections(frame, image, conversion, spent)
        total, zones = views[0]
        if len(views) > 1:
            with spent.step("post"):
                total = sum(t for t, _ in views) / len(views)
                zones = MappingProxyType({name: sum(z[name] for _, z in views) / len(views)
                                          for name in zones})
        self.timings = spent.timings()
        return ZoneCounts(frame.index, frame.timestamp, total, zones)

    def _count_density(self, image: np.ndarray, conversion: Optional[int], mirrored: bool,
                       spent: "_Spent") -> tuple[float, Mapping[str, float]]:
        with spent.step("pre"):
            self._writer.write(image, conversion, mirror=mirrored)
        with spent.step("invoke"):
            self._interpreter.invoke()
        with spent.step("post"):
            return self._head.decode(mirrored)

    def _count_detections(self, frame: Frame, image: np.ndarray, conversion: Optional[int],
                          spent: "_Spent") -> list[tuple[float, Mapping[str, float]]]:
        tiles = self._tiler.tiles(frame.width, frame.height)
        views, cap_hit = [], False
        for mirrored in self._mirror.views():
            parts = []
            for tile in tiles:
                with spent.step("pre"):
                    self._writer.write(image, conversion,
                                       None if len(tiles) == 1 else tile.rect, mirror=mirrored)
                with spent.step("invoke"):
                    self._interpreter.invoke()
                with spent.step("post"):
                    found = self._head.decode()
                    parts.append(to_frame(mirrored_back(found) if mirrored else found, tile))
            with spent.step("post"):
                found = self._tiler.merge(parts)
                cap_hit = cap_hit or found.cap_hit
                views.append((float(len(found.boxes)), zone_counts(found.boxes, self._zones)))
        if self._cap_watch is not None:
            self._cap_watch.note(cap_hit, frame.timestamp, frame.index)
        return views


class MirrorSchedule:
    """Which views of each frame are counted: the frame as it is, its mirror
    image (left and right swapped), or both.

    A counting model trained with mirrored images still counts a scene and
    its mirror image differently, and the two errors are only partly alike:
    their average is closer to the truth (see the model card). `alternate`
    mirrors every other frame, so the level smoothing averages both views of
    a crowd that changes slowly against the frame rate, at no extra cost;
    `both` counts each frame twice.
    """

    def __init__(self, mode: str):
        if mode not in MIRROR_MODES:
            raise ValueError(f"mirror must be one of {', '.join(MIRROR_MODES)}, got {mode!r}")
        self.mode = mode
        self._mirror_next = False

    def views(self) -> tuple[bool, ...]:
        """For the next frame: per view, whether it is mirrored."""
        if self.mode == "off":
            return (False,)
        if self.mode == "both":
            return (False, True)
        mirrored, self._mirror_next = self._mirror_next, not self._mirror_next
        return (mirrored,)


class _Spent:
    """Seconds a frame spends in each step of the counter, over all its invokes."""

    def __init__(self):
        self.seconds = {"pre": 0.0, "invoke": 0.0, "post": 0.0}
        self.invokes = 0

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += perf_counter() - started
            self.invokes += name == "invoke"

    def timings(self) -> StageTimings:
        s = self.seconds
        return StageTimings(s["pre"] * 1e3, s["invoke"] * 1e3, s["post"] * 1e3, self.invokes)


def zone_counts(boxes: np.ndarray, zones: ZoneGeometry) -> Mapping[str, float]:
    """People per zone: each box counts where it stands, at its bottom-centre.

    boxes: n x 4 x0, y0, x1, y1 normalised to the frame.
    """
    per_zone = zones.count_points((boxes[:, 0] + boxes[:, 2]) * 0.5, boxes[:, 3])
    return MappingProxyType({name: float(n) for name, n in per_zone.items()})


def open_model(card: ModelCard, num_threads: int) -> tuple[Any, bytes, InputWriter]:
    """The card's interpreter (tensors allocated), its file's bytes, and the writer
    that puts frames into its one input; ModelError (one line) if it has no such input."""
    interpreter, data = open_interpreter(card.file, num_threads)
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise ModelError(f"{card.file}: model needs one input tensor, found {len(inputs)}")
    try:
        return interpreter, data, InputWriter(interpreter, TensorInfo.from_details(inputs[0]), card)
    except ValueError as e:
        raise ModelError(f"{card.file}: {e}") from None


def load_counter(model: ModelConfig, zones: ZoneGeometry) -> Counter:
    """Build a Counter from the config; ModelError (one line) if anything is wrong."""
    card = load_model_card(card_path_for(model.path))
    interpreter, data, writer = open_model(card, model.num_threads)
    size = (writer.width, writer.height)
    tiles = tuple(model.tiles)

    if card.kind == "density":
        if tiles != (1, 1):
            raise ModelError(f"{card.path}: tiles {list(tiles)} apply to detectors only, "
                             "not to a density model")
        head = DensityHead(interpreter, card.file, size, zones, card.output_stride,
                           card.cell_gain, card.cell_gain_window)
        if card.cell_gain_window > min(head.map_size):
            raise ModelError(f"{card.path}: cell_gain_window {card.cell_gain_window} is wider "
                             f"than the {head.map_size[0]}x{head.map_size[1]} output map")
        return Counter(card, model, interpreter, writer, head, zones, None)

    class_ids = counted_class_ids(card, model.classes or card.count_classes)
    threshold = model.threshold if model.threshold is not None else card.default_threshold
    if card.kind == "ssd":
        head = SsdHead(interpreter, data, card.file, class_ids, threshold)
        if card.max_detections is not None and card.max_detections != head.cap:
            log.warning("%s: card says max_detections = %d but %s has %d detection slots",
                        card.path, card.max_detections, card.file.name, head.cap)
    else:
        head = YoloxHead(interpreter, card.file, size, class_ids, threshold, model.nms_iou)
    tiler = Tiler(tiles[0], tiles[1], model.tile_overlap, model.nms_iou)
    return Counter(card, model, interpreter, writer, head, zones, tiler)


__all__ = ["Counter", "ModelError", "load_counter"]
