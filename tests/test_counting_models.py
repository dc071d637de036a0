"""The real SSD and YOLOX through the Counter: frames of every format, zones, the cap warning."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from crowdsign.config import ModelConfig, ZoneConfig
from crowdsign.counting.counter import load_counter, zone_counts
from crowdsign.counting.types import ZoneCounts
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry
from shared_data import REPO, shared_path

SSD = REPO / "models/cards/ssd_mobilenet_v1_coco_quant.toml"
YOLOX = REPO / "models/cards/yolox_nano_320_float32.toml"
ALL = ZoneGeometry([ZoneConfig("all", ((0, 0), (1, 0), (1, 1), (0, 1)))])
QUADRANTS = ZoneGeometry([
    ZoneConfig("ul", ((0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5))),
    ZoneConfig("ur", ((0.5, 0), (1, 0), (1, 0.5), (0.5, 0.5))),
    ZoneConfig("ll", ((0, 0.5), (0.5, 0.5), (0.5, 1), (0, 1))),
    ZoneConfig("lr", ((0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)))])


@pytest.fixture(scope="module")
def vtest_frames() -> list[np.ndarray]:
    """Frames 100, 200, ... 500 of vtest.avi (BGR), where pedestrians are in view."""
    capture = cv2.VideoCapture(str(shared_path("video", "vtest.avi")))
    frames = []
    try:
        for i in range(501):
            ok, image = capture.read()
            assert ok, f"vtest.avi ended at frame {i}"
            if i % 100 == 0 and i:
                frames.append(image)
    finally:
        capture.release()
    return frames


def _frame(pixels, fmt=PixelFormat.BGR, index=0, t=0.0) -> Frame:
    return Frame(pixels, fmt, t, index)


@pytest.mark.parametrize("card", [SSD, YOLOX], ids=["ssd", "yolox"])
def test_real_models_count_people_on_vtest(card, vtest_frames):
    shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    counter = load_counter(ModelConfig(path=card, num_threads=2), ALL)
    assert counter.input_format is PixelFormat.RGB
    for i, image in enumerate(vtest_frames):
        counts = counter.count(_frame(image, index=i))
        assert isinstance(counts, ZoneCounts) and counts.frame == i
        assert 0 < counts.total <= 40, f"frame {i}: {counts.total}"
        assert counts.zones["all"] == counts.total
        t = counter.timings
        assert t.invokes == 1 and t.invoke_ms > 0 and t.preprocess_ms > 0


@pytest.mark.parametrize("card", [SSD, YOLOX], ids=["ssd", "yolox"])
def test_every_pixel_format_gives_the_same_count(card, vtest_frames):
    counter = load_counter(ModelConfig(path=card, mirror="off"), ALL)
    bgr = vtest_frames[2]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    base = counter.count(_frame(bgr)).total
    assert counter.count(_frame(rgb, PixelFormat.RGB)).total == base
    assert abs(counter.count(_frame(i420, PixelFormat.YUV420)).total - base) <= 2
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert counter.count(_frame(gray, PixelFormat.GRAY)).total > 0


def test_people_land_in_the_quadrant_where_they_stand(vtest_frames):
    """The frame pasted into the upper-left quarter of a black canvas: with 2x2 tiles
    the upper-left tile is exactly the frame, so everyone counts in `ul` only."""
    image = vtest_frames[1]
    h, w = image.shape[:2]
    canvas = np.zeros((2 * h, 2 * w, 3), np.uint8)
    canvas[:h, :w] = image
    alone = load_counter(ModelConfig(path=YOLOX), ALL).count(_frame(image)).total
    tiled = load_counter(ModelConfig(path=YOLOX, tiles=(2, 2), tile_overlap=0.0), QUADRANTS)
    counts = tiled.count(_frame(canvas))
    assert tiled.timings.invokes == 4
    assert counts.zones["ul"] == counts.total == alone > 0
    assert counts.zones["ur"] == counts.zones["ll"] == counts.zones["lr"] == 0


def test_box_counts_at_its_bottom_centre():
    zones = ZoneGeometry([ZoneConfig("top", ((0, 0), (1, 0), (1, 0.5), (0, 0.5))),
                          ZoneConfig("bottom", ((0, 0.5), (1, 0.5), (1, 1), (0, 1))),
                          ZoneConfig("left", ((0, 0), (0.3, 0), (0.3, 1), (0, 1)))])
    # Mostly in the top half, feet in the bottom half; x centre 0.25 (left), x1 0.4.
    boxes = np.array([[0.1, 0.1, 0.4, 0.6], [0.5, 0.0, 0.9, 0.45]], np.float32)
    assert dict(zone_counts(boxes, zones)) == {"top": 1.0, "bottom": 1.0, "left": 1.0}


def test_ssd_cap_warning_is_rate_limited(caplog):
    labels = shared_path("data", "mall", "train", "labels.jsonl")
    dense = cv2.imread(str(labels.parent / "images" / "seq_000001.jpg"))
    counter = load_counter(ModelConfig(path=SSD, threshold=0.3), ALL)
    with caplog.at_level(logging.WARNING, logger="crowdsign.counting"):
        for i, t in enumerate([100.0, 110.0, 150.0, 161.0]):
            assert counter.count(_frame(dense, index=i, t=t)).total == 10
    warnings = [r.getMessage() for r in caplog.records if r.name == "crowdsign.counting"]
    assert len(warnings) == 2
    assert "frame 0 hit the model's cap of 10 detections" in warnings[0]
    assert warnings[1].startswith("3 frames hit the model's cap of 10")
    assert counter.frames_at_cap == 4


def test_describe_and_input():
    counter = load_counter(ModelConfig(path=SSD, tiles=(2, 2), mirror="off"), ALL)
    assert counter.describe() == "ssd_mobilenet_v1_coco_quant 300x300 rgb uint8, 2 threads, 2x2 tiles"
    assert counter.input_size == (300, 300)
    assert counter.card.kind == "ssd"
