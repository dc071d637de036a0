"""Datasets in RAM at training scale, the validation split, and augmented patches.

Every image is decoded once, resized to the scale the deployed model sees it at
(the daemon resizes whole frames to the model input, 512x384 by default: a
640x480 Mall frame by 0.8, a 1024x768 ShanghaiTech frame by 0.5) with the same
resize and BGR->gray conversion the daemon uses, and kept as uint8. Head points
are scaled with it, and each head gets its geometry-adaptive sigma once.
Patches are cut with one affine warp (crop, scale jitter, flip), recoloured with
one lookup table (gamma, contrast, brightness), optionally blurred and noised,
and their density targets are built from the warped points (density.py),
or, for distillation (distill.py), by warping a teacher's map with the patch.

numpy and OpenCV only.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.training.density import adaptive_sigmas, density_map, on_pixels

# Deployed input size (width, height) and output stride.
INPUT_SIZE = (512, 384)
STRIDE = 8
# Training patch (width, height): a quarter of the deployed frame.
PATCH = (256, 192)
# Gaussian sigma bounds: pixels at training scale, then cells at output resolution.
SIGMA_PX = (2.0, 16.0)
SIGMA_CELLS = (0.6, 2.0)

# Trained on by default. ShanghaiTech A (--datasets ... shanghaitech_a) is optional: its
# dense crowds (up to ~60 heads per 8x8 output cell at this scale) dominate a squared
# loss and, in a CPU-sized budget, cost Mall and ShanghaiTech B more than they teach.
DATASETS = ("mall", "shanghaitech_b")
# Share of training patches drawn from each dataset.
MIX = {"mall": 0.45, "shanghaitech_b": 0.55, "shanghaitech_a": 0.15}
# Scale jitter (log-uniform range) per dataset: Mall is one fixed camera.
JITTER = {"mall": (0.85, 1.18), "shanghaitech_b": (0.7, 1.4), "shanghaitech_a": (0.7, 1.4)}
# Share of patches with no people at all: black, white, flat or graded frames with
# sensor noise (a covered lens, a dark platform at night, an overexposed view).
# The first model, trained without them, counted ~14 people in an all-black frame.
EMPTY_SHARE = 0.03
SHB_VAL_COUNT = 80
# The MAE bars; the validation score divides each dataset's MAE by its bar.
BARS = {"mall": 2.0, "shanghaitech_b": 12.0}
SPLIT_SEED = 0


@dataclass
class Item:
    name: str
    image: np.ndarray       # uint8 gray at training scale
    points: np.ndarray      # n x 2 float32 pixels at training scale
    sigmas: np.ndarray      # n sigmas in pixels at training scale
    count: int
    # A teacher's density instead of the head points (distill.py): people per
    # DENSITY_GRID x DENSITY_GRID pixel block at training scale; None: the points.
    density: np.ndarray | None = None


# Pixels per cell of Item.density: a quarter of the output stride keeps a
# teacher's map smooth under the patch warp at a sixteenth of a pixel map's RAM.
DENSITY_GRID = 4


def read_labels(folder: Path) -> list[dict]:
    with open(folder / "labels.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split(dataset: str, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, val): Mall frames 601-800 are val (temporal split, like the held-out
    801-2000); ShanghaiTech B: a fixed random 80 of its 400; ShanghaiTech A: all train."""
    records = sorted(records, key=lambda r: r["image"])
    if dataset == "mall":
        val = [r for r in records if int(Path(r["image"]).stem.split("_")[-1]) > 600]
    elif dataset == "shanghaitech_b":
        pick = set(np.random.default_rng(SPLIT_SEED).permutation(len(records))[:SHB_VAL_COUNT])
        val = [r for i, r in enumerate(records) if i in pick]
    else:
        val = []
    names = {r["image"] for r in val}
    return [r for r in records if r["image"] not in names], val


def target_size(dataset: str, width: int, height: int,
                input_size: tuple[int, int] = INPUT_SIZE) -> tuple[int, int]:
    """The size an image is kept at: the deployed input size for 4:3 views
    (Mall, ShanghaiTech B); ShanghaiTech A keeps its aspect, long side the input's."""
    if dataset != "shanghaitech_a":
        return input_size
    f = max(input_size) / max(width, height)
    return max(PATCH[0] // 2, round(width * f)), max(PATCH[1] // 2, round(height * f))


def load_item(folder: Path, record: dict, dataset: str,
              input_size: tuple[int, int] = INPUT_SIZE) -> Item:
    bgr = cv2.imread(str(folder / record["image"]), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(folder / record["image"])
    h, w = bgr.shape[:2]
    tw, th = target_size(dataset, w, h, input_size)
    small = cv2.resize(bgr, (tw, th), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    pts = np.asarray(record["points"], np.float64).reshape(-1, 2)
    pts = (pts + 0.5) * [tw / w, th / h] - 0.5  # pixel centres scale about the corner
    sig = adaptive_sigmas(pts, default=8.0, lo=SIGMA_PX[0], hi=SIGMA_PX[1])
    return Item(record["image"], gray, pts.astype(np.float32), sig.astype(np.float32),
                int(record["count"]))


def load_split(data: Path, datasets=DATASETS,
               input_size: tuple[int, int] = INPUT_SIZE) -> tuple[dict, dict]:
    """({dataset: [Item]} train, {dataset: [Item]} val) at the deployed `input_size`
    (width, height); datasets absent under `data` skipped."""
    train, val = {}, {}
    for name in datasets:
        folder = Path(data) / name / "train"
        if not (folder / "labels.jsonl").is_file():
            continue
        tr, va = split(name, read_labels(folder))
        train[name] = [load_item(folder, r, name, input_size) for r in tr]
        val[name] = [load_item(folder, r, name, input_size) for r in va]
    return train, val


def full_target(item: Item, stride: int = STRIDE) -> np.ndarray:
    """Density target of a whole item (the deployed size for Mall and ShanghaiTech B)."""
    h, w = item.image.shape
    sig = np.clip(item.sigmas / stride, *SIGMA_CELLS)
    return density_map(item.points, sig, h // stride, w // stride, stride)


def count_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    """MAE, RMSE and bias (mean of predicted - true) of per-image counts."""
    err = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "bias": float(err.mean())}


def selection_score(metrics: dict) -> float:
    """What checkpoints are chosen by: validation MAE over the issue's bars
    (Mall 2.0, ShanghaiTech B 12), summed; lower is better."""
    return sum(metrics.get(name, {}).get("mae", 0) / bar for name, bar in BARS.items())


def describe(metrics: dict) -> str:
    return " | ".join(f"{k} mae {m['mae']:.2f} rmse {m['rmse']:.2f} bias {m['bias']:+.2f}"
                      for k, m in metrics.items())


def parse_jitter(text: str) -> tuple[str, tuple[float, float]]:
    """argparse type: 'NAME=LO:HI' -> (NAME, (LO, HI)), a dataset's scale jitter
    (patch pixels per deployed-scale image pixel, log-uniform)."""
    name, _, bounds = text.partition("=")
    try:
        lo, hi = (float(v) for v in bounds.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected DATASET=LO:HI, e.g. shanghaitech_b=0.5:1.4") from None
    if not name or not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a dataset name and 0 < LO <= HI")
    return name, (lo, hi)


def parse_mix(text: str) -> tuple[str, float]:
    """argparse type: 'NAME=SHARE' -> (NAME, SHARE), a dataset's share of the
    training patches (relative: the shares are normalised over the datasets trained on)."""
    name, _, share = text.partition("=")
    try:
        value = float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected DATASET=SHARE, e.g. shanghaitech_b=0.7") from None
    if name not in MIX or not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(MIX)} and SHARE > 0")
    return name, value


def parse_input_size(text: str) -> tuple[int, int]:
    """argparse type: 'WxH' -> (W, H), both sides multiples of 32 (the deepest stride)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 512x384") from None
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be positive multiples of 32")
    return w, h


def probe_image(width: int = INPUT_SIZE[0], height: int = INPUT_SIZE[1]) -> np.ndarray:
    """A fixed noise image, 1 x H x W x 1 float: a trained network's output on it
    travels with its weights (train_torch), and the export checks it (net.load)."""
    return np.round(np.random.default_rng(0).uniform(0, 255, (1, height, width, 1))).astype(np.float32)


def warp_density(density: np.ndarray, m: np.ndarray, s: float, patch: tuple[int, int],
                 stride: int) -> np.ndarray:
    """The people per output cell of a patch cut by the pixel affine `m` (scale s)
    from an image whose density is given per DENSITY_GRID pixel block.

    The warp runs on the block grid (m conjugated by grid -> pixel-centre
    coordinates) and sums the blocks of each output cell. Resampling a narrow
    blob does not keep its mass (up to 9 % off at scale 0.75), so the result is
    rescaled to hold exactly the people of the blocks whose centres land in the
    patch, as a head point counts when it lands there. Outside the image: 0."""
    g = DENSITY_GRID
    to_px = np.array([[g, 0.0, (g - 1) / 2], [0.0, g, (g - 1) / 2], [0.0, 0.0, 1.0]])
    grid = np.linalg.inv(to_px) @ np.vstack([m, [0.0, 0.0, 1.0]]) @ to_px
    pw, ph = patch
    warped = cv2.warpAffine(density, grid[:2], (pw // g, ph // g), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0).astype(np.float64)
    gy, gx = np.mgrid[0:density.shape[0], 0:density.shape[1]]
    u = grid[0, 0] * gx + grid[0, 1] * gy + grid[0, 2]
    v = grid[1, 0] * gx + grid[1, 1] * gy + grid[1, 2]
    inside = (u >= -0.5) & (u < pw // g - 0.5) & (v >= -0.5) & (v < ph // g - 0.5)
    people, made = float(density[inside].sum()), float(warped.sum())
    warped *= people / made if made > 0 else 0.0
    k = stride // g
    return warped.reshape(ph // stride, k, pw // stride, k).sum(axis=(1, 3)).astype(np.float32)


class PatchSampler:
    """Augmented training patches and their density targets, from a seeded generator."""

    def __init__(self, train: dict, rng: np.random.Generator, patch=PATCH, stride=STRIDE,
                 empty_share: float = EMPTY_SHARE, jitter: dict | None = None,
                 mix: dict | None = None):
        self.train = {k: v for k, v in train.items() if v}
        self.jitter = {**JITTER, **(jitter or {})}
        mix = {**MIX, **(mix or {})}
        names = list(self.train)
        p = np.array([mix.get(n, 0.1) for n in names], np.float64)
        self.names, self.p = names, p / p.sum()
        self.rng, self.patch, self.stride = rng, patch, stride
        self.empty_share = empty_share

    def batch(self, size: int, points: bool = False, sources: bool = False):
        """(x, y): `size` patches and their density targets; with `sources`, then
        each patch's dataset name ("" for a patch with nobody in it); with `points`,
        last, size x N x 2 head points in patch pixels, NaN where a patch has fewer
        than N (N at least 1), for point-supervised losses (bayes_loss.py)."""
        pw, ph = self.patch
        x = np.empty((size, ph, pw, 1), np.float32)
        y = np.empty((size, ph // self.stride, pw // self.stride, 1), np.float32)
        heads, names = [], []
        for i in range(size):
            x[i, ..., 0], y[i, ..., 0], pts, name = self.one()
            heads.append(pts)
            names.append(name)
        named = (x, y, np.array(names)) if sources else (x, y)
        if not points:
            return named
        pts = np.full((size, max(1, max(len(h) for h in heads)), 2), np.nan, np.float32)
        for i, h in enumerate(heads):
            pts[i, :len(h)] = h
        return (*named, pts)

    def one(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """(patch, density target, n x 2 head points inside the patch in patch pixels
        (none for a teacher's density, which has no points), the name of the dataset
        it was cut from ("" for a patch with nobody in it))."""
        rng = self.rng
        # No draw at all when off, so that a run without empty patches sees the same
        # patch stream as before they existed.
        if self.empty_share > 0 and rng.random() < self.empty_share:
            return (*self.empty(), "")
        name = self.names[rng.choice(len(self.names), p=self.p)]
        items = self.train[name]
        item = items[rng.integers(len(items))]
        pw, ph = self.patch
        lo, hi = self.jitter.get(name, (0.8, 1.25))
        s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # patch pixels per image pixel
        h, w = item.image.shape
        cw, ch = pw / s, ph / s  # crop size in image pixels
        x0 = rng.uniform(0, w - cw) if w > cw else (w - cw) / 2
        y0 = rng.uniform(0, h - ch) if h > ch else (h - ch) / 2
        flip = rng.random() < 0.5
        # dst = s * (src - origin), src and dst in pixel-centre coordinates.
        ax = -s if flip else s
        tx = (pw - 1) - s * (-x0) - (s - 1) * 0.5 if flip else s * (-x0) + (s - 1) * 0.5
        ty = s * (-y0) + (s - 1) * 0.5
        m = np.array([[ax, 0.0, tx], [0.0, s, ty]])
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        if cw > w or ch > h:
            # A crop larger than the image: a mirrored border would show people the
            # target does not count, so the margin is a flat grey, which counts none.
            border = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=float(item.image.mean()))
        else:
            border = dict(borderMode=cv2.BORDER_REFLECT_101)
        img = cv2.warpAffine(item.image, m, (pw, ph), flags=interp, **border)
        if item.density is None:
            pts = item.points @ m[:, :2].T + m[:, 2]
            sig = np.clip(item.sigmas * s / self.stride, *SIGMA_CELLS)
            target = density_map(pts, sig, ph // self.stride, pw // self.stride, self.stride)
            pts = pts[on_pixels(pts, pw, ph)].astype(np.float32)  # the heads the target counts
        else:
            target = warp_density(item.density, m, s, (pw, ph), self.stride)
            pts = np.zeros((0, 2), np.float32)

        # Photometry: gamma, contrast, brightness in one table; blur; sensor noise.
        gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
        contrast, bright = rng.uniform(0.6, 1.3), rng.uniform(-25, 25)
        t = (np.arange(256) / 255.0) ** gamma * 255.0
        t = np.clip((t - 128.0) * contrast + 128.0 + bright, 0, 255).astype(np.uint8)
        img = cv2.LUT(img, t)
        if rng.random() < 0.25:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.3))
        out = img.astype(np.float32)
        if rng.random() < 0.35:
            out += rng.normal(0.0, rng.uniform(1.0, 7.0), out.shape).astype(np.float32)
            np.clip(out, 0, 255, out=out)
            np.round(out, out=out)
        return out, target, pts, name

    def empty(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A frame with nobody in it: a flat or graded level, noised, target zero."""
        rng = self.rng
        pw, ph = self.patch
        level = rng.choice([rng.uniform(0, 30), rng.uniform(225, 255), rng.uniform(0, 255)])
        gx, gy = rng.uniform(-60, 60, size=2) * (rng.random() < 0.5)
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        img = level + gx * (xx / pw - 0.5) + gy * (yy / ph - 0.5)
        img += rng.normal(0.0, rng.uniform(0.0, 8.0), img.shape)
        img = np.round(np.clip(img, 0, 255)).astype(np.float32)
        return img, np.zeros((ph // self.stride, pw // self.stride), np.float32), np.zeros((0, 2), np.float32)
