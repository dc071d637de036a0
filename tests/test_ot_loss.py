"""models/training/ot_loss.py: DM-Count's transport between density and heads (PyTorch, the train-torch extra)."""

from __future__ import annotations

import math

import pytest

from shared_data import training_module

torch = pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
ot = training_module("ot_loss")
NAN = math.nan


def _cell_centre(i, j, stride=8):
    return [(j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5]


def _reference_potentials(mass, heads, stride, h, w, eps, iterations=20000):
    """Plain alternating Sinkhorn in float64 for one patch, run to convergence."""
    cells = training_module("head_points").cell_centres(h, w, stride, "cpu").double()
    c = (heads[:, None] - cells[None]).square().sum(-1)
    log_a, log_b = mass.log(), torch.full((len(heads),), -math.log(len(heads)), dtype=torch.float64)
    f, g = torch.zeros(len(heads), dtype=torch.float64), torch.zeros(h * w, dtype=torch.float64)
    for _ in range(iterations):
        f = -eps * torch.logsumexp(log_a + (g - c) / eps, 1)
        g = -eps * torch.logsumexp(log_b[:, None] + (f[:, None] - c) / eps, 0)
    return g


def test_density_on_the_heads_cells_costs_nothing_to_transport():
    d = torch.zeros(1, 1, 6, 8)
    d[0, 0, 1, 2] = d[0, 0, 4, 6] = 1.0
    pts = torch.tensor([[_cell_centre(1, 2), _cell_centre(4, 6)]])
    assert ot.sinkhorn(d, pts, 8, eps=1.0)["cost"].item() == pytest.approx(0.0, abs=1e-3)


def test_half_the_mass_one_cell_off_costs_half_a_cells_squared_step():
    d = torch.zeros(1, 1, 6, 8)
    d[0, 0, 1, 3] = d[0, 0, 4, 6] = 1.0  # the first head's blob sits one cell to its right
    pts = torch.tensor([[_cell_centre(1, 2), _cell_centre(4, 6)]])
    assert ot.sinkhorn(d, pts, 8, eps=1.0)["cost"].item() == pytest.approx(0.5 * 8 ** 2, rel=1e-3)


def test_cell_potentials_match_a_converged_sinkhorn_within_a_percent_of_their_range():
    torch.manual_seed(0)
    mass = torch.rand(48, dtype=torch.float64)
    mass /= mass.sum()
    heads = torch.tensor([_cell_centre(0, 0), _cell_centre(5, 7), _cell_centre(2, 3)], dtype=torch.float64)
    ref = _reference_potentials(mass, heads, 8, 6, 8, eps=16.0)
    g = ot.sinkhorn(mass.view(1, 1, 6, 8), heads[None], 8, eps=16.0)["g"][0]
    err = g - ref
    err -= (err * mass).sum()  # potentials are defined up to a constant
    assert err.abs().max() < 0.01 * (ref.max() - ref.min())


def test_the_gradient_is_the_transport_values_finite_difference():
    torch.manual_seed(1)
    d = torch.rand(1, 1, 6, 8, dtype=torch.float64) + 0.05
    pts = torch.tensor([[_cell_centre(0, 0), _cell_centre(5, 7), _cell_centre(2, 3)]], dtype=torch.float64)

    def value(x):
        return ot.sinkhorn(x, pts, 8, eps=16.0, final_iterations=400)["value"].sum()

    x = d.clone().requires_grad_(True)
    ot.ot_loss(x, pts, 8, eps=16.0).sum().backward()
    spread = (x.grad.max() - x.grad.min()).item()
    for i, j in [(2, 5), (0, 7), (5, 0), (3, 3)]:
        step = torch.zeros_like(d)
        step[0, 0, i, j] = 1e-5
        fd = (value(d + step) - value(d - step)) / 2e-5
        # The loss runs the default, fewer iterations: within 2 % of the gradient's spread.
        assert abs(x.grad[0, 0, i, j].item() - fd.item()) < 0.02 * spread


def test_the_gradient_pulls_density_from_empty_space_toward_the_heads():
    d = torch.full((1, 1, 6, 8), 0.1, requires_grad=True)
    pts = torch.tensor([[_cell_centre(1, 1)]])
    ot.ot_loss(d, pts, 8).sum().backward()
    g = d.grad[0, 0]
    assert g[1, 1] < g[1, 2] < g[1, 4] < g[5, 7]  # descent lowers far cells first


def test_the_loss_value_is_zero_and_patches_without_heads_or_density_get_no_gradient():
    d = torch.zeros(3, 1, 6, 8)
    d[0] = 0.2
    d[1] = 0.2  # density but no heads
    d.requires_grad_(True)
    pts = torch.tensor([[_cell_centre(2, 2)], [[NAN, NAN]], [_cell_centre(3, 3)]])  # patch 2: heads, no density
    loss = ot.ot_loss(d, pts, 8)
    assert loss.detach().abs().max().item() < 1e-4
    loss.sum().backward()
    assert d.grad[0].abs().sum() > 0
    assert d.grad[1].abs().sum() == 0 and d.grad[2].abs().sum() == 0


def test_total_variation_is_zero_for_the_binned_heads_and_twice_the_count_when_apart():
    pts = torch.tensor([[_cell_centre(1, 1), _cell_centre(4, 6)]])
    d = torch.zeros(1, 1, 6, 8)
    d[0, 0, 1, 1] = d[0, 0, 4, 6] = 3.0  # any scale from the count up: the term compares shapes
    assert ot.binned_tv(d, pts, 8).item() == pytest.approx(0.0, abs=1e-6)
    far = torch.zeros(1, 1, 6, 8)
    far[0, 0, 0, 7] = 2.0
    assert ot.binned_tv(far, pts, 8).item() == pytest.approx(2.0 * 2, rel=1e-5)


def test_total_variation_pulls_a_vanishing_density_by_at_most_one_a_cell():
    pts = torch.tensor([[_cell_centre(1, 1), _cell_centre(4, 6)]])
    d = torch.full((1, 1, 6, 8), 1e-9, requires_grad=True)
    tv = ot.binned_tv(d, pts, 8)
    assert tv.item() == pytest.approx(2.0, rel=1e-5)  # both heads missing
    tv.sum().backward()
    assert d.grad.abs().max().item() <= 1.0 + 1e-6
    assert d.grad[0, 0, 1, 1] < 0  # descent raises the density where the heads are
