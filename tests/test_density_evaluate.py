"""Validation metrics of models/training/evaluate.py, and their standard errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from shared_data import REPO, SHARED, shared_path, training_module

evaluate = training_module("evaluate")

MODEL_DIR = REPO / "models/crowdsign_density_gray"


def test_standard_error_of_independent_values_is_their_spread_over_root_n():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    assert evaluate.standard_error(values) == pytest.approx(values.std(ddof=1) / 2)


def test_standard_error_of_consecutive_frames_is_taken_over_block_means():
    # Two blocks that differ and agree inside: 2 block means 1 and 3 -> SE 1.
    values = [1.0] * 20 + [3.0] * 20
    assert evaluate.standard_error(values, block=20) == pytest.approx(1.0)
    assert evaluate.standard_error(values, block=1) < 0.2  # what ignoring the blocks would claim


def test_standard_error_of_one_block_is_not_a_number():
    assert np.isnan(evaluate.standard_error([1.0, 2.0], block=20))


def test_the_same_model_twice_differs_by_exactly_nothing(tmp_path):
    shared_path("data", "shanghaitech_b", "train", "labels.jsonl")
    twin = tmp_path / "twin"
    shutil.copytree(MODEL_DIR, twin, ignore=shutil.ignore_patterns("README.md"))
    cards = [MODEL_DIR / "crowdsign_density_gray.toml", twin / "crowdsign_density_gray.toml"]
    result = evaluate.evaluate(cards, SHARED / "data", datasets=("shanghaitech_b",), threads=1, limit=6)
    first, second = (result[str(c)]["shanghaitech_b"] for c in cards)
    assert first["frames"] == second["frames"] == 6
    assert "mae_vs_first" not in first
    assert second["mae"] == first["mae"] > 0
    assert second["mae_vs_first"] == 0.0 and second["mae_vs_first_se"] == 0.0
    assert first["mae_se"] > 0
