"""Fit a density model's per-cell gain (its card's `cell_gain`) on the training split.

    .venv/bin/python -m models.training.cell_gain --data ../shared/data \
        --card build/x/crowdsign_density_gray.toml [--window 7] [--threads 2] [--write]

Why: a network trained for few epochs can squash its densest cells. The
Bayesian-loss run on the CPU (model card, "Toward the bars") never put more
than 1.84 people in a cell, and ShanghaiTech B images over 200 people came out
32 people low on average. Sparse crowds were fine. The shortfall depends on a
crowd's density, not on the scene. So a gain that is a function of the density,
applied to every cell after the model, can undo it at no inference cost.
The density it reads is the mean of the cell's 7x7 neighbourhood
(`cell_gain_window`): one cell of a dense crowd says less about how dense the
crowd is than the cells around it (model card, "The gain read from the
neighbourhood").

How: the card's model is run on every training image of Mall and ShanghaiTech
B, through the daemon's own input and output code. With a gain g that is
piecewise linear between knots, an image's corrected count sum_c d_c g(d_c)
is linear in the gains at the knots. Weighted ridge least squares (pulling
toward gain 1) fits them. Each dataset's residuals are divided by its bar and
by the square root of its image count, as the validation score weighs them.

Whether to ship the gain is decided on the validation images, with
`models.training.evaluate` on the card before and after, as checkpoints are.
The training images cannot decide it. A model counts the images it learnt
from better than new ones: that CPU run has ShanghaiTech B MAE 12.2 on its
training images and 15.2 on validation. The tool prints a 5-fold
cross-validated score on the training images anyway (Mall's folds are blocks
of consecutive frames). There, the gain can look useless while it helps on
new images: that run went from 1.71 to 1.75 on the training images, and from
1.74 / 15.23 to 1.69 / 13.77 on validation. The opposite also happens: v6,
GPU-trained for 88 epochs, went from 2.22 / 13.26 to 2.46 / 13.20 on
validation with a gain fitted on its training images.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "daemon") not in sys.path:
    sys.path.insert(0, str(REPO / "daemon"))

from crowdsign.counting.counter import open_model  # noqa: E402
from crowdsign.counting.density import neighbourhood_mean  # noqa: E402
from crowdsign.counting.modelcard import load_model_card  # noqa: E402
from crowdsign.counting.runtime import Dequantizer, single_output  # noqa: E402
from crowdsign.frames import Frame, PixelFormat  # noqa: E402

from models.training import data as D  # noqa: E402

FOLDS = 5
MALL_BLOCK = 20  # consecutive Mall frames per cross-validation block
# Each dataset's mean squared residual is in units of its bar, so this pulls
# a gain toward 1 only where the images say little about it.
RIDGE = 1e-3
# Knots between 0 and the largest training cell, people per cell: sparse crowds'
# blobs peak below 0.2, dense ones run to the top.
INTERIOR_KNOTS = (0.2, 1.0)
# Cells a side of the neighbourhood whose mean the gain reads (odd). On v7's
# validation images 3 to 11 all did better than 1 and 7 best; 7 then did better
# than 1 for each of the ten other networks it was tried on (model card).
WINDOW = 7


class Part:
    """One dataset's training maps (images x cells), the levels the gain reads at
    each cell (the maps themselves by default) and true counts."""

    def __init__(self, name: str, maps: np.ndarray, counts: np.ndarray,
                 levels: np.ndarray | None = None):
        self.name, self.maps, self.counts = name, maps, counts
        self.levels = maps if levels is None else levels
        self.weight = 1.0 / (D.BARS[name] * np.sqrt(len(counts)))

    def folds(self) -> np.ndarray:
        index = np.arange(len(self.counts))
        return (index // MALL_BLOCK if self.name == "mall" else index) % FOLDS

    def subset(self, keep: np.ndarray) -> "Part":
        return Part(self.name, self.maps[keep], self.counts[keep], self.levels[keep])


def training_maps(card_path: Path, data: Path, threads: int = 2, limit: int = 0,
                  window: int = 1) -> list[Part]:
    """Each dataset's density maps of its training split (the first `limit` images
    if given), as the daemon reads them, with the levels a gain of `window` reads."""
    card = load_model_card(card_path)
    interpreter, _, writer = open_model(card, threads)
    info = single_output(interpreter, card.file, "density", "[1, H, W, 1]")
    output = Dequantizer(interpreter, info)
    height, width = info.shape[1], info.shape[2]
    parts = []
    for name in D.BARS:
        folder = Path(data) / name / "train"
        train, _ = D.split(name, D.read_labels(folder))
        train = train[:limit] if limit else train
        maps = []
        for i, record in enumerate(train):
            bgr = cv2.imread(str(folder / record["image"]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"{folder / record['image']}: cannot read image")
            writer.write(*writer.source(Frame(bgr, PixelFormat.BGR, float(i), i)))
            interpreter.invoke()
            maps.append(output().reshape(height, width).copy())  # the Dequantizer reuses its buffer
        maps = np.stack(maps)
        parts.append(Part(name, maps.reshape(len(maps), -1),
                          np.array([r["count"] for r in train], float),
                          neighbourhood_mean(maps, window).reshape(len(maps), -1)))
    return parts


def gain_features(maps: np.ndarray, levels: np.ndarray,
                  knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts without gain, and each knot's linear share of the count: the corrected
    count with gains 1 + a is base + features @ a."""
    base = maps.sum(axis=1)
    hats = [np.interp(levels, knots, np.eye(len(knots))[k]) for k in range(len(knots))]
    return base, np.stack([(maps * h).sum(axis=1) for h in hats], axis=1)


def fit_gains(parts: list[Part], knots: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """The gains at the knots that minimise the weighted squared count error."""
    rows, targets = [], []
    for p in parts:
        base, features = gain_features(p.maps, p.levels, knots)
        rows.append(features * p.weight)
        targets.append((p.counts - base) * p.weight)
    a, b = np.concatenate(rows), np.concatenate(targets)
    return 1.0 + np.linalg.solve(a.T @ a + ridge * np.eye(len(knots)), a.T @ b)


def corrected_counts(maps: np.ndarray, levels: np.ndarray, knots: np.ndarray,
                     gains: np.ndarray) -> np.ndarray:
    return (maps * np.interp(levels, knots, gains)).sum(axis=1)


def score(parts: list[Part], predictions: list[np.ndarray]) -> float:
    return sum(np.abs(pred - p.counts).mean() / D.BARS[p.name]
               for p, pred in zip(parts, predictions))


def cross_validated_score(parts: list[Part], knots: np.ndarray) -> float:
    """The validation score of gains fitted without each fold, over all folds."""
    predictions = [np.zeros(len(p.counts)) for p in parts]
    for fold in range(FOLDS):
        gains = fit_gains([p.subset(p.folds() != fold) for p in parts], knots)
        for p, pred in zip(parts, predictions):
            held = p.folds() == fold
            pred[held] = corrected_counts(p.maps[held], p.levels[held], knots, gains)
    return score(parts, predictions)


def fit_cell_gain(parts: list[Part], interior=INTERIOR_KNOTS,
                  log=print) -> list[tuple[float, float]]:
    """[(people per cell, gain)] at the interior knots and at the largest training
    level, fitted on all training images; logs the cross-validated score beside
    the plain sum's."""
    top = float(max(p.levels.max() for p in parts))
    knots = np.array([0.0, *[k for k in interior if 0 < k < top], top])
    plain = score(parts, [p.maps.sum(axis=1) for p in parts])
    log(f"no gain: training score {plain:.3f} ("
        + ", ".join(f"{p.name} MAE {np.abs(p.maps.sum(axis=1) - p.counts).mean():.2f}"
                    for p in parts) + f"); largest level {top:.3f} people a cell")
    gains = fit_gains(parts, knots)
    log(f"knots {np.round(knots, 3).tolist()}: gains {np.round(gains, 3).tolist()}, "
        f"cross-validated training score {cross_validated_score(parts, knots):.3f}")
    return [(float(k), float(g)) for k, g in zip(knots, gains)]


def card_text_with_gain(text: str, gain: list[tuple[float, float]] | None,
                        window: int = 1) -> str:
    """The card's text with its cell_gain (and cell_gain_window) lines replaced,
    added, or (None) removed."""
    lines = [line for line in text.splitlines()
             if not re.match(r"\s*cell_gain(_window)?\s*=", line)]
    if gain is not None:
        pairs = ", ".join(f"[{k:.4f}, {g:.4f}]" for k, g in gain)
        lines.append(f"cell_gain = [{pairs}]")
        if window != 1:
            lines.append(f"cell_gain_window = {window}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--card", type=Path, required=True, help="the density model's card")
    p.add_argument("--data", type=Path, required=True, help="folder of mall/ and shanghaitech_b/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--knots", type=float, nargs="*", default=INTERIOR_KNOTS,
                   help="interior knots, people per cell (default: %(default)s)")
    p.add_argument("--window", type=int, default=WINDOW,
                   help="cells a side of the neighbourhood whose mean the gain reads, odd "
                        "(default: %(default)s; 1: the cell's own value)")
    p.add_argument("--write", action="store_true", help="put the chosen cell_gain in the card")
    args = p.parse_args(argv)

    if args.window < 1 or args.window % 2 == 0:
        p.error(f"--window: must be an odd number >= 1, got {args.window}")
    parts = training_maps(args.card, args.data, args.threads, window=args.window)
    print(", ".join(f"{p.name} {len(p.counts)} training images" for p in parts))
    gain = fit_cell_gain(parts, args.knots)
    print(card_text_with_gain("", gain, args.window).strip())
    if args.write:
        args.card.write_text(card_text_with_gain(args.card.read_text(encoding="utf-8"), gain,
                                                 args.window), encoding="utf-8")
        load_model_card(args.card)
        print(f"wrote {args.card}")


if __name__ == "__main__":
    main()
