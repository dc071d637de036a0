"""Pieces of the counting stage on their own: NMS, tile plans, the input lookup table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from crowdsign.counting.detections import Detections
from crowdsign.counting.modelcard import ModelCard
from crowdsign.counting.nms import nms
from crowdsign.counting.preprocess import input_lut
from crowdsign.counting.runtime import TensorInfo
from crowdsign.counting.tiling import Tiler, plan_tiles, to_frame


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert list(nms(boxes, scores, 0.5)) == [1, 2]
    assert list(nms(boxes, scores, 0.5, classes=np.array([0, 1, 0]))) == [1, 0, 2]
    assert len(nms(np.zeros((0, 4)), np.zeros(0), 0.5)) == 0


@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.0, 0.45),
       st.integers(50, 2000), st.integers(50, 2000))
def test_tiles_cover_the_frame(rows, cols, overlap, width, height):
    tiles = plan_tiles(width, height, rows, cols, overlap)
    assert len(tiles) == rows * cols
    covered = np.zeros((height, width), bool)
    for t in tiles:
        x0, y0, x1, y1 = t.rect
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_tile_boxes_map_back_and_seams_merge():
    tiler = Tiler(1, 2, 0.2, 0.5)
    left, right = tiler.tiles(1000, 500)
    assert left.rect == (0, 0, 556, 500) and right.rect == (444, 0, 1000, 500)
    # One person in the overlap (x 460..540 px) seen by both tiles.
    a = Detections(np.array([[460 / 556, 0.2, 540 / 556, 0.8]], np.float32),
                   np.array([0.9], np.float32), np.array([0]), False)
    b = Detections(np.array([[16 / 556, 0.2, 96 / 556, 0.8]], np.float32),
                   np.array([0.8], np.float32), np.array([0]), False)
    merged = tiler.merge([to_frame(a, left), to_frame(b, right)])
    assert len(merged.boxes) == 1
    np.testing.assert_allclose(merged.boxes[0], [0.46, 0.2, 0.54, 0.8], atol=1e-5)


def _card(mean, std) -> ModelCard:
    return ModelCard(Path("c.toml"), "c", "ssd", Path("m.tflite"), "rgb", mean, std, (),
                     0, ("person",), 0.5, None, None, None, 1, "off", "", "", "")


def test_input_lut_quantizes_per_channel():
    info = TensorInfo(0, "in", (1, 4, 4, 3), np.dtype(np.int8), 0.0078125, -1)
    lut = input_lut(_card((128.0, 0.0, 255.0), (128.0, 1.0, 1.0)), info)
    assert lut.shape == (1, 256, 3) and lut.dtype == np.int8
    assert lut[0, 128, 0] == -1 and lut[0, 255, 0] == 126   # (p-128)/128/scale - 1
    assert lut[0, 0, 1] == -1 and lut[0, 255, 1] == 127      # clipped
    assert lut[0, 0, 2] == -128
    float_info = TensorInfo(0, "in", (1, 4, 4, 3), np.dtype(np.float32), 0.0, 0)
    flut = input_lut(_card((0.0,) * 3, (255.0,) * 3), float_info)
    assert flut.dtype == np.float32 and flut[0, 255, 1] == 1.0
