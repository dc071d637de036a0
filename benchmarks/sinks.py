"""Does signage slow counting? Frames per second with every sink on vs none.

Runs the daemon's own Supervisor loop on a recording (`pace = fast`) twice
per round, in the same process: once with no outputs, once with all of them
at once, each on a real port:

- serial: a line per update on a pseudo-terminal, read away by a thread;
- ibis:   DS021 text + DS001 level telegrams on another pty (1200 baud 7E2);
- modbus: the RTU server on a third pty (no client: the server idles);
- led_matrix: luma's dummy device (the drawing and luma's image handling;
  no SPI here).

Rounds alternate the order (none, all / all, none) so drift in the machine's
load hits both sides; the result is the median fps of each side and their
difference, and the median time per frame of the loop's output stage (what
the sinks cost the loop itself, a measure that load from other processes
on the machine barely moves). The goal: under 2 % apart.

    python benchmarks/sinks.py --frames 300 --rounds 3 \
        --model models/cards/ssd_mobilenet_v1_coco_quant.toml
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "daemon"))

from crowdsign.config import (CarConfig, Config, IbisOutputConfig, IbisTelegramConfig,  # noqa: E402
                              LedMatrixOutputConfig, ModbusOutputConfig, ModelConfig,
                              SerialOutputConfig, SourceConfig, ZoneConfig)
from crowdsign.counting.counter import load_counter  # noqa: E402
from crowdsign.notify import Notifier  # noqa: E402
from crowdsign.sinks.factory import make_sinks  # noqa: E402
from crowdsign.sources.factory import make_source  # noqa: E402
from crowdsign.supervisor import Supervisor  # noqa: E402
from crowdsign.zones import ZoneGeometry  # noqa: E402

ZONES = tuple(ZoneConfig(name, ((x0, 0.0), (x1, 0.0), (x1, 1.0), (x0, 1.0)))
              for name, x0, x1 in (("left", 0.0, 0.34), ("centre", 0.33, 0.67),
                                   ("right", 0.66, 1.0)))


class Drain:
    """A pty whose master end is read and discarded by a thread, as a display would."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                self.bytes += len(os.read(self.master, 65536))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


def all_outputs(serial: Drain, ibis: Drain, modbus: Drain) -> tuple:
    return (
        SerialOutputConfig(type="serial", port=serial.path, baudrate=115200, rate_hz=10),
        IbisOutputConfig(type="ibis", port=ibis.path, rate_hz=5, telegrams=(
            IbisTelegramConfig(type="DS021", address=1, blocks=3,
                               template="Car {best} least crowded"),
            IbisTelegramConfig(type="DS001", template="{code[left]}{code[centre]}{code[right]}"))),
        ModbusOutputConfig(type="modbus", port=modbus.path, parity="N"),
        LedMatrixOutputConfig(type="led_matrix", device="dummy", rate_hz=10),
    )


def run_once(model: Path, video: Path, frames: int, threads: int, outputs: tuple,
             log: logging.Logger) -> tuple[float, float]:
    """(frames per second after the warm-up, median ms per frame in the output
    stage: levels, recommendation and handing the update to every sink)."""
    config = Config(
        source=SourceConfig(uri=f"replay:{video}", pace="fast", at_end="loop"),
        model=ModelConfig(path=model, num_threads=threads), zones=ZONES,
        cars=tuple(CarConfig(z.name, (z.name,)) for z in ZONES), outputs=outputs)
    stop = threading.Event()
    counter = load_counter(config.model, ZoneGeometry(config.zone_list()))
    source = make_source(config.source, model_size=counter.input_size,
                         model_format=counter.input_format, stop=stop, log=log)
    sinks = make_sinks(config.outputs, log)
    supervisor = TimedSupervisor(config, source=source, counter=counter, sinks=sinks,
                                 notifier=Notifier(address=""), log=log, stop=stop,
                                 max_frames=WARMUP + frames)
    supervisor.run()
    counter.close()
    assert supervisor.first is not None and supervisor.last is not None
    output_ms = statistics.median(list(supervisor.times.output)[WARMUP:])
    return frames / (supervisor.last - supervisor.first), output_ms


WARMUP = 10
"""Frames counted before the clock starts: XNNPACK's lazy set-up, sinks opening."""


class TimedSupervisor(Supervisor):
    """The daemon's loop, timing the frames after the warm-up: start-up and
    shutdown (sinks opening and closing) are not part of the frame rate."""

    first = None
    last = None

    def _counted(self, *args) -> None:
        super()._counted(*args)
        if self.counted == WARMUP:
            self.first = time.perf_counter()
        self.last = time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path,
                        default=REPO / "models/cards/ssd_mobilenet_v1_coco_quant.toml")
    parser.add_argument("--video", type=Path, default=REPO.parent / "shared/video/vtest.avi")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = logging.getLogger("crowdsign.bench")
    logging.basicConfig(level=logging.WARNING)
    fps: dict[str, list[float]] = {"none": [], "all": []}
    out_ms: dict[str, list[float]] = {"none": [], "all": []}
    written = [0, 0]
    for r in range(args.rounds):
        order = ("none", "all") if r % 2 == 0 else ("all", "none")
        for side in order:
            drains = [Drain(), Drain(), Drain()] if side == "all" else []
            try:     # fresh ptys each run: a Linux pty refuses parity set a second time
                outputs = all_outputs(*drains) if drains else ()
                value, ms = run_once(args.model, args.video, args.frames, args.threads,
                                     outputs, log)
            finally:
                for i, d in enumerate(drains):
                    d.close()
                    if i < 2:
                        written[i] += d.bytes
            fps[side].append(value)
            out_ms[side].append(ms)
            print(f"round {r + 1} {side:>4} sinks: {value:6.2f} fps, output stage {ms:.3f} ms",
                  file=sys.stderr)
    none, every = statistics.median(fps["none"]), statistics.median(fps["all"])
    result = {"frames": args.frames, "rounds": args.rounds, "fps_no_sinks": round(none, 2),
              "fps_all_sinks": round(every, 2),
              "difference_pct": round(100.0 * (none - every) / none, 2),
              "output_ms_no_sinks": round(statistics.median(out_ms["none"]), 3),
              "output_ms_all_sinks": round(statistics.median(out_ms["all"]), 3),
              "bytes_to_serial_and_ibis": written[:2],
              "runs": {k: [round(v, 2) for v in vs] for k, vs in fps.items()}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"no sinks {none:.2f} fps | all sinks {every:.2f} fps | "
              f"difference {result['difference_pct']:+.2f} % (median of {args.rounds} rounds, "
              f"{args.frames} frames each) | output stage {result['output_ms_no_sinks']:.3f} "
              f"vs {result['output_ms_all_sinks']:.3f} ms/frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
