"""Training targets from a teacher: a trained network run at several input sizes.

    python -m models.training.train_torch ... --init v6.npz --teacher v6.npz [--teacher-video V]

The same network counts a frame differently at different input sizes, and the
average over several sizes is better than any one of them (v6 on validation,
float: 512x384 alone Mall 2.17, ShanghaiTech B 13.09; the mean of 512x384,
576x416, 608x448 and 640x480 2.11 / 11.72) but costs four passes a frame. A
student trained to output that average in one pass at the deployed size
(data distillation, Radosavovic et al. 2018, "Data Distillation: Towards
Omni-Supervised Learning") may keep part of the gain at no cost per frame.
Unlike head-point labels, a teacher's maps do not reward memorising the
training images (fine-tunes on the labels drift low on unseen ones: model
card), and they label frames nobody annotated (`--teacher-video`).

Each image's teacher density is kept per DENSITY_GRID pixel block at training
scale (data.Item.density); data.PatchSampler warps it with the patch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.training import arch as A
from models.training import data as D
from models.training import torch_net as T

# Input sizes (width, height) the teacher runs at; its target is their mean.
TEACHER_SIZES = ((512, 384), (576, 416), (608, 448), (640, 480))
# Frames of a teacher video taken: every this many.
VIDEO_EVERY = 4


def load_teacher(weights: Path, arch: str) -> T.DensityNet:
    model = T.DensityNet(arch)
    T.load_keras_arrays(model, np.load(weights))
    return model.eval()


def teacher_density(model: T.DensityNet, gray: np.ndarray, training_size: tuple[int, int],
                    sizes=TEACHER_SIZES) -> np.ndarray:
    """People per DENSITY_GRID block of `gray` (any resolution) resized to
    training_size (width, height): the mean of the model's maps at `sizes`,
    each resampled to that grid keeping its count."""
    g = D.DENSITY_GRID
    grid = (training_size[0] // g, training_size[1] // g)
    total = np.zeros(grid[::-1], np.float64)
    with torch.no_grad():
        for w, h in sizes:
            x = torch.from_numpy(cv2.resize(gray, (w, h), interpolation=cv2.INTER_LINEAR))
            cells = F.relu(model(x.float()[None, None]))[0, 0].numpy() / A.DENSITY_SCALE
            fine = cv2.resize(cells, grid, interpolation=cv2.INTER_LINEAR).astype(np.float64)
            if fine.sum() > 0:
                fine *= cells.sum() / fine.sum()
            total += fine
    return (total / len(sizes)).astype(np.float32)


def with_teacher(train: dict, data: Path, model: T.DensityNet, sizes=TEACHER_SIZES) -> dict:
    """`train` ({dataset: [Item]}) with each item's target the teacher's density,
    computed from the original image (not the training-scale copy)."""
    out = {}
    for name, items in train.items():
        folder = Path(data) / name / "train"
        out[name] = []
        for item in items:
            gray = cv2.imread(str(folder / item.name), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise FileNotFoundError(folder / item.name)
            h, w = item.image.shape
            out[name].append(replace(item, density=teacher_density(model, gray, (w, h), sizes)))
    return out


def video_items(path: Path, model: T.DensityNet, input_size=D.INPUT_SIZE,
                every: int = VIDEO_EVERY, sizes=TEACHER_SIZES) -> list[D.Item]:
    """Every `every`-th frame of a video, unlabelled, as items at the deployed
    input_size (width, height) with the teacher's density (count: the teacher's,
    rounded)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"{path}: not a readable video")
    items, index = [], 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % every == 0:
                gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                small = cv2.resize(bgr, input_size, interpolation=cv2.INTER_LINEAR)
                density = teacher_density(model, gray, input_size, sizes)
                items.append(D.Item(f"{Path(path).name}#{index}",
                                    cv2.cvtColor(small, cv2.COLOR_BGR2GRAY),
                                    np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                                    int(round(float(density.sum()))), density))
            index += 1
    finally:
        cap.release()
    if not items:
        raise ValueError(f"{path}: no frames")
    return items
