"""A batch's head points as the point-supervised losses read them (PyTorch).

A batch of patches carries its head points as B x N x 2 (x, y) in input
pixels, NaN rows padding each patch to the most crowded one. The Bayesian
loss, the transport loss and the count term all need the same three views:
each patch's head count, the heads as one flat list with each head's patch,
and the output cells' centres in the same pixel coordinates (pixel centres
on integers; output cell j's centre at (j + 0.5) * stride - 0.5, as in
density.py).
"""

from __future__ import annotations

import torch


def heads_per_patch(points: torch.Tensor) -> torch.Tensor:
    """The number of head points in each patch (rows that are not NaN padding), float."""
    return (~torch.isnan(points[..., 0])).sum(1).float()


def batch_heads(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(patch index of each head, M x 2 head points): the batch's heads in one list,
    in patch order. A padded batch holds 6-9 times the heads it has."""
    patch, slot = (~torch.isnan(points[..., 0])).nonzero(as_tuple=True)
    return patch, points[patch, slot]


def cell_centres(h: int, w: int, stride: int, device) -> torch.Tensor:
    """P x 2 (x, y) input-pixel centres of an h x w output map's cells, row by row."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride - 0.5
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride - 0.5
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([cx.flatten(), cy.flatten()], -1)
