"""Frame-loop benchmark: where the time goes per frame, per model, in one process.

Runs the daemon's own Supervisor loop (real source, real counter, real sinks)
on a recording with `pace = fast`, and reports for each model the median ms
per frame of capture / preprocess / invoke / postprocess / output, frames per
second, the share of frame time that is not `invoke`, and the process's peak
RSS. Models run one after another in the same process; pass --rounds 2 or
more to interleave them and see the noise.

    python benchmarks/pipeline.py --frames 300 --threads 2 \
        --model models/cards/ssd_mobilenet_v1_coco_quant.toml \
        --model models/cards/yolox_nano_320_float32.toml
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "daemon"))

from crowdsign.config import Config, ModelConfig, SerialOutputConfig, SourceConfig  # noqa: E402
from crowdsign.counting.counter import load_counter  # noqa: E402
from crowdsign.notify import Notifier  # noqa: E402
from crowdsign.sinks.factory import make_sinks  # noqa: E402
from crowdsign.sources.factory import make_source  # noqa: E402
from crowdsign.supervisor import StageTimes, Supervisor  # noqa: E402
from crowdsign.zones import ZoneGeometry  # noqa: E402


def run_once(model: Path, video: Path, frames: int, threads: int, tiles: tuple[int, int],
             serial: bool, log: logging.Logger) -> dict:
    config = Config(
        source=SourceConfig(uri=f"replay:{video}", pace="fast", at_end="loop"),
        model=ModelConfig(path=model, num_threads=threads, tiles=tiles),
        outputs=(SerialOutputConfig(type="serial", port="loop://", rate_hz=100),) if serial else (),
    )
    stop = threading.Event()
    counter = load_counter(config.model, ZoneGeometry(config.zone_list()))
    source = make_source(config.source, model_size=counter.input_size,
                         model_format=counter.input_format, stop=stop, log=log)
    sinks = make_sinks(config.outputs, log)
    supervisor = Supervisor(config, source=source, counter=counter, sinks=sinks,
                            notifier=Notifier(address=""), log=log, stop=stop,
                            max_frames=frames)
    started = time.perf_counter()
    supervisor.run()
    wall = time.perf_counter() - started
    counter.close()
    return summarise(model, supervisor.times, frames, wall)


def summarise(model: Path, times: StageTimes, frames: int, wall: float) -> dict:
    warm = slice(5, None)  # the first frames pay for XNNPACK's lazy set-up
    medians = {name: statistics.median(list(getattr(times, name))[warm])
               for name in StageTimes.STAGES}
    frame_ms = sum(medians.values())
    return {
        "model": model.stem,
        "frames": frames,
        "fps": round(frames / wall, 2),
        "ms_per_frame": round(frame_ms, 2),
        **{f"{k}_ms": round(v, 3) for k, v in medians.items()},
        "not_invoke_share": round(1 - medians["invoke"] / frame_ms, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="model card or .tflite; repeat to compare")
    parser.add_argument("--video", type=Path, default=REPO.parent / "shared/video/vtest.avi")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", default="1x1", help="RxC tiles for detectors")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--serial", action="store_true", help="add a serial sink on loop://")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args()
    rows, cols = (int(n) for n in args.tiles.lower().split("x"))
    log = logging.getLogger("crowdsign.bench")
    logging.basicConfig(level=logging.WARNING)
    for round_ in range(args.rounds):
        for model in args.model:
            result = run_once(model, args.video, args.frames, args.threads, (rows, cols),
                              args.serial, log)
            result["round"] = round_ + 1
            if args.json:
                print(json.dumps(result))
            else:
                print(f"{result['model']:<36} {result['fps']:6.1f} fps  "
                      f"{result['ms_per_frame']:6.1f} ms/frame = capture {result['capture_ms']:.2f}"
                      f" + pre {result['preprocess_ms']:.2f} + invoke {result['invoke_ms']:.2f}"
                      f" + post {result['postprocess_ms']:.2f} + output {result['output_ms']:.2f}"
                      f"  | not invoke {result['not_invoke_share']:.1%}"
                      f"  | peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
