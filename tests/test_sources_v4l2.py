"""V4l2Source against a video file as its target.

There is no camera (nor v4l2loopback) here, so the target is vtest.avi: the
VideoCapture, the reader thread that keeps only the newest frame and the
timeout handling are the same code a /dev/video0 runs through; only
OpenCV's backend differs (FFmpeg instead of V4L2). A file decodes much faster
than a camera delivers, which makes the dropping of stale frames easy to see.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from crowdsign.frames import PixelFormat
from crowdsign.sources.base import SourceError
from crowdsign.sources.v4l2 import V4l2Source, gstreamer_available
from shared_data import shared_path


@pytest.fixture
def video() -> str:
    return str(shared_path("video", "vtest.avi"))


def test_frames_are_bgr_newest_first_with_rising_indices(video):
    with V4l2Source(video) as source:
        assert source.describe() == f"v4l2:{video}"
        indices = []
        for _ in range(3):
            with source.capture(2.0) as frame:
                assert frame is not None
                assert frame.format is PixelFormat.BGR and frame.pixels.shape == (576, 768, 3)
                assert frame.timestamp <= time.monotonic()
                indices.append(frame.index)
    assert indices == sorted(set(indices))


def test_a_slow_consumer_gets_a_fresh_frame_not_the_queue(video):
    with V4l2Source(video) as source:
        with source.capture(2.0) as frame:
            first = frame.index
        time.sleep(0.1)  # the reader decodes on meanwhile, keeping only the newest
        with source.capture(2.0) as frame:
            assert frame.index > first + 5
            assert time.monotonic() - frame.timestamp < 0.05


def test_capture_with_no_time_returns_at_once(video):
    with V4l2Source(video) as source:
        start = time.monotonic()
        for _ in range(5):
            with source.capture(0.0):
                pass
        assert time.monotonic() - start < 0.05


def test_end_of_stream_is_a_source_error_not_a_hang(video):
    with V4l2Source(video) as source:
        deadline = time.monotonic() + 10.0
        with pytest.raises(SourceError, match="read failed"):
            while time.monotonic() < deadline:
                with source.capture(1.0):
                    pass


def test_close_stops_the_reader_thread(video):
    before = {t.name for t in threading.enumerate()}
    source = V4l2Source(video)
    source.open()
    assert any(t.name.startswith("reader v4l2:") for t in threading.enumerate())
    start = time.monotonic()
    source.close()
    assert time.monotonic() - start < 1.0
    assert {t.name for t in threading.enumerate()} <= before


def test_a_missing_device_is_named():
    with pytest.raises(SourceError, match=r"v4l2:/dev/video99: no such device"):
        V4l2Source("/dev/video99").open()


def test_a_file_that_does_not_open_is_an_error(tmp_path: Path):
    with pytest.raises(SourceError, match="cannot open"):
        V4l2Source(str(tmp_path / "missing.mp4")).open()


def test_a_gstreamer_pipeline_says_when_opencv_lacks_gstreamer():
    source = V4l2Source("videotestsrc ! videoconvert ! appsink")
    assert source.describe().startswith("gst:")
    if gstreamer_available():  # a distribution OpenCV: the pipeline really runs
        with source:
            with source.capture(5.0) as frame:
                assert frame is not None
    else:
        with pytest.raises(SourceError, match="no GStreamer support"):
            source.open()
