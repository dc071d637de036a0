"""Validation metrics of a shipped model through the daemon's own counting code.

    .venv/bin/python -m models.training.evaluate --data ../shared/data \
        --model models/crowdsign_density_gray/crowdsign_density_gray.toml [--model CARD ...] \
        [--threads 2] [--limit N] [--mirror both] [--json]

Runs each card on the validation split that training kept aside (Mall frames
601-800, the fixed 80 of ShanghaiTech B; see data.split) with
`load_counter(...).count(Frame(BGR image))`, i.e. the same resize, gray
conversion, quantization and density sum as the daemon, and reports per
dataset MAE, RMSE, bias and the median invoke time. Needs no TensorFlow.

Validation sets this small are noisy (80 ShanghaiTech B images: the MAE's
standard error is about 1.6 people), so each MAE comes with its standard
error, and every model after the first with its paired difference to the
first (same images, so most of the noise cancels): a candidate is better
when that difference is several of its standard errors below zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "daemon") not in sys.path:
    sys.path.insert(0, str(REPO / "daemon"))

from crowdsign.config import STILL_IMAGE_MIRROR_MODES, ModelConfig, ZoneConfig  # noqa: E402
from crowdsign.counting.counter import load_counter  # noqa: E402
from crowdsign.frames import Frame, PixelFormat  # noqa: E402
from crowdsign.zones import ZoneGeometry  # noqa: E402

from models.training import data as D  # noqa: E402

WHOLE = ZoneGeometry([ZoneConfig("all", ((0, 0), (1, 0), (1, 1), (0, 1)))])
# Consecutive frames of one camera are not independent samples: Mall's standard
# errors are taken over the means of blocks of this many frames.
SE_BLOCK = {"mall": 20}


def standard_error(values, block: int = 1) -> float:
    """Standard error of the mean of `values`, from the means of consecutive blocks."""
    v = np.asarray(values, np.float64)
    means = v[:len(v) // block * block].reshape(-1, block).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else float("nan")


def val_records(data: Path, dataset: str) -> list[dict]:
    folder = Path(data) / dataset / "train"
    return D.split(dataset, D.read_labels(folder))[1]


def evaluate(cards: list[Path], data: Path, datasets=("mall", "shanghaitech_b"),
             threads: int = 2, limit: int = 0, mirror: str | None = None) -> dict:
    """{card: {dataset: {frames, mae, mae_se, rmse, bias, invoke_ms_median[, mae_vs_first,
    mae_vs_first_se]}}}; models interleaved per frame."""
    counters = {c: load_counter(ModelConfig(path=c, num_threads=threads, mirror=mirror), WHOLE)
                for c in cards}
    result = {str(c): {} for c in cards}
    for ds in datasets:
        records = val_records(data, ds)
        if limit:
            records = records[:limit]
        err = {c: [] for c in cards}
        ms = {c: [] for c in cards}
        for i, r in enumerate(records):
            bgr = cv2.imread(str(Path(data) / ds / "train" / r["image"]), cv2.IMREAD_COLOR)
            frame = Frame(bgr, PixelFormat.BGR, float(i), i)
            for c, counter in counters.items():
                err[c].append(counter.count(frame).total - r["count"])
                ms[c].append(counter.timings.invoke_ms)
        block = SE_BLOCK.get(ds, 1)
        first = np.abs(np.asarray(err[cards[0]])) if cards else None
        for c in cards:
            e = np.asarray(err[c])
            m = {"frames": len(e), "mae": float(np.abs(e).mean()),
                 "mae_se": standard_error(np.abs(e), block),
                 "rmse": float(np.sqrt((e ** 2).mean())), "bias": float(e.mean()),
                 "invoke_ms_median": float(np.median(ms[c]))}
            if c != cards[0]:
                gain = np.abs(e) - first
                m["mae_vs_first"] = float(gain.mean())
                m["mae_vs_first_se"] = standard_error(gain, block)
            result[str(c)][ds] = m
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, action="append", required=True, help="model card (.toml)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="first N validation images per dataset")
    p.add_argument("--mirror", choices=STILL_IMAGE_MIRROR_MODES,
                   help="both: each image's count averaged with its mirror image's; off: the "
                        "image as it is (default: what each model card says)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = evaluate(args.model, args.data, threads=args.threads, limit=args.limit,
                      mirror=args.mirror)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for card, per in result.items():
        for ds, m in per.items():
            vs = (f", vs first {m['mae_vs_first']:+.2f} +- {m['mae_vs_first_se']:.2f}"
                  if "mae_vs_first" in m else "")
            print(f"{card} {ds}: {m['frames']} frames, MAE {m['mae']:.2f} +- {m['mae_se']:.2f}, "
                  f"RMSE {m['rmse']:.2f}, bias {m['bias']:+.2f}, invoke {m['invoke_ms_median']:.1f} ms{vs}")


if __name__ == "__main__":
    main()
