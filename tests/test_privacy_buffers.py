"""Frames are not accumulated: the pipeline's buffers are made once and reused.

Real footage through the real replay source, the COCO SSD counter and the
level tracker, as the supervisor runs them: after a warm-up, another 100
frames leave the same scratch buffers and input tensor in place and no more
than a few KiB of live Python/numpy allocations (tracemalloc sees numpy's
arrays), where keeping even one decoded frame would hold 1.3 MB.
"""

from __future__ import annotations

import tracemalloc

from daemon_process import SSD_CARD
from shared_data import shared_path

from crowdsign.config import LevelsConfig, ModelConfig, ZoneConfig
from crowdsign.counting.counter import load_counter
from crowdsign.levels import LevelTracker
from crowdsign.sources.replay import ReplaySource
from crowdsign.zones import ZoneGeometry

ZONES = [ZoneConfig("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1))),
         ZoneConfig("right", ((0.5, 0), (1, 0), (1, 1), (0.5, 1)))]
FRAME_BYTES = 768 * 576 * 3


def buffer_addresses(counter) -> dict[str, int]:
    writer = counter._writer
    found = {f"resized{k}": a.ctypes.data for k, a in writer._resized.items()}
    found["converted"] = writer._converted.ctypes.data
    found["input tensor"] = writer._tensor()[0].ctypes.data
    return found


def test_counting_100_more_frames_keeps_the_same_buffers_and_no_frame(tmp_path):
    counter = load_counter(ModelConfig(path=SSD_CARD, num_threads=2), ZoneGeometry(ZONES))
    tracker = LevelTracker(ZONES, LevelsConfig(thresholds=(2, 5), window=3))
    source = ReplaySource(shared_path("video", "vtest.avi"), pace="fast", at_end="loop")
    source.open()

    def run(frames: int) -> None:
        done = 0
        while done < frames:
            with source.capture(1.0) as frame:
                if frame is None:
                    continue
                counts = counter.count(frame)
            tracker.observe(counts)
            tracker.update(counts.timestamp, fps=10.0, infer_ms=1.0)
            done += 1

    try:
        run(30)                                  # warm-up: every buffer made once
        before = buffer_addresses(counter)
        tracemalloc.start()
        run(10)   # so both measures include the one frame decoded ahead (pace = fast)
        start, _ = tracemalloc.get_traced_memory()
        run(100)
        end, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert buffer_addresses(counter) == before, "written in place, not reallocated"
        grown = end - start
        assert grown < 64 * 1024 < FRAME_BYTES, f"{grown} bytes more live after 100 frames"
    finally:
        source.close()
        counter.close()


def test_stage_history_is_allocated_once_and_keeps_the_last_frames_in_order():
    from crowdsign.supervisor import StageTimes

    times = StageTimes(keep=4)
    held = times._values.ctypes.data
    for i in range(10):
        times.add(capture=i, preprocess=i, invoke=i, postprocess=i, output=i)
    assert list(times.invoke) == [6.0, 7.0, 8.0, 9.0]
    assert times._values.ctypes.data == held and times._values.size == 4 * 5
