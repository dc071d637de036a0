"""Bayesian loss: supervise each head's expected count, not a fixed blob (PyTorch).

Ma, Wei, Hong, Gong, "Bayesian Loss for Crowd Count Estimation with Point
Supervision", ICCV 2019. A Gaussian target map fixes the shape a head must
take, and the pixel MSE spends the network's capacity on matching it. The
Bayesian loss asks only that the density near each head add up to one: every
output cell's density is shared out among the heads (and a background) in
proportion to a Gaussian likelihood of that cell given each head, and each
head's share is compared with 1, the background's with 0 ("BL+", the
background keeps density away from empty space).

Train it on an open head (`--arch m+` or `l+`). With ReLU6 before the output
("m") a cell holds at most a ceiling set by the output's weights, and this
loss, whose pull on a head is bounded whatever its error, raises it far more
slowly than the density map's squared error: a CPU run of it alone on "m"
stopped at 0.48 people a cell and undercounted ShanghaiTech B's crowds over
200 people by 84.

Coordinates as in density.py: points in input pixels with pixel centres on
integers; output cell j's centre is at pixel (j + 0.5) * stride - 0.5.
"""

from __future__ import annotations

import torch

from models.training.head_points import batch_heads, cell_centres


def bayesian_loss(density: torch.Tensor, points: torch.Tensor, stride: int,
                  sigma: float = 8.0, background: float = 768.0) -> torch.Tensor:
    """Per-patch loss, B values: sum over heads of |1 - expected count| + |background|.

    density: B x 1 x h x w, people per cell. points: B x N x 2 head points (x, y) in
    input pixels, NaN rows for padding. sigma: the likelihood's spread in input
    pixels. background: a cell's squared distance to the background is
    background^2 / (squared distance to its nearest head), as in the authors' code,
    so cells farther than sqrt(background) pixels from every head go mostly to it.
    The default, 768 (28 px), is where this repository's own Gaussian targets
    (adaptive sigma up to 16 px) lose about 0.12 of each head to the background;
    at 192 (14 px) they would lose half, and a fine-tune from a network trained on
    them would first have to reshape every blob.
    """
    b, _, h, w = density.shape
    dev = density.device
    cells = cell_centres(h, w, stride, dev)  # P x 2
    patch, heads = batch_heads(points)
    heads = heads.float()  # M x 2
    d2 = (heads[:, None, :] - cells[None]).square().sum(-1)  # M x P
    per_cell = patch[:, None].expand(-1, h * w)
    nearest = torch.full((b, h * w), float("inf"), device=dev).scatter_reduce(
        0, per_cell, d2, "amin")  # inf where a patch has no head
    head_logit = -d2 / (2.0 * sigma ** 2)
    bg_logit = -(background ** 2 / (nearest + 1e-5)) / (2.0 * sigma ** 2)
    # Softmax over each patch's heads and its background, cell by cell.
    top = bg_logit.scatter_reduce(0, per_cell, head_logit, "amax")
    head_e = torch.exp(head_logit - top[patch])
    bg_e = torch.exp(bg_logit - top)
    share = density.flatten(1).float() / bg_e.index_add(0, patch, head_e)  # density / denominator
    expected_head = (head_e * share[patch]).sum(1)  # M
    expected_bg = (bg_e * share).sum(1)  # B
    return expected_bg.abs() + torch.zeros(b, device=dev).index_add(0, patch, (1.0 - expected_head).abs())
