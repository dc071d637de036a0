"""The network in PyTorch, built from the same layer list (arch.py), for GPU training.

Matches Keras layer for layer, so trained weights export through net.py:
'same' padding as TensorFlow pads it (a stride-2 3x3 convolution on an even
size pads one row and column at the bottom and right only, where PyTorch's
`padding=1` would pad both sides and shift the grid by a pixel), BatchNorm with
Keras' epsilon and momentum (PyTorch's momentum is 1 - Keras'), and bilinear
upsampling with half-pixel centres (TensorFlow's resize). `keras_arrays` names
every weight `<layer>/<weight>` in Keras' layout, for net.load_npz.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.training import arch as A


class ConvBnRelu6(nn.Module):
    def __init__(self, cin: int, layer: A.Conv):
        super().__init__()
        self.kernel, self.stride, self.cap = layer.kernel, layer.stride, layer.cap
        self.conv = nn.Conv2d(cin, layer.filters, layer.kernel, layer.stride, bias=False)
        self.bn = nn.BatchNorm2d(layer.filters, eps=A.BN_EPSILON, momentum=1.0 - A.BN_MOMENTUM)

    def forward(self, x):
        # In place: BatchNorm's backward needs its input, not its output, and
        # the activation's backward reads its own result.
        x = self.pre_activation(x)
        return F.relu(x, inplace=True) if self.cap is None else F.hardtanh(x, 0.0, self.cap, inplace=True)

    def pre_activation(self, x):
        """The convolution and BatchNorm of `x`, before the ReLU."""
        top, bottom = A.same_padding(x.shape[-2], self.kernel, self.stride)
        left, right = A.same_padding(x.shape[-1], self.kernel, self.stride)
        if top == bottom and left == right:
            # The convolution pads symmetric padding itself: no padded copy of
            # the activations, forward or backward (a CPU step ~10 % faster).
            x = F.conv2d(x, self.conv.weight, None, self.stride, (top, left))
        else:
            x = self.conv(F.pad(x, (left, right, top, bottom)))
        return self.bn(x)


class DensityNet(nn.Module):
    """N x 1 x H x W gray (0..255) in, N x 1 x H/8 x W/8 density x DENSITY_SCALE out, linear."""

    def __init__(self, arch: str = "m", head_dropout: float = 0.0):
        super().__init__()
        # Spatial dropout (whole channels) on the density head's input, in training
        # only: at inference it is the identity, so the export has no such op.
        self.head_dropout = head_dropout
        self.spec = A.layers_of(arch)
        ch = A.channels(arch)
        self.convs = nn.ModuleDict()
        for layer in self.spec:
            if isinstance(layer, A.Conv):
                self.convs[layer.name] = ConvBnRelu6(ch[layer.source], layer)
            elif isinstance(layer, A.Density):
                self.convs[layer.name] = nn.Conv2d(ch[layer.source], 1, 1)

    def forward(self, x):
        return self.tensors(x)[self.spec[-1].name]

    def tensors(self, x) -> dict:
        """Every named tensor of the layer list (the input's too) for input `x`."""
        t = {A.INPUT: x}
        for layer in self.spec:
            if isinstance(layer, (A.Conv, A.Density)):
                x = t[layer.source]
                if isinstance(layer, A.Density) and self.head_dropout:
                    x = F.dropout2d(x, self.head_dropout, self.training)
                t[layer.name] = self.convs[layer.name](x)
            elif isinstance(layer, A.Upsample):
                t[layer.name] = F.interpolate(t[layer.source], scale_factor=2, mode="bilinear",
                                              align_corners=False)
            else:
                a, b = layer.sources
                t[layer.name] = t[a] + t[b]
        return t

    def cell_ceiling(self) -> float | None:
        """The most one output cell can hold, in the network's output units
        (density x DENSITY_SCALE), or None when the last hidden layer is open.

        The output is a 1x1 convolution of that layer, so with ReLU6 a cell
        holds at most cap x (the sum of its positive weights) + bias; a loss
        that lifts it too slowly leaves dense crowds undercounted (bayes_loss.py)."""
        density = self.spec[-1]
        hidden = next(l for l in self.spec if isinstance(l, A.Conv) and l.name == density.source)
        if hidden.cap is None:
            return None
        head = self.convs[density.name]
        return float(hidden.cap * head.weight.detach().clamp(min=0).sum() + head.bias.detach())


def keras_named(model: DensityNet):
    """(Keras name `<layer>/<weight>`, tensor) of every weight; kernels are in
    PyTorch's layout (out, in, h, w), Keras holds them as (h, w, in, out)."""
    for name, m in model.convs.items():
        conv = m.conv if isinstance(m, ConvBnRelu6) else m
        yield f"{name}/kernel", conv.weight
        if conv.bias is not None:
            yield f"{name}/bias", conv.bias
        if isinstance(m, ConvBnRelu6):
            bn = m.bn
            yield from ((f"{name}_bn/{keras_name}", t) for keras_name, t in (
                ("gamma", bn.weight), ("beta", bn.bias),
                ("moving_mean", bn.running_mean), ("moving_variance", bn.running_var)))


def keras_arrays(model: DensityNet) -> dict[str, np.ndarray]:
    """Every weight as a numpy array named and laid out as Keras holds it."""
    return {key: (t.detach().permute(2, 3, 1, 0) if key.endswith("/kernel") else t.detach())
            .cpu().numpy() for key, t in keras_named(model)}


def load_keras_arrays(model: DensityNet, arrays) -> None:
    """The inverse of keras_arrays (to continue training Keras-trained weights)."""
    with torch.no_grad():
        for key, t in keras_named(model):
            value = torch.from_numpy(np.asarray(arrays[key]))
            t.copy_(value.permute(3, 2, 0, 1) if key.endswith("/kernel") else value)
