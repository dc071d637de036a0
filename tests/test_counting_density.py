"""Density backend on a real one-op TFLite model: totals and zone sums as the math says."""

from __future__ import annotations

import numpy as np
import pytest

from crowdsign.config import ModelConfig, ZoneConfig
from crowdsign.counting.counter import load_counter
from crowdsign.counting.density import neighbourhood_mean
from crowdsign.counting.modelcard import ModelError
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry
from tflite_fixtures import write_density_model

LEFT = ZoneConfig("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
RIGHT = ZoneConfig("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)))
ZONES = ZoneGeometry([LEFT, RIGHT])


def _frame(pixels: np.ndarray, fmt: PixelFormat = PixelFormat.GRAY) -> Frame:
    return Frame(pixels, fmt, 12.5, 7)


def test_bright_block_counts_in_left_zone_only(tmp_path):
    card = write_density_model(tmp_path)
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    image = np.zeros((64, 64), np.uint8)
    image[8:24, 8:24] = 255  # 256 pixels of 1.0 each, pooled 4x4: 16 cells of 1.0
    counts = counter.count(_frame(image))
    assert counts.frame == 7 and counts.timestamp == 12.5
    assert counts.total == pytest.approx(16.0, abs=1e-4)
    assert counts.zones["left"] == pytest.approx(16.0, abs=1e-4)
    assert counts.zones["right"] == pytest.approx(0.0, abs=1e-6)
    assert counter.input_format is PixelFormat.GRAY
    assert counter.input_size == (64, 64)
    assert counter.timings.invokes == 1 and counter.timings.invoke_ms > 0


def test_lut_path_quantizes_with_card_std(tmp_path):
    # std 127.5 with input scale 1/255: pixel p becomes q = 2p (clipped), not identity.
    card = write_density_model(tmp_path, input_std=127.5)
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    image = np.zeros((64, 64), np.uint8)
    image[40:56, 36:60] = 100
    counts = counter.count(_frame(image))
    expected = (16 * 24) * 200 / 255 / 16  # sum of q * scale, over 16 pixels per cell
    assert counts.total == pytest.approx(expected, rel=1e-3)
    assert counts.zones["right"] == pytest.approx(expected, rel=1e-3)
    assert counts.zones["left"] == pytest.approx(0.0, abs=1e-6)


def test_zone_sums_match_zone_geometry(tmp_path):
    """A block cut by the zone edge is shared by mask weight, the same as sum_density."""
    card = write_density_model(tmp_path)
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    image = np.zeros((64, 64), np.uint8)
    image[0:16, 24:40] = 255  # straddles x = 32, the zone border
    counts = counter.count(_frame(image))
    density = np.zeros((16, 16), np.float32)
    density[0:4, 6:10] = 1.0
    expected = ZONES.sum_density(density)
    assert counts.zones["left"] == pytest.approx(expected["left"], abs=1e-4)
    assert counts.zones["right"] == pytest.approx(expected["right"], abs=1e-4)
    assert counts.total == pytest.approx(16.0, abs=1e-4)


def test_yuv420_luma_plane_feeds_gray_model(tmp_path):
    card = write_density_model(tmp_path)
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    luma = np.zeros((128, 128), np.uint8)
    luma[16:48, 80:112] = 255  # even edges: a 2x linear downscale keeps it exact
    i420 = np.vstack([luma, np.full((64, 128), 77, np.uint8)])  # chroma must not leak in
    counts = counter.count(_frame(i420, PixelFormat.YUV420))
    assert counts.total == pytest.approx(16.0, abs=1e-4)
    assert counts.zones["right"] == pytest.approx(16.0, abs=1e-4)


@pytest.mark.parametrize("fmt", [PixelFormat.RGB, PixelFormat.BGR])
def test_colour_frames_are_converted_to_gray(tmp_path, fmt):
    card = write_density_model(tmp_path)
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:24, 8:24] = 255
    assert counter.count(_frame(image, fmt)).total == pytest.approx(16.0, abs=1e-4)


def test_density_rejects_tiles(tmp_path):
    card = write_density_model(tmp_path)
    with pytest.raises(ModelError, match="detectors only") as e:
        load_counter(ModelConfig(path=card, tiles=(2, 2)), ZONES)
    assert str(card) in str(e.value)


def test_density_checks_output_stride(tmp_path):
    card = write_density_model(tmp_path)
    card.write_text(card.read_text().replace("output_stride = 4", "output_stride = 8"))
    with pytest.raises(ModelError, match="output_stride 8"):
        load_counter(ModelConfig(path=card), ZONES)


def test_tflite_path_finds_card_beside_it(tmp_path):
    write_density_model(tmp_path)
    counter = load_counter(ModelConfig(path=tmp_path / "density.tflite"), ZONES)
    assert counter.describe() == "density 64x64 gray uint8, 2 threads"


def test_a_card_names_the_views_its_model_counts_and_the_config_can_override(tmp_path):
    card = write_density_model(tmp_path, extra='mirror = "both"\n')
    assert load_counter(ModelConfig(path=card), ZONES).mirror == "both"
    assert load_counter(ModelConfig(path=card, mirror="alternate"), ZONES).mirror == "alternate"
    assert load_counter(ModelConfig(path=card, mirror="off"), ZONES).mirror == "off"


@pytest.mark.parametrize("value", ['"alternate"', '"sometimes"', "true"])
def test_a_card_mirror_other_than_off_or_both_is_refused_naming_card_and_key(tmp_path, value):
    """`alternate` is the daemon's choice for a stream of frames, not a way to measure a model."""
    card = write_density_model(tmp_path, extra=f"mirror = {value}\n")
    with pytest.raises(ModelError, match="off or both") as e:
        load_counter(ModelConfig(path=card), ZONES)
    assert str(card) in str(e.value) and "mirror" in str(e.value)


def test_cell_gain_rescales_cells_by_their_value_before_zone_sums(tmp_path):
    # Cells of 1.0 get gain 2; cells of about 0.5 sit where the gain is still 1.
    card = write_density_model(tmp_path, extra="cell_gain = [[0.0, 1.0], [0.6, 1.0], [1.0, 2.0]]\n")
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    image = np.zeros((64, 64), np.uint8)
    image[8:24, 8:24] = 255  # left: 16 cells of 1.0
    image[40:56, 40:56] = 128  # right: 16 cells of 128/255
    counts = counter.count(_frame(image))
    assert counts.zones["left"] == pytest.approx(32.0, abs=1e-3)
    assert counts.zones["right"] == pytest.approx(16 * 128 / 255, abs=1e-3)
    assert counts.total == pytest.approx(32.0 + 16 * 128 / 255, abs=1e-3)


def test_cell_gain_beyond_its_last_knot_stays_constant(tmp_path):
    card = write_density_model(tmp_path, extra="cell_gain = [[0.0, 1.5], [0.25, 3.0]]\n")
    counter = load_counter(ModelConfig(path=card, num_threads=1), ZONES)
    image = np.zeros((64, 64), np.uint8)
    image[8:24, 8:24] = 255
    assert counter.count(_frame(image)).total == pytest.approx(48.0, abs=1e-3)


def test_cell_gain_window_reads_each_cells_neighbourhood_not_the_cell_alone(tmp_path):
    gain = "cell_gain = [[0.0, 1.0], [0.5, 1.0], [1.0, 3.0]]\n"
    image = np.zeros((64, 64), np.uint8)
    image[8:12, 8:12] = 255  # one lone cell of 1.0
    image[40:52, 40:52] = 255  # a 3x3 block of cells of 1.0
    own = load_counter(ModelConfig(path=write_density_model(tmp_path, "own", extra=gain),
                                   num_threads=1), ZONES).count(_frame(image))
    assert own.zones["left"] == pytest.approx(3.0, abs=1e-3)
    assert own.zones["right"] == pytest.approx(27.0, abs=1e-3)
    card = write_density_model(tmp_path, "window", extra=gain + "cell_gain_window = 3\n")
    counts = load_counter(ModelConfig(path=card, num_threads=1), ZONES).count(_frame(image))
    # The lone cell's neighbourhood averages 1/9: gain 1. In the block, the centre
    # reads 9/9 (gain 3), its 4 edge cells 6/9 (gain 5/3), its 4 corners 4/9 (gain 1).
    assert counts.zones["left"] == pytest.approx(1.0, abs=1e-3)
    assert counts.zones["right"] == pytest.approx(3.0 + 4 * 5 / 3 + 4.0, abs=1e-3)
    assert counts.total == pytest.approx(1.0 + 3.0 + 4 * 5 / 3 + 4.0, abs=1e-3)


@pytest.mark.parametrize("window", [1, 3, 7])
def test_neighbourhood_mean_is_the_box_mean_of_the_mirrored_map(window):
    rng = np.random.default_rng(window)
    maps = rng.random((2, 12, 16)).astype(np.float32)
    got = neighbourhood_mean(maps, window)
    r = window // 2
    for m, g in zip(maps, got):
        mirrored = np.pad(m, r, mode="symmetric")  # edge cells repeated: cv2's BORDER_REFLECT
        expected = np.lib.stride_tricks.sliding_window_view(mirrored, (window, window)).mean((-2, -1))
        np.testing.assert_allclose(g, expected, atol=1e-6)
    assert got.dtype == np.float32


@pytest.mark.parametrize("extra, message", [
    ("cell_gain = [[0.0, 1.0], [1.0, 2.0]]\ncell_gain_window = 4\n", "must be odd"),
    ("cell_gain = [[0.0, 1.0], [1.0, 2.0]]\ncell_gain_window = 17\n", "wider than the 16x16"),
    ("cell_gain = [[0.0, 1.0], [1.0, 2.0]]\ncell_gain_window = 0\n", "integer >= 1"),
    ("cell_gain_window = 3\n", "only with a cell_gain"),
])
def test_bad_cell_gain_window_is_refused_naming_card_and_key(tmp_path, extra, message):
    card = write_density_model(tmp_path, extra=extra)
    with pytest.raises(ModelError, match=message) as e:
        load_counter(ModelConfig(path=card), ZONES)
    assert str(card) in str(e.value) and "cell_gain_window" in str(e.value)


@pytest.mark.parametrize("value, message", [
    ("[[0.0, 1.0]]", "at least 2"),
    ("[[0.5, 1.0], [0.2, 2.0]]", "rise"),
    ("[[0.0, 1.0], [1.0, 0.0]]", "positive"),
    ("[[0.0, 1.0], [1.0, true]]", "at least 2"),
    ('"2x"', "at least 2"),
])
def test_bad_cell_gain_is_refused_naming_card_and_key(tmp_path, value, message):
    card = write_density_model(tmp_path, extra=f"cell_gain = {value}\n")
    with pytest.raises(ModelError, match=message) as e:
        load_counter(ModelConfig(path=card), ZONES)
    assert str(card) in str(e.value) and "cell_gain" in str(e.value)
