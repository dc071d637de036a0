"""The density network of the layer list (models/training/arch.py) in numpy
alone, for tests that check weights without a training framework."""

from __future__ import annotations

import cv2
import numpy as np

from shared_data import training_module

arch = training_module("arch")


def _same_pad(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    (top, bottom), (left, right) = (arch.same_padding(x.shape[i], kernel, stride) for i in (0, 1))
    return np.pad(x, ((top, bottom), (left, right), (0, 0)))


def conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """'same' convolution of an H x W x C array with an h x w x C x O kernel."""
    k = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(_same_pad(x, k, stride), (k, k), axis=(0, 1))
    windows = windows[::stride, ::stride]  # H' x W' x C x k x k
    return np.tensordot(windows, kernel.transpose(2, 0, 1, 3), axes=3) + bias


def tensors(arch_name: str, folded: dict, gray: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor (H x W x C) of the float network `arch_name` on one gray
    image; `folded` maps each convolution to (kernel, bias), BatchNorm folded in."""
    t = {arch.INPUT: gray.astype(np.float32)[..., None]}
    for layer in arch.layers_of(arch_name):
        if isinstance(layer, arch.Conv):
            kernel, bias = folded[layer.name]
            t[layer.name] = np.clip(conv(t[layer.source], kernel, bias, layer.stride), 0, layer.cap)
        elif isinstance(layer, arch.Density):
            kernel, bias = folded[layer.name]
            t[layer.name] = np.maximum(conv(t[layer.source], kernel, bias, 1), 0)
        elif isinstance(layer, arch.Upsample):
            h, w = t[layer.source].shape[:2]
            # OpenCV's bilinear resize has TensorFlow's half-pixel centres.
            up = cv2.resize(t[layer.source], (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
            t[layer.name] = up.reshape(2 * h, 2 * w, -1)
        else:
            a, b = layer.sources
            t[layer.name] = t[a] + t[b]
    return t


def density(arch_name: str, folded: dict, gray: np.ndarray) -> np.ndarray:
    """The float network's density map (H/8 x W/8) of one gray image."""
    return tensors(arch_name, folded, gray)[arch.layers_of(arch_name)[-1].name][..., 0]
