"""Distribution matching: the optimal-transport cost between the density and the heads (PyTorch).

Wang, Liu, Samaras, Nguyen, "Distribution Matching for Crowd Counting"
(DM-Count), NeurIPS 2020. The Bayesian loss (bayes_loss.py) shares each cell's
density among nearby heads through a Gaussian of a fixed width, and asks only
that each head's share add up to one. DM-Count instead normalises the density
map and the head points to two distributions of mass 1 and charges the
entropic optimal-transport cost of moving one onto the other, with no kernel
to choose; beside it, an L1 on each patch's count (train_torch's
--bayes-count) fixes the total, and the total-variation distance between the
normalised density and the heads binned to cells (`binned_tv`) sharpens it.

Entropic transport is solved by log-domain Sinkhorn iterations in the
symmetric form of Feydy et al. ("Interpolating between Optimal Transport and
MMD using Sinkhorn Divergences", AISTATS 2019), with the regularisation
annealed from the patch's diameter down to `eps` (their epsilon-scaling).
In that form the cell potential g is the soft c-transform of the head
potential, finite even on cells of zero density, and it is the gradient of
the transport cost with respect to the normalised density. As in the
authors' code, the loss is the density times that gradient, detached: its
value is zero and its gradient is the transport cost's; `transport_cost`
gives the cost itself.

Coordinates as in bayes_loss.py and density.py: head points in input pixels
with pixel centres on integers; output cell j's centre is at pixel
(j + 0.5) * stride - 0.5. Costs are squared distances in input pixels.
"""

from __future__ import annotations

import torch

from models.training.head_points import batch_heads, cell_centres, heads_per_patch


def _patch_logsumexp(z: torch.Tensor, patch: torch.Tensor, b: int) -> torch.Tensor:
    """Per patch and cell, log-sum-exp over that patch's heads: z is M x P, out B x P
    (-inf where a patch has no head)."""
    top = torch.full((b, z.shape[1]), float("-inf"), device=z.device, dtype=z.dtype).scatter_reduce(
        0, patch[:, None].expand_as(z), z, "amax")
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.zeros_like(top).index_add(0, patch, torch.exp(z - safe[patch]))
    return safe + torch.log(total)


def sinkhorn(density: torch.Tensor, points: torch.Tensor, stride: int, eps: float = 16.0,
             scaling: float = 0.7, final_iterations: int = 20) -> dict:
    """Entropic OT between each patch's normalised density and its heads (each 1/N).

    density: B x 1 x h x w, people per cell (only its values are used: no gradient
    flows). points: B x N x 2 head points, NaN rows for padding. eps: the final
    regularisation in squared input pixels (16: a blur of about 4 px, half a cell
    at stride 8; the cell potentials are then within about 0.5 % of their range
    of the converged ones after the default iterations, where 4 would need
    hundreds). The regularisation starts at the patch's squared diagonal
    and shrinks by `scaling` per iteration, then `final_iterations` run at eps;
    each iteration is a pair of alternating updates, so g is always the soft
    c-transform of f.

    Returns a dict of detached tensors: "g" (B x P, each cell's potential, the
    transport cost's gradient with respect to the normalised density), "used"
    (B, patches with both heads and density), "cost" (B, the transport cost
    sum(plan x squared distance), 0 where unused), "value" (B, the entropic
    transport value <f, b> + <g, mass>, whose gradient g is), "mass" (B x P
    normalised density).
    """
    b, _, h, w = density.shape
    dev = density.device
    with torch.no_grad():
        dt = torch.float64 if density.dtype == torch.float64 else torch.float32
        d = density.detach().flatten(1).to(dt).clamp(min=0.0)
        total = d.sum(1)
        patch, heads = batch_heads(points.to(dt))
        n = heads_per_patch(points).to(dt)
        used = (n > 0) & (total > 0)
        mass = d / total.clamp(min=1e-12)[:, None]
        keep = used[patch]
        patch, heads = patch[keep], heads[keep]
        g = torch.zeros(b, h * w, device=dev, dtype=dt)
        cost_out = torch.zeros(b, device=dev, dtype=dt)
        if len(patch) == 0:
            return {"g": g, "used": used, "cost": cost_out, "value": cost_out.clone(), "mass": mass}
        cells = cell_centres(h, w, stride, dev).to(dt)
        c = (heads[:, None, :] - cells[None]).square().sum(-1)  # M x P
        log_a = torch.log(mass)  # -inf on empty cells: they hold no mass to move
        log_b = -torch.log(n[patch])  # M
        f = torch.zeros(len(patch), device=dev, dtype=dt)
        diameter2 = float((h * stride) ** 2 + (w * stride) ** 2)
        schedule = []
        e = diameter2
        while e > eps:
            schedule.append(e)
            e *= scaling
        schedule += [eps] * final_iterations
        for e in schedule:
            f = -e * torch.logsumexp(log_a[patch] + (g[patch] - c) / e, dim=1)
            g = -e * _patch_logsumexp(log_b[:, None] + (f[:, None] - c) / e, patch, b)
        g = torch.where(used[:, None], g, torch.zeros_like(g))
        plan = torch.exp(log_a[patch] + log_b[:, None] + (f[:, None] + g[patch] - c) / eps)
        cost_out = torch.zeros(b, device=dev, dtype=dt).index_add(0, patch, (plan * c).sum(1))
        value = (g * torch.where(mass > 0, mass, torch.zeros_like(mass))).sum(1).index_add(
            0, patch, f * torch.exp(log_b))
    return {"g": g, "used": used, "cost": cost_out, "value": value, "mass": mass}


def ot_loss(density: torch.Tensor, points: torch.Tensor, stride: int, eps: float = 16.0) -> torch.Tensor:
    """Per patch (B values, zero): a surrogate whose gradient with respect to the
    density is the transport cost's, (g - <g, mass>) / count, as in DM-Count.

    Only the positive part of the density is transported (the deployed output is
    ReLU'd; negative training outputs have their own penalty). The count divided
    by is the larger of the patch's density sum and its number of heads: DM-Count
    divides by the density sum alone, and where a patch's density has all but
    vanished that pull grows without bound. Patches without heads or without
    density get no gradient (the count terms teach those)."""
    d = density.flatten(1).clamp(min=0.0)
    s = sinkhorn(d.view_as(density), points, stride, eps)
    count = torch.maximum(d.detach().sum(1), heads_per_patch(points).to(d.dtype)).clamp(min=1.0)
    grad = (s["g"] - (s["g"] * s["mass"]).sum(1, keepdim=True)) / count[:, None]
    grad = torch.where(s["used"][:, None], grad, torch.zeros_like(grad)).to(d.dtype)
    return (d * grad).sum(1)


def binned_tv(density: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """Per patch: DM-Count's total-variation term, the number of heads x the L1
    distance between the normalised density and the heads binned to their cells
    (normalised); 0 for a patch without heads.

    As in ot_loss, the positive part of the density is divided by the larger of
    its sum and the number of heads: where the density falls short of the heads
    the term is the plain L1 between it and the binned heads, whose pull on a cell
    is at most 1, instead of one that grows without bound as the density vanishes."""
    b, _, h, w = density.shape
    patch, heads = batch_heads(points)
    col = ((heads[:, 0] + 0.5) / stride).floor().long().clamp(0, w - 1)
    row = ((heads[:, 1] + 0.5) / stride).floor().long().clamp(0, h - 1)
    binned = torch.zeros(b, h * w, device=density.device, dtype=density.dtype).index_put_(
        (patch, row * w + col), torch.ones(len(patch), device=density.device, dtype=density.dtype),
        accumulate=True)
    n = binned.sum(1)
    d = density.flatten(1).clamp(min=0.0)
    count = torch.maximum(d.detach().sum(1), n).clamp(min=1.0)
    tv = (d / count[:, None] - binned / n.clamp(min=1.0)[:, None]).abs().sum(1)
    return torch.where(n > 0, tv * n, torch.zeros_like(tv))
