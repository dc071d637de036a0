"""A slimmer network cut out of trained weights (models/training/prune.py),
checked with numpy alone on a seeded "m+" network and a real Mall frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import numpy_density
from shared_data import shared_path, training_module

arch = training_module("arch")
from_tflite = training_module("from_tflite")
prune = training_module("prune")

SOURCE, TARGET = "m+", "m+half"


@pytest.fixture(scope="module")
def source_arrays() -> dict[str, np.ndarray]:
    """Weights of a seeded SOURCE network in train_torch's layout (He-scaled
    kernels, the raw 0..255 input scaled down, positive biases so that most
    units are active, BatchNorms as identities)."""
    rng = np.random.default_rng(7)
    channels = arch.channels(SOURCE)
    arrays = {}
    for layer in arch.layers_of(SOURCE):
        if not isinstance(layer, (arch.Conv, arch.Density)):
            continue
        k = layer.kernel if isinstance(layer, arch.Conv) else 1
        cin, cout = channels[layer.source], channels[layer.name]
        scale = np.sqrt(2.0 / (k * k * cin)) / (128.0 if layer.source == arch.INPUT else 1.0)
        arrays[f"{layer.name}/kernel"] = rng.normal(0.0, scale, (k, k, cin, cout)).astype(np.float32)
        if isinstance(layer, arch.Density):
            arrays[f"{layer.name}/bias"] = np.full(1, 0.01, np.float32)
            continue
        arrays.update(from_tflite.identity_batch_norm(layer.name, rng.uniform(0.05, 0.3, cout)))
    return arrays


def _mall_gray(n: int) -> np.ndarray:
    """Mall training frame `n` at the model's 512x384, gray."""
    path = shared_path("data", "mall", "train", "images", f"seq_{n:06d}.jpg")
    return cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (512, 384)), cv2.COLOR_BGR2GRAY)


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    """A crowded Mall frame at the model's 512x384, gray."""
    return _mall_gray(700)


def _folded(arch_name: str, arrays) -> dict:
    """(kernel, bias) per convolution with its BatchNorm folded in."""
    folded = {}
    for layer in arch.layers_of(arch_name):
        if isinstance(layer, arch.Density):
            folded[layer.name] = (arrays[f"{layer.name}/kernel"], arrays[f"{layer.name}/bias"])
        elif isinstance(layer, arch.Conv):
            bn = {w: arrays[f"{layer.name}_bn/{w}"] for w in ("gamma", "beta", "moving_mean", "moving_variance")}
            scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + arch.BN_EPSILON)
            folded[layer.name] = (arrays[f"{layer.name}/kernel"] * scale,
                                  bn["beta"] - bn["moving_mean"] * scale)
    return folded


def _activity(arch_name: str, arrays, gray) -> dict[str, np.ndarray]:
    return {name: np.abs(t).mean((0, 1))
            for name, t in numpy_density.tensors(arch_name, _folded(arch_name, arrays), gray).items()}


def _cut_channels(seed: int = 0) -> dict[str, np.ndarray]:
    """Per channel group that TARGET narrows, a random choice of channels to cut."""
    rng = np.random.default_rng(seed)
    have, want = arch.channels(SOURCE), arch.channels(TARGET)
    cut = {}
    for name, group in prune.channel_groups(SOURCE).items():
        if want[name] < have[name] and group not in cut:
            cut[group] = np.sort(rng.choice(have[name], have[name] - want[name], replace=False))
    return cut


def _readers(arch_name: str, group_of: dict, group: str):
    """The convolutions that read a tensor of `group`."""
    return [l for l in arch.layers_of(arch_name)
            if isinstance(l, (arch.Conv, arch.Density)) and l.source != arch.INPUT
            and group_of[l.source] == group]


def test_channels_joined_by_an_add_are_cut_together():
    group = prune.channel_groups(SOURCE)
    assert group["s8b"] == group["s16d"] == group["up"] == group["fuse"]
    assert group["s16b"] == group["s32d"] == group["up32"] == group["fuse16"]
    assert len({group["s8a"], group["s8b"], group["s16b"], group["s16c"], group["head1"]}) == 5


def test_the_channels_that_pass_nothing_on_are_cut_and_the_density_map_stays_the_same(source_arrays, gray):
    arrays = dict(source_arrays)
    group_of = prune.channel_groups(SOURCE)
    cut = _cut_channels()
    for group, channels in cut.items():
        for reader in _readers(SOURCE, group_of, group):
            key = f"{reader.name}/kernel"
            arrays[key] = arrays[key].copy()
            arrays[key][:, :, channels] = 0.0

    activity = _activity(SOURCE, arrays, gray)
    keep = prune.kept_channels(SOURCE, TARGET, arrays, activity)

    for name, group in group_of.items():
        if group in cut:
            assert len(keep[name]) == arch.channels(TARGET)[name]
            dropped = np.setdiff1d(np.arange(arch.channels(SOURCE)[name]), keep[name])
            # Each is unread, or silent on this frame (zeroed weights can silence a reader).
            silent = np.flatnonzero(activity[name] == 0)
            assert np.setdiff1d(dropped, np.union1d(cut[group], silent)).size == 0, name
    slim = prune.slimmed(SOURCE, TARGET, arrays, keep, activity)
    full_map = numpy_density.density(SOURCE, _folded(SOURCE, arrays), gray)
    slim_map = numpy_density.density(TARGET, _folded(TARGET, slim), gray)
    assert full_map.sum() > 10.0  # a map with something in it
    np.testing.assert_allclose(slim_map, full_map, rtol=1e-4, atol=1e-5)


def test_a_cut_channel_leaves_what_it_added_on_average_in_the_next_bias(source_arrays, gray):
    """Cut channels that are constant (a zero kernel, a bias in ReLU6's range)
    and read through the centre tap only add the same everywhere, so moving
    their mean into the readers' biases keeps the network's function exactly."""
    arrays = dict(source_arrays)
    group_of = prune.channel_groups(SOURCE)
    cut = _cut_channels(seed=1)
    rng = np.random.default_rng(2)
    for group, channels in cut.items():
        for layer in arch.layers_of(SOURCE):
            if isinstance(layer, arch.Conv) and group_of[layer.name] == group:
                arrays[f"{layer.name}/kernel"] = arrays[f"{layer.name}/kernel"].copy()
                arrays[f"{layer.name}/kernel"][..., channels] = 0.0
                arrays[f"{layer.name}_bn/beta"] = arrays[f"{layer.name}_bn/beta"].copy()
                arrays[f"{layer.name}_bn/beta"][channels] = 0.5
        for reader in _readers(SOURCE, group_of, group):
            key = f"{reader.name}/kernel"
            arrays[key] = arrays[key].copy()
            k = arrays[key].shape[0]
            arrays[key][:, :, channels] = 0.0
            arrays[key][k // 2, k // 2, channels] = rng.normal(0.0, 0.05, (len(channels), arrays[key].shape[3]))
    keep = {name: np.setdiff1d(np.arange(n), cut[group_of[name]]) if group_of[name] in cut else np.arange(n)
            for name, n in arch.channels(SOURCE).items()}
    activity = _activity(SOURCE, arrays, gray)
    full_map = numpy_density.density(SOURCE, _folded(SOURCE, arrays), gray)

    slim = prune.slimmed(SOURCE, TARGET, arrays, keep, activity)
    slim_map = numpy_density.density(TARGET, _folded(TARGET, slim), gray)
    dropped = prune.slimmed(SOURCE, TARGET, arrays, keep, {k: 0.0 * v for k, v in activity.items()})
    dropped_map = numpy_density.density(TARGET, _folded(TARGET, dropped), gray)

    np.testing.assert_allclose(slim_map, full_map, rtol=1e-4, atol=1e-5)
    assert abs(dropped_map.sum() - full_map.sum()) > 0.05 * full_map.sum()  # without the move it counts otherwise


def test_a_network_that_is_not_the_source_with_fewer_channels_is_refused(source_arrays, gray):
    activity = _activity(SOURCE, source_arrays, gray)
    with pytest.raises(ValueError, match="m\\+x2 is not m\\+ with fewer channels"):
        prune.kept_channels(SOURCE, "m+x2", source_arrays, activity)
    with pytest.raises(ValueError, match="s is not m\\+ with fewer channels"):
        prune.kept_channels(SOURCE, "s", source_arrays, activity)


def test_weights_of_another_network_are_refused_naming_the_weight(source_arrays):
    prune.check_weights(source_arrays, SOURCE)
    narrow = dict(source_arrays, **{"s16c/kernel": source_arrays["s16c/kernel"][..., :76]})
    with pytest.raises(ValueError, match=r"s16c/kernel is \(3, 3, 128, 76\), m\+ has \(3, 3, 128, 128\)"):
        prune.check_weights(narrow, SOURCE)
    with pytest.raises(ValueError, match="no head2/kernel"):
        prune.check_weights({k: v for k, v in source_arrays.items() if k != "head2/kernel"}, SOURCE)


def test_the_training_networks_activity_is_the_numpy_networks(source_arrays, gray):
    torch = pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
    torch_net = training_module("torch_net")
    net = torch_net.DensityNet(SOURCE)
    torch_net.load_keras_arrays(net, source_arrays)
    with torch.no_grad():
        got = prune.mean_activity(net, gray[None, :, :, None].astype(np.float32))
    expected = _activity(SOURCE, source_arrays, gray)
    assert set(got) == set(expected)
    for name in set(expected) - {"density"}:  # linear in training, ReLU in the numpy network
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4, err_msg=name)


def _mall_frames(count: int) -> np.ndarray:
    """`count` Mall training frames at 512x384, gray, N x h x w x 1, then their mirror images."""
    frames = [_mall_gray(n) for n in range(1, 601, 600 // count)[:count]]
    frames += [f[:, ::-1] for f in frames]
    return np.stack(frames)[..., None].astype(np.float32)


def _torch_nets(source_arrays, slim_arrays):
    torch_net = training_module("torch_net")
    wide, slim = torch_net.DensityNet(SOURCE), torch_net.DensityNet(TARGET)
    torch_net.load_keras_arrays(wide, source_arrays)
    torch_net.load_keras_arrays(slim, slim_arrays)
    return wide, slim


def _map(net, frame: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(frame[None].transpose(0, 3, 1, 2)))).numpy()


def test_a_refit_cut_reproduces_channels_that_copied_kept_ones_where_the_plain_cut_cannot(source_arrays):
    """Each cut channel made a copy of a kept one: the full network is then
    exactly the slim one with the copy's readers' weights added to the
    original's, a solution the least squares must find, while keeping the
    readers' weights to the kept channels as they were misses the copies."""
    pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
    arrays = dict(source_arrays)
    group_of = prune.channel_groups(SOURCE)
    cut = _cut_channels(seed=3)
    rng = np.random.default_rng(4)
    for group, channels in cut.items():
        kept = np.setdiff1d(np.arange(arch.channels(SOURCE)[group]), channels)
        original = rng.choice(kept, len(channels))
        for layer in arch.layers_of(SOURCE):
            if isinstance(layer, arch.Conv) and group_of[layer.name] == group:
                for key in (f"{layer.name}/kernel",) + tuple(
                        f"{layer.name}_bn/{w}" for w in ("gamma", "beta", "moving_mean", "moving_variance")):
                    arrays[key] = arrays[key].copy()
                    arrays[key][..., channels] = arrays[key][..., original]
    keep = {name: np.setdiff1d(np.arange(n), cut[group_of[name]]) if group_of[name] in cut else np.arange(n)
            for name, n in arch.channels(SOURCE).items()}
    frames = _mall_frames(4)
    activity = {name: np.zeros(n) for name, n in arch.channels(SOURCE).items()}
    wide, plain = _torch_nets(arrays, prune.slimmed(SOURCE, TARGET, arrays, keep, activity))
    _, refit = _torch_nets(arrays, prune.slimmed(SOURCE, TARGET, arrays, keep, activity))

    refitted = prune.refit(wide, refit, keep, frames[[0, 1, 2, 4, 5, 6]], batch=2)

    assert refitted[0] == "s8a" and refitted[-1] == "density"  # from the first cut on
    held_out = frames[3]  # neither it nor its mirror image fitted
    full = _map(wide, held_out)
    assert full.sum() > 10.0
    scale = np.abs(full).max()
    assert np.abs(_map(refit, held_out) - full).max() < 0.01 * scale
    assert np.abs(_map(plain, held_out) - full).max() > 0.1 * scale


def test_a_refit_cut_counts_a_new_frame_closer_to_the_full_network_than_the_plain_cut(source_arrays, gray):
    pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
    activity = _activity(SOURCE, source_arrays, gray)
    keep = prune.kept_channels(SOURCE, TARGET, source_arrays, activity)
    wide, plain = _torch_nets(source_arrays, prune.slimmed(SOURCE, TARGET, source_arrays, keep, activity))
    _, refit = _torch_nets(source_arrays, prune.slimmed(SOURCE, TARGET, source_arrays, keep, activity))

    prune.refit(wide, refit, keep, _mall_frames(4), batch=4)

    frame = gray[None, :, :, None].astype(np.float32)[0]  # seq_000700, not among the fitted frames
    full = _map(wide, frame)
    refit_error = np.abs(_map(refit, frame) - full).mean()
    plain_error = np.abs(_map(plain, frame) - full).mean()
    assert refit_error < 0.5 * plain_error
