"""models/training/cell_gain.py: the per-cell gain fit and the card it writes."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from crowdsign.config import ModelConfig
from crowdsign.counting.counter import load_counter
from crowdsign.counting.density import neighbourhood_mean
from crowdsign.counting.modelcard import load_model_card
from crowdsign.frames import Frame, PixelFormat
from shared_data import REPO, SHARED, shared_path, training_module

cell_gain = training_module("cell_gain")
evaluate = training_module("evaluate")

MODEL_DIR = REPO / "models/crowdsign_density_gray"
KNOTS = np.array([0.0, 0.2, 1.0, 2.0])
PLANTED = np.array([1.0, 0.9, 1.2, 1.6])


def _parts(seed: int = 0, window: int = 1) -> list:
    """Maps whose true counts are their cells under the planted gain, read at the
    mean of each cell's `window` x `window` neighbourhood."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, n, peak in (("mall", 60, 0.4), ("shanghaitech_b", 40, 2.0)):
        maps = rng.uniform(0, peak, (n, 5, 10)) * (rng.random((n, 5, 10)) < 0.3)
        levels = neighbourhood_mean(maps, window).reshape(n, -1)
        maps = maps.reshape(n, -1)
        counts = cell_gain.corrected_counts(maps, levels, KNOTS, PLANTED)
        parts.append(cell_gain.Part(name, maps, counts, levels))
    return parts


@pytest.mark.parametrize("window", [1, 3])
def test_fit_recovers_a_planted_gain(window):
    gains = cell_gain.fit_gains(_parts(window=window), KNOTS, ridge=1e-9)
    np.testing.assert_allclose(gains, PLANTED, atol=1e-4)


def test_a_fit_that_reads_cells_misses_a_gain_planted_on_neighbourhoods():
    own = [cell_gain.Part(p.name, p.maps, p.counts) for p in _parts(window=3)]
    assert np.abs(cell_gain.fit_gains(own, KNOTS, ridge=1e-9) - PLANTED).max() > 0.05


def test_fitted_gain_counts_held_out_folds_better_than_the_plain_sum():
    parts = _parts(1)
    plain = cell_gain.score(parts, [p.maps.sum(axis=1) for p in parts])
    assert cell_gain.cross_validated_score(parts, KNOTS) < 0.01 * plain


@pytest.mark.parametrize("window", [1, 3])
def test_fit_puts_its_top_knot_at_the_largest_level(window):
    parts = _parts(2, window)
    gain = cell_gain.fit_cell_gain(parts, interior=(0.2, 1.0), log=lambda _: None)
    assert [k for k, _ in gain][:3] == [0.0, 0.2, 1.0]
    assert gain[-1][0] == pytest.approx(max(p.levels.max() for p in parts))


def test_written_gain_replaces_the_old_one_and_the_card_still_loads(tmp_path):
    card = tmp_path / "model.toml"
    shutil.copy(MODEL_DIR / "crowdsign_density_gray.toml", card)
    shutil.copy(MODEL_DIR / "crowdsign_density_gray.tflite", tmp_path)
    for gain, window in (([(0.0, 1.0), (1.5, 1.25)], 7), ([(0.0, 0.98), (0.2, 1.0), (1.9, 1.5)], 1)):
        card.write_text(cell_gain.card_text_with_gain(card.read_text(), gain, window))
        loaded = load_model_card(card)
        np.testing.assert_allclose(loaded.cell_gain, gain, atol=1e-4)
        assert loaded.cell_gain_window == window
    assert [line for line in card.read_text().splitlines()
            if line.startswith("cell_gain")] == [cell_gain.card_text_with_gain("", gain).strip()]
    card.write_text(cell_gain.card_text_with_gain(card.read_text(), [(0.0, 1.0), (1.5, 1.2)], 5))
    card.write_text(cell_gain.card_text_with_gain(card.read_text(), None, 5))
    assert load_model_card(card).cell_gain is None
    assert "cell_gain_window" not in card.read_text()


def test_training_maps_are_the_maps_the_daemon_sums_before_any_gain(tmp_path):
    shared_path("data", "shanghaitech_b", "train", "labels.jsonl")
    shared_path("data", "mall", "train", "labels.jsonl")
    card = tmp_path / "crowdsign_density_gray.toml"
    card.write_text(cell_gain.card_text_with_gain(
        (MODEL_DIR / card.name).read_text(), None))
    shutil.copy(MODEL_DIR / "crowdsign_density_gray.tflite", tmp_path)
    parts = cell_gain.training_maps(card, SHARED / "data", threads=1, limit=3, window=5)
    counter = load_counter(ModelConfig(path=card, num_threads=1, mirror="off"),
                           evaluate.WHOLE)
    for part in parts:
        folder = SHARED / "data" / part.name / "train"
        train = evaluate.D.split(part.name, evaluate.D.read_labels(folder))[0][:3]
        assert part.maps.shape == part.levels.shape == (3, 64 * 48)
        np.testing.assert_allclose(part.levels, neighbourhood_mean(
            part.maps.reshape(3, 48, 64), 5).reshape(3, -1), atol=1e-6)
        assert part.counts.tolist() == [r["count"] for r in train]
        for i, record in enumerate(train):
            bgr = cv2.imread(str(folder / record["image"]), cv2.IMREAD_COLOR)
            total = counter.count(Frame(bgr, PixelFormat.BGR, 0.0, i)).total
            assert part.maps[i].sum() == pytest.approx(total, rel=1e-5)
