"""The shipped density model (models/crowdsign_density_gray) and its training targets.

The model tests run the committed .tflite through the daemon's own code
(load_counter, Counter.count on BGR frames) on the validation images that
training kept aside: Mall frames 601-800 (every 5th) and the fixed 80 of
ShanghaiTech B (models/training/data.py `split`). The bounds sit a little above
what the shipped model measured (see models/crowdsign_density_gray/README.md),
so a regression in the model, the preprocessing or the density backend shows.
The target tests need only numpy.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from crowdsign.config import ModelConfig, ZoneConfig
from crowdsign.counting.counter import load_counter
from crowdsign.counting.macs import count_macs
from crowdsign.counting.modelcard import load_model_card
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry
from shared_data import REPO, shared_path, training_module

density = training_module("density")
arch = training_module("arch")
training_data = training_module("data")

CARD = REPO / "models/crowdsign_density_gray/crowdsign_density_gray.toml"
WHOLE = ZoneGeometry([ZoneConfig("all", ((0, 0), (1, 0), (1, 1), (0, 1)))])
SHIPPED_ARCH = "m+half"  # models/training/recipe.py HALF_RUN; the model card README
HALVES = ZoneGeometry([ZoneConfig("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1))),
                       ZoneConfig("right", ((0.5, 0), (1, 0), (1, 1), (0.5, 1)))])

# Measured on the shipped int8 model (v8, its cell gain included, both views as its
# card says) at 2 threads (README): Mall val frames 601-800, every 5th (40 frames),
# MAE 1.63; ShanghaiTech B val (80 images) MAE 11.29. The bounds leave headroom
# for other CPUs' rounding, not for a worse model: v6 (2.10 and 13.26) fails Mall's, v7 without
# its gain (14.53) ShanghaiTech B's, the model before them (2.74, 17.7) both.
MALL_MAE_BOUND = 2.0
SHB_MAE_BOUND = 13.0


# --- density targets --------------------------------------------------------

def test_target_sums_to_point_count():
    rng = np.random.default_rng(3)
    points = rng.uniform([0, 0], [511, 383], (57, 2))
    sigmas = rng.uniform(0.6, 2.0, 57)
    target = density.density_map(points, sigmas, 48, 64, stride=8)
    assert target.shape == (48, 64) and target.dtype == np.float32
    assert target.sum() == pytest.approx(57.0, rel=1e-5)
    assert (target >= 0).all()


@pytest.mark.parametrize("point", [(0, 0), (511, 383), (-0.5, 200), (511.4, 0), (0, 383.4)])
def test_point_on_the_border_counts_one(point):
    target = density.density_map(np.array([point]), 2.0, 48, 64, stride=8)
    assert target.sum() == pytest.approx(1.0, rel=1e-5)


def test_points_outside_the_input_are_dropped():
    points = np.array([[-3.0, 10.0], [600.0, 10.0], [10.0, 384.0], [100.0, 100.0]])
    target = density.density_map(points, 1.0, 48, 64, stride=8)
    assert target.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.unravel_index(target.argmax(), target.shape) == (12, 12)  # (100 + 0.5) / 8 - 0.5


def test_tiny_sigma_keeps_the_mass_in_its_cell():
    target = density.density_map(np.array([[20.0, 20.0]]), 1e-4, 8, 8, stride=8)
    assert target.sum() == pytest.approx(1.0, rel=1e-5)
    assert target[2, 2] == pytest.approx(1.0, rel=1e-5)


def test_empty_points_give_an_empty_map():
    target = density.density_map(np.zeros((0, 2)), 1.0, 6, 8, stride=4)
    assert target.shape == (6, 8) and target.sum() == 0


def test_adaptive_sigmas_follow_the_crowd():
    dense = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], float)
    sparse = dense * 20
    assert np.all(density.adaptive_sigmas(dense, 8, 1, 50) < density.adaptive_sigmas(sparse, 8, 1, 50))
    assert density.adaptive_sigmas(np.array([[5.0, 5.0]]), 8, 2, 16).tolist() == [8.0]
    assert np.all(density.adaptive_sigmas(sparse * 100, 8, 2, 16) == 16)


# --- a teacher's density under the patch warp ---------------------------------

def _patch_warp(centre, s, flip, patch=(256, 192)):
    """PatchSampler's affine: a patch of `patch` pixels at scale s centred on `centre`."""
    pw, ph = patch
    x0, y0 = centre[0] - pw / s / 2, centre[1] - ph / s / 2
    ax = -s if flip else s
    tx = (pw - 1) + s * x0 - (s - 1) * 0.5 if flip else -s * x0 + (s - 1) * 0.5
    return np.array([[ax, 0.0, tx], [0.0, s, -s * y0 + (s - 1) * 0.5]])


@pytest.mark.parametrize("s, flip", [(1.0, False), (1.3, True), (0.75, False), (0.7, True)])
def test_warped_teacher_density_keeps_its_people_where_the_point_lands(s, flip):
    head = np.array([[200.3, 100.7]])
    g = training_data.DENSITY_GRID
    teacher = density.density_map(head, 1.0, 384 // g, 512 // g, g)
    m = _patch_warp((230, 90), s, flip)
    target = training_data.warp_density(teacher, m, s, (256, 192), 8)
    from_point = density.density_map(head @ m[:, :2].T + m[:, 2], 1.0, 24, 32, 8)
    assert target.shape == (24, 32)
    assert target.sum() == pytest.approx(1.0, rel=1e-5)
    yy, xx = np.mgrid[0:24, 0:32]
    for grid in (xx, yy):
        assert (grid * target).sum() == pytest.approx((grid * from_point).sum(), abs=0.1)


def test_warped_teacher_density_drops_people_outside_the_patch():
    g = training_data.DENSITY_GRID
    teacher = density.density_map(np.array([[20.0, 20.0], [480.0, 350.0]]), 1.0, 384 // g, 512 // g, g)
    target = training_data.warp_density(teacher, _patch_warp((128, 96), 1.0, False), 1.0, (256, 192), 8)
    assert target.sum() == pytest.approx(1.0, rel=1e-4)


# --- head points beside the target, for the Bayesian loss ------------------------

def _sampler_items():
    """Two images with heads in known places, at the training scale."""
    rng = np.random.default_rng(5)
    items = []
    for k in range(2):
        pts = rng.uniform([0, 0], [512, 384], size=(40, 2)).astype(np.float32)
        sig = density.adaptive_sigmas(pts, 8.0, 2.0, 16.0).astype(np.float32)
        image = rng.integers(0, 256, (384, 512), dtype=np.uint8)
        items.append(training_data.Item(f"img{k}", image, pts, sig, len(pts)))
    return {"mall": items}


def test_patch_points_are_the_heads_the_target_counts():
    sampler = training_data.PatchSampler(_sampler_items(), np.random.default_rng(7), empty_share=0.2)
    x, y, pts = sampler.batch(24, points=True)
    kept = ~np.isnan(pts[..., 0])
    assert pts.shape[0] == 24 and pts.shape[2] == 2
    np.testing.assert_allclose(kept.sum(1), y.sum((1, 2, 3)), atol=1e-3)
    inside = pts[kept]
    assert np.all((inside >= -0.5) & (inside < [256 - 0.5, 192 - 0.5]))
    assert (kept.sum(1) == 0).any() and (kept.sum(1) > 0).any()  # people-free patches have none


def test_patch_points_sit_where_the_target_puts_its_mass():
    sampler = training_data.PatchSampler(_sampler_items(), np.random.default_rng(8), empty_share=0.0)
    for _ in range(10):
        _, target, pts, _ = sampler.one()
        for head in pts:  # the target cell under a head holds part of its blob
            j, i = np.floor((head + 0.5) / 8).astype(int)
            assert target[min(i, 23), min(j, 31)] > 0.01


def test_points_leave_the_patch_stream_unchanged():
    a = training_data.PatchSampler(_sampler_items(), np.random.default_rng(9)).batch(6)
    b = training_data.PatchSampler(_sampler_items(), np.random.default_rng(9)).batch(6, points=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_sources_name_each_patch_dataset_and_leave_the_stream_unchanged():
    items = {"mall": _sampler_items()["mall"][:1], "shanghaitech_b": _sampler_items()["mall"][1:]}
    a = training_data.PatchSampler(items, np.random.default_rng(9), empty_share=0.3).batch(40, points=True)
    x, y, sources, pts = training_data.PatchSampler(items, np.random.default_rng(9), empty_share=0.3).batch(
        40, points=True, sources=True)
    np.testing.assert_array_equal(a[0], x)
    np.testing.assert_array_equal(a[2], pts)
    assert set(sources) == {"mall", "shanghaitech_b", ""}
    np.testing.assert_array_equal(y[sources == ""].sum((1, 2, 3)), 0.0)


def test_a_zoomed_out_jitter_puts_more_heads_in_each_patch():
    """Scale 0.5 crops twice the width and height of the image: four times the heads
    of scale 1, each at half the size."""
    def mean_heads(scale):
        sampler = training_data.PatchSampler(_sampler_items(), np.random.default_rng(10), empty_share=0.0,
                                             jitter={"mall": (scale, scale)})
        _, y = sampler.batch(32)
        return y.sum((1, 2, 3)).mean()

    assert mean_heads(0.5) == pytest.approx(4 * mean_heads(1.0), rel=0.15)


def test_a_crop_larger_than_the_image_pads_with_flat_grey_not_mirrored_people():
    """A 512x384 patch at scale 0.5 crops twice the image's sides: the image fills the
    middle quarter, and the margin, which the target counts nobody in, shows nothing."""
    items = _sampler_items()
    blocks = np.random.default_rng(13).integers(0, 256, (12, 16), dtype=np.uint8)
    for item in items["mall"]:  # 32-pixel blocks: structure that survives the halving and blur
        item.image = np.kron(blocks, np.ones((32, 32), np.uint8))
    sampler = training_data.PatchSampler(items, np.random.default_rng(12), patch=(512, 384),
                                         empty_share=0.0, jitter={"mall": (0.5, 0.5)})
    for _ in range(6):
        patch, target, pts, _ = sampler.one()
        assert patch[:, :120].std() < 10 and patch[:80].std() < 10  # noise at most
        assert patch[110:270, 140:370].std() > 30
        assert target.sum() == pytest.approx(len(pts), abs=1e-3) and len(pts) == 40


def test_a_mix_sets_each_datasets_share_of_the_patches():
    """ShanghaiTech B's images here hold nobody, so a patch without heads came from it."""
    items = _sampler_items()
    nobody = [training_data.Item(f"empty{k}", item.image, item.points[:0], item.sigmas[:0], 0)
              for k, item in enumerate(items["mall"])]
    items["shanghaitech_b"] = nobody

    def share_without_heads(mix):
        sampler = training_data.PatchSampler(items, np.random.default_rng(11), empty_share=0.0, mix=mix)
        _, y = sampler.batch(300)
        return float((y.sum((1, 2, 3)) < 0.5).mean())

    assert share_without_heads(None) == pytest.approx(0.55, abs=0.08)
    assert share_without_heads({"mall": 0.25, "shanghaitech_b": 0.75}) == pytest.approx(0.75, abs=0.08)


@pytest.mark.parametrize("parse, text, parsed", [
    ("parse_mix", "shanghaitech_b=0.75", ("shanghaitech_b", 0.75)),
    ("parse_mix", "mall=1", ("mall", 1.0)),
    ("parse_jitter", "shanghaitech_b=0.5:1.4", ("shanghaitech_b", (0.5, 1.4))),
])
def test_a_dataset_option_reads_the_dataset_and_its_value(parse, text, parsed):
    assert getattr(training_data, parse)(text) == parsed


@pytest.mark.parametrize("parse, text", [
    *(("parse_mix", t) for t in ["shanghaitech_b", "shanghaitechb=0.7", "mall=0", "mall=-1", "mall=a"]),
    *(("parse_jitter", t) for t in ["shanghaitech_b", "=0.5:1", "mall=1.4:0.5", "mall=0:1", "mall=a:b"]),
])
def test_a_dataset_option_that_makes_no_sense_is_refused_by_name(parse, text):
    with pytest.raises(Exception, match=re.escape(text)):
        getattr(training_data, parse)(text)


@pytest.mark.parametrize("text, size", [("512x384", (512, 384)), ("576X416", (576, 416))])
def test_input_size_reads_width_by_height(text, size):
    assert training_data.parse_input_size(text) == size


@pytest.mark.parametrize("text", ["570x416", "512", "512x384x1", "-32x64", "wide"])
def test_input_size_that_the_network_cannot_take_is_refused_by_name(text):
    with pytest.raises(Exception, match=text):
        training_data.parse_input_size(text)


# --- the shipped model ------------------------------------------------------

@pytest.fixture(scope="module")
def counter():
    c = load_counter(ModelConfig(path=CARD, num_threads=2), WHOLE)  # the views its card names
    yield c
    c.close()


# --- the network's layer list -------------------------------------------------


@pytest.mark.parametrize("size, kernel, stride, padding", [
    (384, 3, 2, (0, 1)),   # even size, stride 2: TensorFlow pads after only
    (383, 3, 2, (1, 1)),
    (48, 3, 1, (1, 1)),
    (48, 1, 1, (0, 0)),
    (12, 1, 2, (0, 0)),
])
def test_same_padding_is_tensorflows(size, kernel, stride, padding):
    assert arch.same_padding(size, kernel, stride) == padding
    before, after = padding
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize("name", list(arch.ARCHS))
def test_every_layer_reads_a_tensor_defined_before_it(name):
    defined = {arch.INPUT}
    for layer in arch.layers_of(name):
        sources = layer.sources if isinstance(layer, arch.Add) else (layer.source,)
        assert set(sources) <= defined, layer
        assert layer.name not in defined, layer
        defined.add(layer.name)
    assert isinstance(arch.layers_of(name)[-1], arch.Density)


@pytest.mark.parametrize("name", list(arch.ARCHS))
def test_every_size_fits_the_compute_bar_at_the_deployed_input(name):
    assert arch.macs(name, 512, 384) <= 1.0e9


@pytest.mark.parametrize("name", ["m", "l"])
def test_the_open_head_sizes_differ_only_in_the_last_hidden_relus_bound(name):
    closed, opened = arch.layers_of(name), arch.layers_of(name + "+")
    changed = [(a, b) for a, b in zip(closed, opened) if a != b]
    assert len(closed) == len(opened) and len(changed) == 1
    before, after = changed[0]
    assert before.name == "head2" and before.cap == 6.0 and after.cap is None
    assert arch.macs(name + "+", 512, 384) == arch.macs(name, 512, 384)


def test_the_slim_context_size_narrows_only_the_context_and_fits_the_bar_at_640x480():
    wide, slim = arch.layers_of("m+"), arch.layers_of("m+96")
    assert [l.name for l in wide] == [l.name for l in slim]
    narrowed = {a.name for a, b in zip(wide, slim) if a != b}
    assert narrowed == {"s16a", "s16b", "s32a", "s32b", "s32d", "s16c", "head1"}
    assert arch.channels("m+96")["s8b"] == arch.channels("m+")["s8b"]
    assert arch.macs("m+", 640, 480) > 1.0e9 >= arch.macs("m+96", 640, 480)


def test_the_half_size_counts_a_frame_and_its_mirror_image_under_the_bar():
    channels = arch.channels("m+half")
    assert channels["s8b"] == channels["s16d"] == 56  # the two sides of the 1/8 add
    assert 2 * arch.macs("m+half", 512, 384) <= 1.0e9 < 2 * arch.macs("m+", 512, 384)


def test_an_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="'xl'"):
        arch.layers_of("xl")


def test_shipped_model_is_the_layer_list_within_the_compute_bar():
    # The MACs bench reads off the .tflite file are those of the layer list the
    # card names: the shipped file is that network, and the two views of a frame
    # its card counts stay within the issue's <= 1.0 G.
    card = load_model_card(CARD)
    expected = arch.macs(SHIPPED_ARCH, 512, 384)
    assert count_macs(card.file) == expected
    assert card.mirror == "both" and 2 * expected <= 1.0e9


def test_card_and_model_agree():
    card = load_model_card(CARD)
    assert card.kind == "density" and card.input_colour == "gray"
    assert card.file.is_file() and card.file.stat().st_size < 1_000_000
    counter = load_counter(ModelConfig(path=CARD, num_threads=1), HALVES)
    assert counter.input_size == (512, 384)
    assert counter.input_format is PixelFormat.GRAY


@pytest.mark.parametrize("level", [0, 12, 128, 255])
def test_empty_scene_counts_almost_nobody(counter, level):
    """A covered lens, a dark platform at night, an overexposed view: nobody there."""
    flat = np.full((480, 640), level, np.uint8)
    assert counter.count(Frame(flat, PixelFormat.GRAY, 0.0, 0)).total < 0.5


def test_dark_noisy_frame_counts_almost_nobody(counter):
    noise = np.random.default_rng(0).normal(15, 6, (480, 640))
    dark = np.clip(noise, 0, 255).astype(np.uint8)
    assert counter.count(Frame(dark, PixelFormat.GRAY, 0.0, 0)).total < 0.5


def test_luma_plane_counts_like_the_gray_frame():
    """A picamera2 I420 buffer's luma plane gives the same count as the gray image."""
    path = shared_path("data", "mall", "train", "images", "seq_000700.jpg")
    gray = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    i420 = np.vstack([gray, np.full((gray.shape[0] // 2, gray.shape[1]), 90, np.uint8)])
    counter = load_counter(ModelConfig(path=CARD, num_threads=1, mirror="off"), HALVES)
    a = counter.count(Frame(gray, PixelFormat.GRAY, 0.0, 0))
    b = counter.count(Frame(i420, PixelFormat.YUV420, 0.0, 1))
    assert a.total == pytest.approx(b.total, abs=1e-6)
    assert a.zones["left"] + a.zones["right"] == pytest.approx(a.total, rel=1e-4)


def _val_records(dataset):
    data = training_module("data")
    folder = shared_path("data", dataset, "train")
    return folder, data.split(dataset, data.read_labels(folder))[1]


def _mae(counter, folder, records):
    errors = []
    for i, r in enumerate(records):
        bgr = cv2.imread(str(folder / r["image"]), cv2.IMREAD_COLOR)
        assert bgr is not None, r["image"]
        errors.append(counter.count(Frame(bgr, PixelFormat.BGR, float(i), i)).total - r["count"])
    return float(np.mean(np.abs(errors)))


@pytest.mark.slow
def test_mall_validation_frames(counter):
    folder, records = _val_records("mall")
    assert len(records) == 200
    mae = _mae(counter, folder, records[::5])
    assert mae < MALL_MAE_BOUND, f"Mall val MAE {mae:.2f}"


@pytest.mark.slow
def test_shanghaitech_b_validation_images(counter):
    folder, records = _val_records("shanghaitech_b")
    assert len(records) == 80
    mae = _mae(counter, folder, records)
    assert mae < SHB_MAE_BOUND, f"ShanghaiTech B val MAE {mae:.2f}"
