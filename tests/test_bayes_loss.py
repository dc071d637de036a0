"""models/training/bayes_loss.py: each head's expected count, against 1 (PyTorch, the train-torch extra)."""

from __future__ import annotations

import math

import pytest

from shared_data import training_module

torch = pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
bayes_loss = training_module("bayes_loss")
NAN = math.nan


def _cell_centre(i, j, stride=8):
    return [(j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5]


def test_one_person_in_their_cell_costs_nothing():
    d = torch.zeros(1, 1, 24, 32)
    d[0, 0, 10, 12] = 1.0
    pts = torch.tensor([[_cell_centre(10, 12), [NAN, NAN]]])
    assert bayes_loss.bayesian_loss(d, pts, 8).item() == pytest.approx(0.0, abs=1e-4)


def test_a_missing_person_costs_one():
    d = torch.zeros(1, 1, 24, 32)
    pts = torch.tensor([[_cell_centre(3, 4), _cell_centre(20, 30)]])
    assert bayes_loss.bayesian_loss(d, pts, 8).item() == pytest.approx(2.0)


def test_mass_far_from_every_head_goes_to_the_background():
    d = torch.zeros(1, 1, 24, 32)
    d[0, 0, 2, 2] = 1.0   # the person
    d[0, 0, 20, 28] = 0.5  # nobody here
    pts = torch.tensor([[_cell_centre(2, 2)]])
    assert bayes_loss.bayesian_loss(d, pts, 8).item() == pytest.approx(0.5, abs=1e-3)


def test_a_patch_without_people_costs_its_whole_count():
    d = torch.full((1, 1, 24, 32), 0.01)
    pts = torch.full((1, 1, 2), NAN)
    assert bayes_loss.bayesian_loss(d, pts, 8).item() == pytest.approx(0.01 * 24 * 32, rel=1e-4)


def test_two_neighbours_share_the_mass_between_them():
    d = torch.zeros(1, 1, 24, 32)
    d[0, 0, 10, 10] = 2.0
    pts = torch.tensor([[_cell_centre(10, 10), _cell_centre(10, 11)]])
    one_cell_off = bayes_loss.bayesian_loss(d, pts, 8).item()
    d2 = torch.zeros(1, 1, 24, 32)
    d2[0, 0, 10, 10] = d2[0, 0, 10, 11] = 1.0
    assert bayes_loss.bayesian_loss(d2, pts, 8).item() < one_cell_off


def test_the_gradient_raises_an_undercounted_head():
    d = torch.zeros(1, 1, 24, 32, requires_grad=True)
    pts = torch.tensor([[_cell_centre(5, 5)]])
    bayes_loss.bayesian_loss(d + 0.0, pts, 8).sum().backward()
    assert d.grad[0, 0, 5, 5] < 0
