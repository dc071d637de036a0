"""The test-only fault switch: off by default, and a hang that really hangs."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from crowdsign.faults import (ENV_VAR, FaultSpecError, HangAfterFrames, HangingCounter,
                              fault_from_env, with_fault)


class FakeCounter:
    input_size = (300, 300)
    input_format = "rgb"
    timings = "t"
    frames_at_cap = 0

    def __init__(self):
        self.counted = 0
        self.closed = False

    def describe(self):
        return "fake"

    def count(self, frame):
        self.counted += 1
        return frame

    def close(self):
        self.closed = True


def test_off_unless_the_variable_is_set():
    assert fault_from_env({}) is None
    assert fault_from_env({ENV_VAR: " "}) is None
    counter = FakeCounter()
    assert with_fault(counter, None, threading.Event(), logging.getLogger("t")) is counter


@pytest.mark.parametrize("spec", ["hang", "hang-after-frames", "hang-after-frames:x", "crash:1"])
def test_unknown_faults_are_refused(spec):
    with pytest.raises(FaultSpecError, match="hang-after-frames:N"):
        fault_from_env({ENV_VAR: spec})


def test_the_counter_hangs_after_n_frames_until_stopped(caplog):
    assert fault_from_env({ENV_VAR: "hang-after-frames:3"}) == HangAfterFrames(3)
    inner, stop = FakeCounter(), threading.Event()
    counter = HangingCounter(inner, HangAfterFrames(3), stop, logging.getLogger("t"))
    assert counter.input_size == (300, 300) and "hang after 3" in counter.describe()
    assert [counter.count(i) for i in range(3)] == [0, 1, 2]
    worker = threading.Thread(target=counter.count, args=(3,))
    worker.start()
    time.sleep(0.3)
    assert worker.is_alive() and inner.counted == 3, "the fourth frame hangs"
    stop.set()
    worker.join(2)
    assert not worker.is_alive() and inner.counted == 4, "SIGTERM (stop) still ends it"
    assert "the counter hangs now" in caplog.text
    counter.close()
    assert inner.closed
