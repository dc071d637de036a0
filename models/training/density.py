"""Density targets from head points: numpy only, importable without TensorFlow.

A target is a map at output resolution (input pixels / stride per cell) in
which every head contributes a Gaussian of total mass exactly 1, so the map
sums to the number of heads. Each Gaussian is separable, so the whole map is
one matrix product, Gy^T @ Gx, with one row per head; each row is normalised
over the map itself, which keeps a head's full mass inside the map when its
Gaussian is cut by the border (a head on the edge still counts 1, not 1/2).

Coordinates: head points are 0-based pixel coordinates with pixel centres on
integers (as in labels.jsonl). Output cell j covers input pixels
[j*stride, (j+1)*stride), so its centre is at pixel (j + 0.5) * stride - 0.5
and a point at pixel x sits at cell coordinate (x + 0.5) / stride - 0.5.
"""

from __future__ import annotations

import numpy as np

# Geometry-adaptive kernels (Zhang et al., MCNN, CVPR 2016): sigma = BETA times the
# mean distance to the K nearest other heads, bounded so that lone heads and very
# dense clusters both get a sensible blob.
BETA = 0.3
K_NEAREST = 3


def adaptive_sigmas(points: np.ndarray, default: float, lo: float, hi: float) -> np.ndarray:
    """Per-point Gaussian sigma in pixels: BETA x mean distance to the 3 nearest heads.

    points: n x 2 pixels. `default` is used when there are fewer than two heads;
    the result is clipped to [lo, hi].
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(points)
    if n < 2:
        return np.full(n, float(np.clip(default, lo, hi)))
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    k = min(K_NEAREST, n - 1)
    nearest = np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k])
    return np.clip(BETA * nearest.mean(axis=1), lo, hi)


def on_pixels(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which of the n x 2 points (pixel coordinates) lie on a width x height input:
    the heads a density map of it counts."""
    x, y = points[:, 0], points[:, 1]
    return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


def density_map(points: np.ndarray, sigmas: np.ndarray, height: int, width: int,
                stride: int = 1) -> np.ndarray:
    """Density map height x width (output cells) of the heads inside the input.

    points: n x 2 input pixels (x, y); sigmas: n Gaussian sigmas in output cells
    (or one number). height, width: the map size; the input is height*stride x
    width*stride pixels. Points outside the input are dropped; every kept point
    adds exactly 1 to the map's sum, wherever it lies. float32.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sig = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), (len(points),))
    x, y = points[:, 0], points[:, 1]
    inside = on_pixels(points, width * stride, height * stride)
    if not inside.any():
        return np.zeros((height, width), np.float32)
    u = (x[inside] + 0.5) / stride - 0.5
    v = (y[inside] + 0.5) / stride - 0.5
    s = np.maximum(sig[inside], 1e-3)[:, None]
    gx = np.exp(-0.5 * ((np.arange(width)[None, :] - u[:, None]) / s) ** 2)
    gy = np.exp(-0.5 * ((np.arange(height)[None, :] - v[:, None]) / s) ** 2)
    # A very narrow kernel between cells can underflow everywhere: fall back to its cell.
    for g, c, n in ((gx, u, width), (gy, v, height)):
        empty = g.sum(axis=1) <= 0
        if empty.any():
            g[empty] = 0.0
            g[empty, np.clip(np.round(c[empty]).astype(int), 0, n - 1)] = 1.0
    gx /= gx.sum(axis=1, keepdims=True)
    gy /= gy.sum(axis=1, keepdims=True)
    return (gy.T @ gx).astype(np.float32)
