"""Picamera2Source against the picamera2 stand-in (tests/picamera2_standin.py).

libcamera cannot run here; the stand-in follows picamera2's API and lays
real pixels (vtest.avi frames) out in its buffers as libcamera does.
"""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np
import pytest

from crowdsign.frames import PixelFormat
from crowdsign.sources.base import SourceError
from crowdsign.sources.picamera2 import INSTALL_HINT, Picamera2Source
from picamera2_standin import POISON, Rig
from shared_data import shared_path


@pytest.fixture
def rig() -> Rig:
    return Rig(shared_path("video", "vtest.avi"), frames=6)


def source_on(rig: Rig, width: int = 320, height: int = 240, **kw) -> Picamera2Source:
    return Picamera2Source(0, width, height, picamera2_module=rig, **kw)


def as_bgr(pixels: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    if fmt is PixelFormat.YUV420:
        return cv2.cvtColor(pixels, cv2.COLOR_YUV2BGR_I420)
    return pixels if fmt is PixelFormat.BGR else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)


def reference(rig: Rig, index: int, size: tuple[int, int]) -> np.ndarray:
    """What the camera's frame `index` looks like after the YUV420 round trip."""
    i420 = cv2.cvtColor(rig.reference_bgr(index, size), cv2.COLOR_BGR2YUV_I420)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def test_the_lores_stream_is_configured_as_asked(rig):
    with source_on(rig, 320, 240, buffer_count=3, scaler_crop=(100, 50, 1600, 1200)):
        (config,) = rig.configurations
        assert config["lores"]["size"] == (320, 240)
        assert config["lores"]["format"] == "YUV420"
        assert config["buffer_count"] == 3
        assert config["queue"] is False
        assert config["controls"] == {"ScalerCrop": (100, 50, 1600, 1200)}
        main_w, main_h = config["main"]["size"]
        assert main_w >= 320 and main_h >= 240
        assert rig.instances[0].started
    assert rig.instances[0].closed and not rig.instances[0].started


def test_a_frame_is_a_view_of_the_camera_buffer_returned_after_the_block(rig):
    with source_on(rig) as source:
        assert source.zero_copy
        with source.capture(1.0) as frame:
            (request,) = rig.requests
            assert frame.format is PixelFormat.YUV420
            assert frame.pixels.shape == (360, 320) and (frame.width, frame.height) == (320, 240)
            assert np.shares_memory(frame.pixels, request.buffer)
            assert np.array_equal(as_bgr(frame.pixels, frame.format), reference(rig, 0, (320, 240)))
            kept = frame.pixels  # what a careless consumer might hold on to
            assert rig.outstanding() == 1
        assert rig.outstanding() == 0
        assert np.all(kept == POISON)  # the buffer went back to the camera


def test_buffers_keep_circulating(rig):
    with source_on(rig, buffer_count=2) as source:
        for i in range(7):  # more than buffer_count: a leaked request would starve the camera
            with source.capture(0.2) as frame:
                assert frame is not None and frame.index == i
                assert np.array_equal(as_bgr(frame.pixels, frame.format),
                                      reference(rig, i, (320, 240)))
    assert rig.outstanding() == 0 and rig.cancels == 0


def test_a_padded_stride_is_repacked_into_proper_i420(rig):
    with source_on(rig, 300, 300) as source:  # 300 pixels in rows of 320 bytes
        assert rig.configurations[0]["lores"]["stride"] == 320
        assert not source.zero_copy
        with source.capture(1.0) as frame:
            assert frame.pixels.shape == (450, 300) and frame.height == 300
            assert np.array_equal(as_bgr(frame.pixels, frame.format), reference(rig, 0, (300, 300)))
            assert not np.shares_memory(frame.pixels, rig.requests[0].buffer)
    assert rig.outstanding() == 0


@pytest.mark.parametrize("width", [320, 300])
def test_a_gray_model_gets_the_luma_plane_as_a_view_whatever_the_stride(rig, width):
    with source_on(rig, width, 240, luma_only=True) as source:
        assert source.zero_copy
        with source.capture(1.0) as frame:
            assert frame.format is PixelFormat.GRAY
            assert frame.pixels.shape == (240, width)
            assert np.shares_memory(frame.pixels, rig.requests[0].buffer)
            expected = cv2.cvtColor(rig.reference_bgr(0, (width, 240)), cv2.COLOR_BGR2YUV_I420)
            assert np.array_equal(frame.pixels, expected[:240])
    assert rig.outstanding() == 0


@pytest.mark.parametrize("fmt, libcamera_format", [(PixelFormat.RGB, "BGR888"),
                                                   (PixelFormat.BGR, "RGB888")])
def test_three_channel_lores_on_pi5_is_a_view_in_the_asked_order(rig, fmt, libcamera_format):
    with source_on(rig, 300, 200, fmt=fmt) as source:
        assert rig.configurations[0]["lores"]["format"] == libcamera_format
        with source.capture(1.0) as frame:
            assert frame.format is fmt and frame.pixels.shape == (200, 300, 3)
            assert np.shares_memory(frame.pixels, rig.requests[0].buffer)
            assert np.array_equal(as_bgr(frame.pixels, fmt), rig.reference_bgr(0, (300, 200)))


def test_three_channel_lores_on_pi4_fails_to_open_and_says_why():
    pi4 = Rig(shared_path("video", "vtest.avi"), frames=1, platform="vc4")
    source = source_on(pi4, fmt=PixelFormat.RGB)
    with pytest.raises(SourceError, match="lores stream must be YUV"):
        source.open()
    assert pi4.instances[0].closed


def test_the_timestamp_is_the_sensors_on_the_monotonic_clock(rig):
    with source_on(rig) as source:
        with source.capture(1.0) as frame:
            now = time.monotonic()
            # the stand-in exposes 20 ms before delivery, as a real sensor does
            assert now - 0.2 < frame.timestamp < now - 0.015


def test_a_stalled_camera_gives_none_within_the_timeout_then_recovers(rig):
    with source_on(rig) as source:
        rig.mode = "stall"
        start = time.monotonic()
        with source.capture(0.1) as frame:
            assert frame is None
        assert 0.09 <= time.monotonic() - start < 0.5
        assert rig.cancels == 1  # the timed-out job must not take the next buffer
        rig.mode = "ok"
        with source.capture(0.1) as frame:
            assert frame is not None


def test_a_vanished_camera_is_a_source_error(rig):
    with source_on(rig) as source:
        rig.mode = "error"
        with pytest.raises(SourceError, match=r"picamera2:0: camera failed: .*vanished"):
            with source.capture(0.1):
                pass
    assert rig.instances[0].closed


def test_a_camera_that_is_not_there_fails_to_open(rig):
    with pytest.raises(SourceError, match="picamera2:1: cannot open the camera"):
        Picamera2Source(1, 320, 240, picamera2_module=rig).open()


def test_the_frame_is_not_used_after_its_block_even_when_the_consumer_raises(rig):
    with source_on(rig) as source:
        with pytest.raises(ZeroDivisionError):
            with source.capture(1.0):
                1 / 0
        assert rig.outstanding() == 0


def test_without_picamera2_installed_open_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        Picamera2Source(0, 320, 240).open()
    assert INSTALL_HINT.startswith("picamera2 is not installed")


def test_odd_sizes_are_refused_before_touching_the_camera():
    with pytest.raises(ValueError, match="even"):
        Picamera2Source(0, 301, 300)
