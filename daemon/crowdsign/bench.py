"""`crowdsign bench`: accuracy and speed of counting models on labelled images.

Every model runs through the daemon's own Counter (the same card, input
writer, backend and tiling), so what is measured here is what a platform
gets. Models are interleaved image by image in one process, so background
noise on a small board hits them all alike and their times compare fairly.

The data folder holds `labels.jsonl`, one JSON object per image:
`{"image": "images/x.jpg", "count": N, ...}` (the head points are not needed).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from crowdsign.config import STILL_IMAGE_MIRROR_MODES, ModelConfig, ZoneConfig
from crowdsign.counting.counter import Counter, load_counter
from crowdsign.counting.macs import count_macs
from crowdsign.counting.modelcard import ModelError, card_path_for, load_model_card
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry

WHOLE_FRAME = ZoneConfig("all", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
WARMUP_FRAMES = 2  # XNNPACK sets itself up on the first invokes: not timed


class BenchError(Exception):
    """The data folder or a labels line is unusable; the message names it."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    count: float


@dataclass(frozen=True)
class BenchResult:
    """One model's numbers: errors in people, times in ms per frame, MACs per frame."""

    model: str
    frames: int
    mae: float
    rmse: float
    bias: float
    ms_median: float
    ms_p95: float
    macs: int

    def line(self) -> str:
        return (f"{self.model:<40} {self.frames:5d} frames  MAE {self.mae:7.2f}  "
                f"RMSE {self.rmse:7.2f}  bias {self.bias:+7.2f}  "
                f"{self.ms_median:7.1f} ms median  {self.ms_p95:7.1f} ms p95  "
                f"{self.macs / 1e9:6.3f} GMAC")


def read_labels(data_dir: Path, limit: Optional[int] = None) -> list[LabelledImage]:
    """The labelled images of a folder, in file order, the first `limit` of them."""
    labels = data_dir / "labels.jsonl"
    if not labels.is_file():
        raise BenchError(f"{labels}: no labels.jsonl in the data folder")
    images = []
    with labels.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                images.append(LabelledImage(data_dir / record["image"], float(record["count"])))
            except (ValueError, KeyError, TypeError) as e:
                raise BenchError(f"{labels}:{number}: not a label line "
                                 f"(needs image and count): {e}") from None
            if limit is not None and len(images) >= limit:
                break
    if not images:
        raise BenchError(f"{labels}: no labelled images")
    return images


def model_label(path: Path, tiles: tuple[int, int], taken: Sequence[str] = ()) -> str:
    """The model's file name (and tiles); its folder too when another model compared
    in the same run has that name (a candidate beside the shipped model), else a number."""
    suffix = "" if tiles == (1, 1) else f" {tiles[0]}x{tiles[1]}"
    for label in (path.stem, f"{path.parent.name}/{path.stem}"):
        if label + suffix not in taken:
            return label + suffix
    n = 2
    while f"{path.stem} #{n}{suffix}" in taken:
        n += 1
    return f"{path.stem} #{n}{suffix}"


def frames_of(images: Sequence[LabelledImage]) -> Iterator[tuple[LabelledImage, Frame]]:
    for index, image in enumerate(images):
        pixels = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
        if pixels is None:
            raise BenchError(f"{image.path}: cannot read the image")
        yield image, Frame(pixels, PixelFormat.BGR, time.monotonic(), index)


def run_bench(data_dir: Path, models: Sequence[Path], *, tiles: tuple[int, int] = (1, 1),
              threads: int = 2, limit: Optional[int] = None,
              mirror: Sequence[str] = ()) -> list[BenchResult]:
    """Count every image with every model, interleaved; one result per model.

    `tiles` applies to detectors; a density model always runs in one pass.
    `mirror`, one for all models or one per model in order: `off` counts each
    image as it is; `both` averages it with its mirror image (the daemon's
    `[model] mirror = "both"`, two invokes); none given: what each model's
    card says (as the daemon does), so a model meant to count both views is
    timed beside a detector's one pass. The daemon's `alternate` needs a sequence
    of frames of one scene, which a folder of still images is not.
    """
    for mode in mirror:
        if mode not in STILL_IMAGE_MIRROR_MODES:
            raise BenchError(f"--mirror: expected {' or '.join(STILL_IMAGE_MIRROR_MODES)}, "
                             f"got {mode!r}")
    if len(mirror) <= 1:
        mirrors = list(mirror or [None]) * len(models)
    elif len(mirror) == len(models):
        mirrors = list(mirror)
    else:
        raise BenchError(f"--mirror: give it once for every model or once per --model "
                         f"({len(models)}), got {len(mirror)}")
    images = read_labels(data_dir, limit)
    zones = ZoneGeometry([WHOLE_FRAME])
    counters: list[tuple[str, Counter, int]] = []
    names: list[str] = []  # labels before any " +mirror", which must differ on their own
    for path, model_mirror in zip(models, mirrors):
        card = load_model_card(card_path_for(path))
        model_tiles = (1, 1) if card.kind == "density" else tiles
        counter = load_counter(ModelConfig(path=path, num_threads=threads, tiles=model_tiles,
                                           mirror=model_mirror), zones)
        label = model_label(path, model_tiles, names)
        names.append(label)
        if counter.mirror == "both":
            label += " +mirror"
        counters.append((label, counter,
                         count_macs(counter.card.file)))

    errors = {label: [] for label, _, _ in counters}
    times = {label: [] for label, _, _ in counters}
    invokes = {label: 1 for label, _, _ in counters}
    for image, frame in frames_of(images):
        for label, counter, _ in counters:
            started = time.perf_counter()
            counts = counter.count(frame)
            elapsed = (time.perf_counter() - started) * 1e3
            errors[label].append(counts.total - image.count)
            if frame.index >= min(WARMUP_FRAMES, len(images) - 1):
                times[label].append(elapsed)
            invokes[label] = counter.timings.invokes
    results = []
    for label, counter, macs in counters:
        err = np.asarray(errors[label])
        results.append(BenchResult(
            model=label, frames=len(err), mae=float(np.mean(np.abs(err))),
            rmse=float(math.sqrt(np.mean(err ** 2))), bias=float(np.mean(err)),
            ms_median=float(np.median(times[label])),
            ms_p95=float(np.percentile(times[label], 95)),
            macs=macs * invokes[label]))
        counter.close()
    return results


def bench_main(data: Path, models: Sequence[Path], tiles: str, threads: int,
               limit: Optional[int], as_json: bool, mirror: Sequence[str] = ()) -> int:
    """The `crowdsign bench` command; returns the exit code."""
    import sys

    try:
        rows, cols = (int(n) for n in tiles.lower().split("x"))
        if not (1 <= rows <= 8 and 1 <= cols <= 8):
            raise ValueError
    except ValueError:
        print(f"crowdsign: --tiles: expected RxC such as 2x2, got {tiles!r}", file=sys.stderr)
        return 2
    try:
        results = run_bench(data, models, tiles=(rows, cols), threads=threads, limit=limit,
                            mirror=mirror)
    except (BenchError, ModelError) as e:
        print(f"crowdsign: {e}", file=sys.stderr)
        return 2
    for r in results:
        if as_json:
            record = asdict(r)
            for key in ("mae", "rmse", "bias"):
                record[key] = round(record[key], 3)
            for key in ("ms_median", "ms_p95"):
                record[key] = round(record[key], 2)
            print(json.dumps(record))
        else:
            print(r.line())
    return 0
