"""Pack the training data small enough to travel to a GPU machine.

    python -m models.training.pack --data ../shared/data --out .gpu/data

The GPU machine gets a copy of the repository and nothing beside it (64 MiB in
all), so the datasets go along in a git-ignored folder, in gray, at no more
than the scale training uses. Per image the smaller of two encodings is kept:
the original JPEG's luma, extracted without loss (`jpegtran -grayscale`,
apt libjpeg-turbo-progs), or the image resized to the training scale (as
data.load_item resizes it) and encoded as a gray JPEG at --quality. Mall keeps
its luma; ShanghaiTech B (1024x768, kept at 512x384) is re-encoded, at 90 an
RMS difference of ~3 grey levels, below the sensor noise training adds.

The result is a data folder like ../shared/data (labels.jsonl with points in
the packed images' pixels, same image names, so data.split picks the same
validation images); train_torch.py reads it with --data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from models.training import data as D


def lossless_luma(path: Path) -> bytes:
    try:
        done = subprocess.run(["jpegtran", "-grayscale", "-optimize", "-copy", "none", str(path)],
                              capture_output=True, check=True)
    except FileNotFoundError:
        raise SystemExit("pack: jpegtran not found (apt install libjpeg-turbo-progs)") from None
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"pack: {path}: jpegtran failed: {e.stderr.decode().strip()}") from None
    return done.stdout


def resized_gray(path: Path, dataset: str, quality: int,
                 input_size=D.INPUT_SIZE) -> tuple[bytes, float, float]:
    """Gray JPEG at the training scale for input_size, and the x, y factors applied."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"pack: {path}: not a readable image")
    h, w = bgr.shape[:2]
    tw, th = D.target_size(dataset, w, h, input_size)
    gray = cv2.cvtColor(cv2.resize(bgr, (tw, th), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)
    ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                          cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    return buf.tobytes(), tw / w, th / h


def pack(data: Path, out: Path, datasets, quality: int, input_size=D.INPUT_SIZE) -> int:
    total = 0
    for name in datasets:
        src = Path(data) / name / "train"
        if not (src / "labels.jsonl").is_file():
            raise SystemExit(f"pack: {src / 'labels.jsonl'}: not found")
        dst = out / name / "train"
        shutil.rmtree(dst, ignore_errors=True)
        records, size, kept_luma = [], 0, 0
        for record in D.read_labels(src):
            luma = lossless_luma(src / record["image"])
            small, fx, fy = resized_gray(src / record["image"], name, quality, input_size)
            record = dict(record)
            if len(small) < len(luma):
                pts = np.asarray(record["points"], np.float64).reshape(-1, 2)
                record["points"] = ((pts + 0.5) * [fx, fy] - 0.5).round(2).tolist()
                blob = small
            else:
                blob, kept_luma = luma, kept_luma + 1
            (dst / record["image"]).parent.mkdir(parents=True, exist_ok=True)
            (dst / record["image"]).write_bytes(blob)
            records.append(record)
            size += len(blob)
        with open(dst / "labels.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        size += (dst / "labels.jsonl").stat().st_size
        print(f"{name}: {len(records)} images, {kept_luma} as lossless luma, "
              f"{size / 2**20:.1f} MiB", flush=True)
        total += size
    print(f"packed {total / 2**20:.1f} MiB into {out}", flush=True)
    return total


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=list(D.DATASETS))
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images")
    p.add_argument("--input-size", type=D.parse_input_size, default=D.INPUT_SIZE, metavar="WxH",
                   help="the deployed input size training will use (default 512x384)")
    args = p.parse_args(argv)
    pack(args.data, args.out, args.datasets, args.quality, args.input_size)


if __name__ == "__main__":
    main()
