"""ReplaySource on real footage: vtest.avi (768x576, 795 frames, 10 fps) and Mall frames."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdsign.frames import PixelFormat
from crowdsign.sources.base import SourceError, SourceExhausted
from crowdsign.sources.replay import ReplaySource
from shared_data import shared_path


@pytest.fixture
def video() -> Path:
    return shared_path("video", "vtest.avi")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three Mall frames (640x480) as symlinks, plus a file that is not an image."""
    images = shared_path("data", "mall", "train", "images")
    out = tmp_path / "frames"
    out.mkdir()
    for name in ("seq_000003.jpg", "seq_000001.jpg", "seq_000002.jpg"):
        (out / name).symlink_to(images / name)
    (out / "notes.txt").write_text("not a frame")
    return out


def take(source: ReplaySource, n: int, timeout: float = 1.0) -> list:
    """n captures: (index, pixels copy, format, timestamp) for each frame, None for no frame."""
    out = []
    for _ in range(n):
        with source.capture(timeout) as frame:
            out.append(None if frame is None else
                       (frame.index, frame.pixels.copy(), frame.format, frame.timestamp))
    return out


def test_video_frames_are_bgr_at_the_file_size_in_order(video):
    first = cv2.VideoCapture(str(video)).read()[1]
    with ReplaySource(video, pace="fast") as source:
        assert source.fps == pytest.approx(10.0)
        frames = take(source, 5)
    assert [f[0] for f in frames] == [0, 1, 2, 3, 4]
    assert all(f[1].shape == (576, 768, 3) and f[2] is PixelFormat.BGR for f in frames)
    assert np.array_equal(frames[0][1], first)
    stamps = [f[3] for f in frames]
    assert stamps == sorted(stamps) and stamps[-1] <= time.monotonic()


def test_folder_frames_come_in_name_order_and_skip_other_files(folder):
    with ReplaySource(folder, pace="fast", at_end="exit") as source:
        assert source.fps == pytest.approx(10.0)  # folders default to 10 fps
        frames = take(source, 3)
        with pytest.raises(SourceExhausted):
            take(source, 1)
    expected = [cv2.imread(str(folder / f"seq_00000{i}.jpg")) for i in (1, 2, 3)]
    assert [f[0] for f in frames] == [0, 1, 2]
    for (_, pixels, fmt, _), want in zip(frames, expected):
        assert fmt is PixelFormat.BGR and pixels.shape == (480, 640, 3)
        assert np.array_equal(pixels, want)


def test_realtime_keeps_the_files_own_rate(video):
    with ReplaySource(video, pace="realtime") as source:
        start = time.monotonic()
        frames = take(source, 10)
        elapsed = time.monotonic() - start
    assert [f[0] for f in frames] == list(range(10))
    assert 0.85 <= elapsed < 1.5  # frame 9 is due 0.9 s after frame 0
    gaps = np.diff([f[3] for f in frames])
    assert gaps.mean() == pytest.approx(0.1, abs=0.02)


def test_fast_does_not_wait(video):
    with ReplaySource(video, pace="fast") as source:
        start = time.monotonic()
        take(source, 10)
        assert time.monotonic() - start < 0.5


def test_capture_never_waits_longer_than_its_timeout(folder):
    with ReplaySource(folder, pace="realtime", fps=2.0) as source:
        assert take(source, 1)[0][0] == 0
        start = time.monotonic()
        assert take(source, 1, timeout=0.1) == [None]  # frame 1 is due 0.5 s after frame 0
        assert time.monotonic() - start < 0.3
        (frame,) = take(source, 1, timeout=1.0)  # the same frame, once it is due
        assert frame[0] == 1


def test_a_slow_consumer_gets_the_frame_due_now_not_a_backlog(video):
    with ReplaySource(video, pace="realtime", fps=20.0) as source:
        indices = []
        for _ in range(3):
            with source.capture(1.0) as frame:
                indices.append(frame.index)
                time.sleep(0.3)  # a counter six frame periods slow
    assert indices[0] == 0
    assert 5 <= indices[1] - indices[0] <= 8 and 5 <= indices[2] - indices[1] <= 8


def test_at_end_loop_starts_again_and_keeps_counting(folder):
    with ReplaySource(folder, pace="fast", at_end="loop") as source:
        frames = take(source, 7)
    assert [f[0] for f in frames] == list(range(7))
    assert np.array_equal(frames[3][1], frames[0][1])
    assert np.array_equal(frames[6][1], frames[0][1])


def test_a_video_loops_too(video):
    with ReplaySource(video, pace="fast", at_end="loop") as source:
        first = take(source, 1)[0]
        for _ in range(794):
            with source.capture(1.0):
                pass
        again = take(source, 1)[0]
    assert again[0] == 795
    assert np.array_equal(again[1], first[1])


def test_at_end_stall_delivers_nothing_more_but_honours_the_timeout(folder):
    with ReplaySource(folder, pace="fast", at_end="stall") as source:
        assert all(f is not None for f in take(source, 3))
        start = time.monotonic()
        assert take(source, 2, timeout=0.1) == [None, None]
        assert 0.18 <= time.monotonic() - start < 0.6


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "nope.avi"
    with pytest.raises(SourceError) as e:
        ReplaySource(missing).open()
    assert str(missing) in str(e.value) and "\n" not in str(e.value)


def test_a_file_that_is_no_video_names_it(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError) as e:
        ReplaySource(junk).open()
    assert str(junk) in str(e.value) and "cannot be decoded" in str(e.value)


def test_a_broken_image_in_a_folder_names_the_image(folder):
    (folder / "seq_000002.jpg").unlink()
    (folder / "seq_000002.jpg").write_bytes(b"\xff\xd8 truncated")
    with ReplaySource(folder, pace="fast") as source:
        take(source, 1)
        with pytest.raises(SourceError, match="seq_000002.jpg"):
            take(source, 1)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no .jpg"):
        ReplaySource(tmp_path).open()


def test_capture_before_open_is_an_error(folder):
    with pytest.raises(SourceError, match="before open"):
        take(ReplaySource(folder), 1)


def test_after_a_long_pause_the_replay_resumes_instead_of_skipping_it_all(folder):
    clock_now = [0.0]
    with ReplaySource(folder, pace="realtime", fps=10.0, at_end="loop",
                      clock=lambda: clock_now[0]) as source:
        assert take(source, 1, timeout=0.0)[0][0] == 0
        clock_now[0] += 3600.0  # an hour suspended: 36000 frames late
        start = time.monotonic()
        (frame,) = take(source, 1, timeout=0.0)
        assert time.monotonic() - start < 0.5
        assert frame[0] == 1 + 11  # at most a second of the recording (plus one) skipped
        clock_now[0] += 0.1
        assert take(source, 1, timeout=0.0)[0][0] == 13  # and on the clock again


def test_frames_decoded_ahead_are_the_recordings_own_in_order(video):
    reference = cv2.VideoCapture(str(video))
    expected = [reference.read()[1] for _ in range(6)]
    reference.release()
    with ReplaySource(video, pace="fast") as source:
        frames = take(source, 6)
    assert [f[0] for f in frames] == list(range(6))
    for frame, pixels in zip(frames, expected):
        assert np.array_equal(frame[1], pixels)


def test_fast_replay_exits_at_the_end_with_decoding_ahead(folder):
    count = 3  # images in the folder
    with ReplaySource(folder, pace="fast", at_end="exit") as source:
        assert [f[0] for f in take(source, count - 1)] == [0, 1]
        with source.capture(1.0) as last:
            assert last is not None and last.index == count - 1
        with pytest.raises(SourceExhausted):
            with source.capture(1.0):
                pass
