"""From [source] config to a source, and what `crowdsign check` says about it."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest

from crowdsign.config import SourceConfig
from crowdsign.frames import PixelFormat
from crowdsign.sources.base import SourceError
from crowdsign.sources.factory import check_source, make_backend, make_source
from crowdsign.sources.picamera2 import Picamera2Source
from crowdsign.sources.reopening import ReopeningSource
from crowdsign.sources.replay import ReplaySource
from crowdsign.sources.v4l2 import V4l2Source, gstreamer_available
from shared_data import shared_path

MODEL = dict(model_size=(300, 300), model_format=PixelFormat.RGB)


def test_a_replay_config_makes_a_reopening_replay_that_delivers():
    video = shared_path("video", "vtest.avi")
    config = SourceConfig(uri=f"replay:{video}", pace="fast", at_end="exit",
                          stall_timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=1.0)
    source = make_source(config, **MODEL, stop=threading.Event(), log=logging.getLogger("t"))
    assert isinstance(source, ReopeningSource)
    assert source.describe() == f"replay:{video}"
    with source:
        with source.capture(1.0) as frame:
            assert frame is not None and frame.pixels.shape == (576, 768, 3)
        assert source.state == "ok"


def test_picamera2_hands_a_gray_model_the_luma_plane_only():
    gray = make_backend(SourceConfig(uri="picamera2"), model_size=(320, 240),
                        model_format=PixelFormat.GRAY)
    assert gray.fmt is PixelFormat.YUV420 and gray.luma_only
    assert not make_backend(SourceConfig(uri="picamera2"), **MODEL).luma_only


def test_picamera2_takes_the_model_size_and_yuv420_unless_told():
    backend = make_backend(SourceConfig(uri="picamera2"), **MODEL)
    assert isinstance(backend, Picamera2Source)
    assert (backend.camera_num, backend.width, backend.height) == (0, 300, 300)
    assert backend.fmt is PixelFormat.YUV420 and backend.buffer_count == 4

    config = SourceConfig(uri="picamera2:1", width=640, height=480, format="rgb888",
                          buffer_count=6, scaler_crop=(0, 0, 1640, 1232))
    backend = make_backend(config, **MODEL)
    assert (backend.camera_num, backend.width, backend.height) == (1, 640, 480)
    assert backend.fmt is PixelFormat.RGB and backend.buffer_count == 6
    assert backend.scaler_crop == (0, 0, 1640, 1232)
    bgr = make_backend(config, model_size=(300, 300), model_format=PixelFormat.BGR)
    assert bgr.fmt is PixelFormat.BGR  # three channels in the model's own order


def test_v4l2_and_gst_targets():
    v4l2 = make_backend(SourceConfig(uri="v4l2:/dev/video2", width=640, height=480), **MODEL)
    assert isinstance(v4l2, V4l2Source)
    assert (v4l2.target, v4l2.width, v4l2.height) == ("/dev/video2", 640, 480)
    gst = make_backend(SourceConfig(uri="gst:v4l2src ! videoconvert ! appsink"), **MODEL)
    assert gst.describe() == "gst:v4l2src ! videoconvert ! appsink"
    assert (gst.width, gst.height) == (300, 300)


def test_a_replay_backend_keeps_its_options():
    backend = make_backend(SourceConfig(uri="replay:/x.avi", pace="fast", at_end="stall",
                                        fps=5.0), **MODEL)
    assert isinstance(backend, ReplaySource) and backend.path == Path("/x.avi")


def test_a_camera_number_that_is_no_number_is_refused():
    with pytest.raises(SourceError, match="whole number"):
        make_backend(SourceConfig(uri="picamera2:front"), **MODEL)


def test_check_opens_a_replay_and_names_a_missing_one(tmp_path):
    assert check_source(SourceConfig(uri=f"replay:{shared_path('video', 'vtest.avi')}")) == []
    (problem,) = check_source(SourceConfig(uri=f"replay:{tmp_path / 'gone.avi'}"))
    assert str(tmp_path / "gone.avi") in problem and "no such file" in problem


def test_check_names_a_missing_device():
    assert check_source(SourceConfig(uri="v4l2:/dev/video99")) == [
        "v4l2:/dev/video99: no such device /dev/video99"]
    assert check_source(SourceConfig(uri="v4l2:99")) == ["v4l2:99: no such device /dev/video99"]


def test_check_says_when_opencv_has_no_gstreamer():
    problems = check_source(SourceConfig(uri="gst:videotestsrc ! appsink"))
    if gstreamer_available():
        assert problems == []
    else:
        (problem,) = problems
        assert problem.startswith("gst:videotestsrc ! appsink: ")
        assert "no GStreamer support" in problem


def test_check_says_how_to_install_picamera2(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on a machine without it
    assert check_source(SourceConfig(uri="picamera2")) == [
        "picamera2 is not installed (on Raspberry Pi OS: apt install python3-picamera2)"]
    assert len(check_source(SourceConfig(uri="picamera2:front"))) == 2
