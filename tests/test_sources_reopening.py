"""ReopeningSource around real sources: a replayed folder that breaks and
mends, a replay that goes silent, and the picamera2 stand-in losing its camera.

Backoff timing runs on a fake clock passed to ReopeningSource, with capture
timeouts of 0, so the tests take no real waiting; the tests of stop and of
the timeout bound run on the real clock.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from crowdsign.sources.base import FrameSource, SourceExhausted
from crowdsign.sources.picamera2 import Picamera2Source
from crowdsign.sources.reopening import ReopeningSource
from crowdsign.sources.replay import ReplaySource
from picamera2_standin import Rig
from shared_data import shared_path

MALL = ("seq_000001.jpg", "seq_000002.jpg", "seq_000003.jpg")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def images() -> Path:
    return shared_path("data", "mall", "train", "images")


def fill(folder: Path, images: Path, names=MALL) -> None:
    for name in names:
        (folder / name).symlink_to(images / name)


def capture_index(source: FrameSource, timeout: float = 0.0):
    with source.capture(timeout) as frame:
        return None if frame is None else frame.index


class Made:
    """An inner_factory that records when (on the fake clock) it was asked for a source."""

    def __init__(self, clock: FakeClock, make):
        self.clock, self.make, self.times = clock, make, []

    def __call__(self) -> FrameSource:
        self.times.append(self.clock.now - 1000.0)
        return self.make()


def reopening(factory, clock, stop=None, **kw) -> ReopeningSource:
    options = dict(stall_timeout_s=5.0, backoff_initial_s=0.5, backoff_max_s=4.0)
    options.update(kw)
    return ReopeningSource(factory, stop=stop or threading.Event(),
                           log=logging.getLogger("test.source"), clock=clock, **options)


def test_a_source_that_fails_to_open_is_retried_with_doubling_backoff_then_comes_back(
        tmp_path, images, caplog):
    caplog.set_level(logging.DEBUG, logger="test.source")
    clock = FakeClock()
    made = Made(clock, lambda: ReplaySource(tmp_path, pace="fast"))
    source = reopening(made, clock, backoff_max_s=3.0)
    source.open()  # the folder is empty: SourceError, logged, not raised
    assert source.state == "reopening"
    for step in (0.5, 1.0, 2.0):  # attempts at +0.5, +1.5, +3.5 all fail
        clock.advance(step - 0.01)
        assert capture_index(source) is None  # not due yet: no attempt
        clock.advance(0.01)
        assert capture_index(source) is None  # due: attempt, fails
    assert made.times == [0.0, 0.5, 1.5, 3.5]
    fill(tmp_path, images)
    clock.advance(3.0)  # 0.5 doubled thrice is 4.0, capped at backoff_max_s
    assert capture_index(source) == 0
    assert made.times[-1] == pytest.approx(6.5)
    assert source.state == "ok" and source.reopen_count == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "cannot be opened" in warnings[0].getMessage()
    assert len(infos) == 1 and "is back after 6.5 s (4 reopen attempts)" in infos[0].getMessage()
    assert str(tmp_path) in infos[0].getMessage()
    source.close()


def test_a_source_failing_mid_stream_is_closed_reopened_and_keeps_counting(tmp_path, images, caplog):
    caplog.set_level(logging.INFO, logger="test.source")
    fill(tmp_path, images)
    clock = FakeClock()
    source = reopening(lambda: ReplaySource(tmp_path, pace="fast"), clock)
    source.open()
    assert [capture_index(source) for _ in range(2)] == [0, 1]
    (tmp_path / MALL[2]).unlink()
    (tmp_path / MALL[2]).write_bytes(b"not a jpeg")  # the next frame cannot be decoded
    assert capture_index(source) is None
    assert source.state == "reopening"
    (tmp_path / MALL[2]).unlink()
    clock.advance(0.5)
    assert capture_index(source) == 2  # index goes on from the frames already seen
    assert source.reopen_count == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "failed, reopening" in messages[0] and "cannot decode image seq_000003.jpg" in messages[0]
    assert "is back" in messages[1]
    source.close()


def test_a_stalled_source_is_reopened_after_the_stall_timeout(tmp_path, images, caplog):
    caplog.set_level(logging.INFO, logger="test.source")
    fill(tmp_path, images, MALL[:2])
    clock = FakeClock()
    source = reopening(lambda: ReplaySource(tmp_path, pace="fast", at_end="stall"), clock)
    source.open()
    assert [capture_index(source) for _ in range(2)] == [0, 1]
    clock.advance(4.9)
    assert capture_index(source) is None
    assert source.state == "stalled"  # open, but no frame: not yet reopened
    clock.advance(0.1)
    assert capture_index(source) is None
    assert source.state == "reopening"
    assert caplog.records[0].getMessage() == f"camera replay:{tmp_path} stalled for 5.0 s, reopening"
    clock.advance(0.5)
    assert capture_index(source) == 2  # the replay starts again, counting on
    assert source.state == "ok"
    assert len(caplog.records) == 2 and "is back" in caplog.records[1].getMessage()
    source.close()


def test_a_camera_that_vanishes_is_reopened_as_a_new_camera(caplog):
    rig = Rig(shared_path("video", "vtest.avi"), frames=2)
    clock = FakeClock()
    source = reopening(lambda: Picamera2Source(0, 320, 240, picamera2_module=rig), clock)
    source.open()
    assert capture_index(source, 0.1) == 0
    rig.mode = "error"
    assert capture_index(source, 0.1) is None
    assert rig.instances[0].closed
    clock.advance(0.5)
    assert capture_index(source, 0.1) is None  # the new camera fails too
    rig.mode = "ok"
    clock.advance(1.0)
    assert capture_index(source, 0.1) == 1
    assert len(rig.instances) == 3 and rig.outstanding() == 0
    source.close()
    assert all(cam.closed for cam in rig.instances)


def test_capture_never_blocks_beyond_its_timeout_while_backing_off(tmp_path):
    source = ReopeningSource(lambda: ReplaySource(tmp_path / "missing"), stall_timeout_s=5.0,
                             backoff_initial_s=10.0, backoff_max_s=10.0,
                             stop=threading.Event(), log=logging.getLogger("test.source"))
    source.open()
    start = time.monotonic()
    assert capture_index(source, 0.2) is None
    assert 0.15 <= time.monotonic() - start < 0.6


def test_stop_interrupts_a_backoff_at_once(tmp_path):
    stop = threading.Event()
    source = ReopeningSource(lambda: ReplaySource(tmp_path / "missing"), stall_timeout_s=5.0,
                             backoff_initial_s=10.0, backoff_max_s=10.0,
                             stop=stop, log=logging.getLogger("test.source"))
    source.open()
    threading.Timer(0.1, stop.set).start()
    start = time.monotonic()
    assert capture_index(source, 30.0) is None
    assert time.monotonic() - start < 0.5


def test_stop_prevents_reopening(tmp_path, images):
    clock = FakeClock()
    stop = threading.Event()
    made = Made(clock, lambda: ReplaySource(tmp_path, pace="fast"))
    source = reopening(made, clock, stop=stop)
    source.open()
    fill(tmp_path, images)
    stop.set()
    clock.advance(60.0)
    assert capture_index(source) is None
    assert made.times == [0.0]  # no new source was made, let alone opened


def test_the_end_of_a_replay_passes_through(tmp_path, images):
    fill(tmp_path, images, MALL[:2])
    clock = FakeClock()
    source = reopening(lambda: ReplaySource(tmp_path, pace="fast", at_end="exit"), clock)
    source.open()
    assert [capture_index(source) for _ in range(2)] == [0, 1]
    with pytest.raises(SourceExhausted):
        capture_index(source)
    source.close()


def test_a_consumer_error_is_not_taken_for_a_camera_fault(tmp_path, images):
    fill(tmp_path, images, MALL[:1])
    source = reopening(lambda: ReplaySource(tmp_path, pace="fast"), FakeClock())
    source.open()
    with pytest.raises(KeyError):
        with source.capture(0.0):
            raise KeyError("counter bug")
    assert source.state == "ok" and source.reopen_count == 0
    source.close()
