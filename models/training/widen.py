"""Start "m+x2" (a frame of twice the side) from trained "m+" weights.

    python -m models.training.widen --weights OUT/cpu/best.npz --out build/x2-init.npz

Why: "m+x2" is "m+" behind a different first convolution (arch.py), so all
but its first two layers can start where an "m+" run ended, and a short
second stage at 1024x768 teaches the new first layer what the native pixels
add, instead of a whole run from scratch.

How: "m+"'s stem1 is a 3x3 stride-2 convolution of the frame halved, and
halving a frame (the daemon's bilinear resize by exactly 0.5) averages 2x2
pixels. So a 6x6 stride-4 kernel that repeats each 3x3 weight over a 2x2
block, divided by 4, computes the same thing on the full frame (one native
pixel up and to the left, TensorFlow's 'same' padding of a 6x6 stride-4
convolution). Its 8 extra channels start random and feed stem2 through zero
weights, so the widened network counts as the "m+" one did until it trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.training import arch as A

SOURCE, TARGET = "m+", "m+x2"


def widen(arrays, seed: int = 0) -> dict[str, np.ndarray]:
    """TARGET's weights (Keras layout) from SOURCE's; the probe output is dropped
    (the network is another one until it trains)."""
    rng = np.random.default_rng(seed)
    out = {k: np.asarray(v) for k, v in arrays.items() if not k.startswith("probe/")}
    old = out["stem1/kernel"]                              # 3, 3, 1, c_old
    c_old, c_new = old.shape[3], A.channels(TARGET)["stem1"]
    spread = old.repeat(2, axis=0).repeat(2, axis=1) / 4   # 6, 6, 1, c_old
    k = spread.shape[0]
    fresh = rng.normal(0.0, np.sqrt(2.0 / (k * k)), (k, k, 1, c_new - c_old))
    out["stem1/kernel"] = np.concatenate([spread, fresh], axis=3).astype(np.float32)
    for name, fill in (("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0), ("moving_variance", 1.0)):
        key = f"stem1_bn/{name}"
        out[key] = np.concatenate([out[key], np.full(c_new - c_old, fill, out[key].dtype)])
    stem2 = out["stem2/kernel"]                            # 3, 3, c_old, c
    out["stem2/kernel"] = np.concatenate(
        [stem2, np.zeros((*stem2.shape[:2], c_new - c_old, stem2.shape[3]), stem2.dtype)], axis=2)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help=f'"{SOURCE}" weights (.npz, train_torch)')
    p.add_argument("--out", type=Path, required=True, help=f'"{TARGET}" weights to write (.npz)')
    p.add_argument("--seed", type=int, default=0, help="for the new channels")
    args = p.parse_args(argv)
    try:
        arrays = np.load(args.weights)
        widened = widen(arrays, args.seed)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"widen: {args.weights}: not {SOURCE} weights ({e})") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **widened)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
