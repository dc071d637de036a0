"""models/training/torch_net.py and train_torch's log: the ceiling a capped head puts
on one output cell (PyTorch, the train-torch extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared_data import training_module

torch = pytest.importorskip("torch", reason="the train-torch extra (PyTorch) is not installed")
cv2 = pytest.importorskip("cv2")
torch_net = training_module("torch_net")
train_torch = training_module("train_torch")


def _bright_frame():
    """A frame that drives every unit of a random network hard."""
    return torch.full((1, 1, 96, 128), 255.0)


@pytest.mark.parametrize("stride, size", [(1, (12, 16)), (1, (11, 13)), (2, (12, 16)), (2, (11, 13))])
def test_a_convolution_pads_as_tensorflow_whichever_way_it_pads(stride, size):
    """Symmetric padding goes to the convolution itself, asymmetric (stride 2 on
    an even side: the extra row and column at the bottom and right) through an
    explicit pad; both must equal TensorFlow's 'same' padding written out."""
    arch = training_module("arch")
    torch.manual_seed(0)
    layer = torch_net.ConvBnRelu6(3, arch.Conv("c", "x", 4, stride=stride, cap=None)).eval()
    x = torch.randn(2, 3, *size, requires_grad=True)
    top, bottom = arch.same_padding(size[0], 3, stride)
    left, right = arch.same_padding(size[1], 3, stride)
    expected = torch.relu(layer.bn(torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (left, right, top, bottom)), layer.conv.weight, stride=stride)))
    got = layer(x)
    assert got.shape == expected.shape == (2, 4, -(-size[0] // stride), -(-size[1] // stride))
    assert torch.allclose(got, expected, atol=1e-6)
    grad_got, = torch.autograd.grad(got.sum(), x)
    grad_expected, = torch.autograd.grad(expected.sum(), x)
    assert torch.allclose(grad_got, grad_expected, atol=1e-6)


def test_a_capped_head_never_puts_more_than_its_ceiling_in_a_cell():
    """The ceiling counts the positive weights only: the units behind negative
    ones do most for a cell when they are off."""
    torch.manual_seed(0)
    net = torch_net.DensityNet("m").eval()
    head, hidden = net.convs["density"], net.convs["head2"].bn
    sign = torch.tensor([1.0, -1.0]).repeat(16)
    with torch.no_grad():
        head.weight.copy_(head.weight.abs().mul(50.0) * sign.view(1, -1, 1, 1))
        hidden.bias.copy_(100.0 * sign)  # units of positive weight at their cap of 6, the others off
        reached = net(_bright_frame())
        hidden.bias.copy_(1e4 * sign)
        pushed = net(_bright_frame())  # driven harder still: nothing more comes out
    ceiling = net.cell_ceiling()
    assert reached.max().item() == pytest.approx(ceiling, rel=1e-4)
    assert pushed.max().item() == pytest.approx(ceiling, rel=1e-4)


def test_an_open_head_has_no_ceiling():
    assert torch_net.DensityNet("m+").cell_ceiling() is None


def _tiny_mall(root):
    """Six 640x480 frames in Mall's naming: four before frame 600 (training), two after
    (validation), a few head points each."""
    folder = root / "mall" / "train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(folder / "labels.jsonl", "w", encoding="utf-8") as f:
        for frame in (1, 2, 3, 4, 601, 602):
            name = f"seq_{frame:06d}.jpg"
            cv2.imwrite(str(folder / name), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
            points = rng.uniform([0, 0], [639, 479], (5, 2)).tolist()
            f.write(json.dumps({"image": name, "count": 5, "points": points}) + "\n")
    return root


@pytest.mark.parametrize("arch, capped", [("m", True), ("m+", False)])
def test_a_bayesian_loss_run_logs_the_ceiling_and_warns_of_a_capped_head(tmp_path, capsys, arch, capped):
    data = _tiny_mall(tmp_path / "data")
    out = tmp_path / "run"
    train_torch.main(["--data", str(data), "--out", str(out), "--arch", arch, "--epochs", "1",
                      "--steps", "2", "--warmup", "1", "--batch", "4", "--workers", "0",
                      "--device", "cpu", "--seed", "1", "--bayes", "1"])
    printed = capsys.readouterr().out
    row = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert set(row["val"]) == {"mall"}
    if capped:
        assert "warning: --bayes on arch 'm'" in printed
        assert row["ceiling"]["people_a_cell"] > 0
        assert isinstance(row["ceiling"]["val_cells_at_it"], int)
    else:
        assert "warning" not in printed
        assert row["ceiling"] == {"people_a_cell": None, "val_cells_at_it": None}


def test_dense_ref_weighs_a_crowded_patch_of_the_bayesian_loss_as_one_of_dense_ref_heads():
    """Two patches: one head, and four. With --dense-ref 2 the second patch's loss
    counts half; the one-head patch is left as it is."""
    bayes_loss = training_module("bayes_loss")
    density = torch.rand(2, 1, 6, 8)
    nan = float("nan")
    points = torch.tensor([[[10.0, 10.0], [nan, nan], [nan, nan], [nan, nan]],
                           [[5.0, 5.0], [20.0, 9.0], [30.0, 30.0], [40.0, 12.0]]])
    per_patch = bayes_loss.bayesian_loss(density, points, 8, 8.0, 768.0)

    def loss(dense_ref):
        return float(train_torch.dense_weighted_bayesian_loss(density, points, 8.0, 768.0, dense_ref))

    assert loss(0.0) == pytest.approx(float(per_patch.mean()))
    assert loss(2.0) == pytest.approx(float((per_patch[0] + per_patch[1] * 0.5) / 2))
    assert loss(10.0) == pytest.approx(loss(0.0))


def test_patch_count_error_compares_each_patch_sum_with_its_head_points():
    nan = float("nan")
    density = torch.zeros(2, 1, 4, 4)
    density[0, 0, 0, 0] = 3.0  # 3 people for 1 head
    density[1, 0, 2, 2] = 1.5  # 1.5 people for 2 heads
    points = torch.tensor([[[1.0, 1.0], [nan, nan]], [[4.0, 4.0], [9.0, 9.0]]])
    assert float(train_torch.patch_count_error(density, points)) == pytest.approx((2.0 + 0.5) / 2)


def test_density_from_gives_the_density_terms_only_to_crowded_patches():
    """A sparse patch (1 person) and a dense one (40), both predicted wrong. With
    --density-from 10 the sparse patch keeps only the negative-output term (zero
    here), so the loss is the dense patch's share alone."""
    y = torch.zeros(2, 1, 6, 8)
    y[0, 0, 1, 1] = 1.0
    y[1] = 40.0 / 48
    p = torch.full((2, 1, 6, 8), 0.5)

    def loss(density_from, which=slice(None)):
        return float(train_torch.patch_loss(p[which], y[which], density_from=density_from)[0])

    assert loss(0.0) > loss(10.0) > 0
    assert loss(10.0) == pytest.approx(loss(0.0, slice(1, 2)) / 2)
    assert loss(100.0) == 0.0


def test_density_on_gives_the_density_terms_only_to_the_marked_patches():
    """--density-on marks each patch 1 (its dataset gets the density-map terms) or
    0; an unmarked patch keeps only the negative-output term (zero here)."""
    y = torch.full((2, 1, 6, 8), 0.25)
    p = torch.full((2, 1, 6, 8), 0.5)

    def loss(on, which=slice(None)):
        return float(train_torch.patch_loss(p[which], y[which], density_on=on)[0])

    assert loss(None) > 0
    assert loss(torch.tensor([1.0, 1.0])) == pytest.approx(loss(None))
    assert loss(torch.tensor([0.0, 1.0])) == pytest.approx(loss(None, slice(1, 2)) / 2)
    assert loss(torch.tensor([0.0, 0.0])) == 0.0


def test_the_patch_stream_marks_the_patches_of_the_density_on_datasets(tmp_path):
    """Each batch carries one mark a patch: 1 for a patch of a --density-on dataset,
    0 for another dataset's or a people-free patch; 1 for every patch without the option."""
    data_module = training_module("data")
    data = _tiny_mall(tmp_path / "data")
    train, _ = data_module.load_split(data)
    train["shanghaitech_b"] = train["mall"][:2]

    def marks(density_on):
        stream = train_torch.Patches(train, 32, seed=1, start=0, stop=1, empty_share=0.2,
                                     density_on=density_on)
        return next(iter(stream))[2]

    sources = data_module.PatchSampler(train, np.random.default_rng([1, 0]), empty_share=0.2).batch(
        32, sources=True)[2]
    assert set(sources) == {"mall", "shanghaitech_b", ""}
    np.testing.assert_array_equal(marks(("shanghaitech_b",)).numpy(), sources == "shanghaitech_b")
    np.testing.assert_array_equal(marks(()).numpy(), np.ones(32))


def test_density_on_a_dataset_the_run_does_not_train_on_is_refused(tmp_path):
    data = _tiny_mall(tmp_path / "data")
    with pytest.raises(SystemExit, match="--density-on shanghaitech_a: not a dataset of this run"):
        train_torch.main(["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                          "--steps", "1", "--device", "cpu", "--workers", "0",
                          "--density-on", "shanghaitech_a"])


def test_cosine_epochs_stops_the_run_partway_down_a_longer_learning_rate_cosine(tmp_path):
    data = _tiny_mall(tmp_path / "data")

    def last_lr(*extra):
        out = tmp_path / ("run" + "".join(extra))
        train_torch.main(["--data", str(data), "--out", str(out), "--epochs", "1", "--steps", "4",
                          "--warmup", "1", "--batch", "2", "--lr", "1e-3", "--device", "cpu",
                          "--workers", "0", *extra])
        return json.loads((out / "log.jsonl").read_text().splitlines()[-1])["lr"]

    # The last step is step 3: of a 4-step cosine near its end, of an 8-step one near its middle.
    assert last_lr() == pytest.approx(1e-3 * train_torch.lr_factor(3, 1, 4))
    assert last_lr("--cosine-epochs", "2") == pytest.approx(1e-3 * train_torch.lr_factor(3, 1, 8))
    assert last_lr("--cosine-epochs", "2") > 2 * last_lr()


def test_a_cosine_shorter_than_the_run_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        train_torch.parse_args(["--data", "d", "--out", "o", "--epochs", "3", "--cosine-epochs", "2"])
    with pytest.raises(SystemExit):
        train_torch.parse_args(["--data", "d", "--out", "o", "--minutes", "3", "--cosine-epochs", "2"])


def test_small_patches_train_the_first_epochs_on_half_side_patches_then_full_ones(tmp_path):
    """--small-patches E: the steps of the first E epochs make 128x96 patches (a quarter
    of the compute), the later steps 256x192; head points stay inside their patch."""
    data_module = training_module("data")
    data = _tiny_mall(tmp_path / "data")
    train, _ = data_module.load_split(data)
    stream = train_torch.Patches(train, 3, seed=1, start=0, stop=4, empty_share=0.0,
                                 points=True, small_until=2)
    batches = list(stream)
    sizes = [tuple(x.shape[1:3]) for x, *_ in batches]
    assert sizes == [(96, 128), (96, 128), (192, 256), (192, 256)]
    for x, y, _, points in batches:
        assert tuple(y.shape[1:3]) == (x.shape[1] // 8, x.shape[2] // 8)
        inside = points[~torch.isnan(points).any(-1)]
        assert bool(((inside >= 0) & (inside < torch.tensor([x.shape[2], x.shape[1]]))).all())


def test_patch_sets_the_training_patch_and_its_half_side_small_patches(tmp_path):
    """--patch 384x288: the patch stream cuts patches of that size, and --small-patches
    halves that size, not the default patch's; targets stay at an eighth of the side."""
    data_module = training_module("data")
    data = _tiny_mall(tmp_path / "data")
    train, _ = data_module.load_split(data)
    stream = train_torch.Patches(train, 2, seed=1, start=0, stop=3, empty_share=0.0,
                                 points=True, small_until=1, patch=(384, 288))
    batches = list(stream)
    assert [tuple(x.shape[1:3]) for x, *_ in batches] == [(144, 192), (288, 384), (288, 384)]
    for x, y, *_ in batches:
        assert tuple(y.shape[1:3]) == (x.shape[1] // 8, x.shape[2] // 8)
    assert train_torch.parse_args(["--data", "d", "--out", "o", "--epochs", "1",
                                   "--patch", "384x288"]).patch == (384, 288)
    with pytest.raises(SystemExit):
        train_torch.parse_args(["--data", "d", "--out", "o", "--epochs", "1", "--patch", "300x200"])


def test_a_run_with_small_patches_trains_and_validates_on_whole_images(tmp_path):
    data = _tiny_mall(tmp_path / "data")
    out = tmp_path / "run"
    train_torch.main(["--data", str(data), "--out", str(out), "--arch", "m+", "--epochs", "2",
                      "--steps", "2", "--warmup", "1", "--batch", "4", "--workers", "0",
                      "--device", "cpu", "--seed", "1", "--bayes", "1", "--density-weight", "0",
                      "--small-patches", "1"])
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["val"]["mall"]["mae"]) for r in rows)
    assert (out / "best.npz").is_file()


def test_a_dm_count_run_without_the_bayesian_loss_trains_on_the_head_points(tmp_path):
    data = _tiny_mall(tmp_path / "data")
    out = tmp_path / "run"
    train_torch.main(["--data", str(data), "--out", str(out), "--arch", "m+", "--epochs", "1",
                      "--steps", "2", "--warmup", "1", "--batch", "4", "--workers", "0",
                      "--device", "cpu", "--seed", "1", "--density-weight", "0",
                      "--bayes-count", "1", "--ot", "0.1", "--ot-tv", "0.01"])
    row = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    # The count term alone is |sum - heads| per patch: a positive loss means the points arrived.
    assert np.isfinite(row["loss"]) and row["loss"] > 1.0  # 0.5 when the points do not arrive
    assert np.isfinite(row["val"]["mall"]["mae"])


def test_transport_terms_are_refused_with_a_teacher(tmp_path):
    with pytest.raises(SystemExit, match="--ot"):
        train_torch.main(["--data", str(_tiny_mall(tmp_path / "data")), "--out", str(tmp_path / "run"),
                          "--epochs", "1", "--device", "cpu", "--ot", "0.1",
                          "--teacher", str(tmp_path / "teacher.npz")])


def test_a_bf16_run_follows_the_float_run_and_saves_float32_weights(tmp_path):
    """--bf16 runs the forward pass in bfloat16 only: the same seeded steps give
    nearly the same loss, and the weights it keeps and saves stay float32."""
    data = _tiny_mall(tmp_path / "data")
    rows, weights = {}, {}
    for name, extra in (("float", []), ("bf16", ["--bf16"])):
        out = tmp_path / name
        train_torch.main(["--data", str(data), "--out", str(out), "--arch", "m+", "--epochs", "1",
                          "--steps", "2", "--warmup", "1", "--batch", "4", "--workers", "0",
                          "--device", "cpu", "--seed", "1", "--bayes", "1", "--density-weight", "0",
                          *extra])
        rows[name] = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
        weights[name] = np.load(out / "best.npz")
    assert rows["bf16"]["loss"] == pytest.approx(rows["float"]["loss"], rel=0.05)
    assert rows["bf16"]["loss"] != rows["float"]["loss"]
    assert all(weights["bf16"][k].dtype == np.float32 for k in weights["bf16"].files)


def test_the_recipe_with_bf16_trains_both_cpu_stages_in_bf16(tmp_path):
    recipe = training_module("recipe")
    data = _tiny_mall(tmp_path / "data")
    out = tmp_path / "recipe"
    recipe.main(["--cpu", "--bf16", "--smoke", "--data", str(data), "--out", str(out)])
    for stage in ("cpu", "cpu-more"):
        args = json.loads((out / stage / "state.json").read_text())["args"]
        assert args["bf16"] == "True"
        assert (out / stage / "best.npz").is_file()
    assert json.loads((out / "cpu-more" / "state.json").read_text())["args"]["init"].endswith("best.npz")


def test_the_recipe_from_nothing_cuts_v7s_first_stage_to_the_half_size_network(tmp_path):
    recipe = training_module("recipe")
    arch = training_module("arch")
    data = _tiny_mall(tmp_path / "data")
    out = tmp_path / "recipe"
    recipe.main(["--half", "--smoke", "--data", str(data), "--out", str(out)])
    init = np.load(out / "half-init.npz")
    assert init["s16c/kernel"].shape == (3, 3, 76, 76)  # m+half's, cut from m+'s 128
    assert init["s16c/kernel"].shape[3] == arch.channels("m+half")["s16c"]
    for stage, arch_name in (("cpu", "m+"), ("half", "m+half"), ("half-more", "m+half")):
        args = json.loads((out / stage / "state.json").read_text())["args"]
        assert args["arch"] == arch_name
        assert (out / stage / "best.npz").is_file()
    assert not (out / "cpu-more").exists()  # v7's second stage is not trained first
    assert json.loads((out / "half" / "state.json").read_text())["args"]["init"].endswith("half-init.npz")


# --- "m+x2": "m+" on a frame of twice the side --------------------------------

def test_m_x2_outputs_one_cell_per_16_pixels_of_its_doubled_frame():
    arch = training_module("arch")
    assert arch.output_stride("m+") == 8 and arch.output_stride("m+x2") == 16
    net = torch_net.DensityNet("m+x2").eval()
    with torch.no_grad():
        assert tuple(net(torch.zeros(1, 1, 192, 256)).shape) == (1, 1, 12, 16)
    assert arch.macs("m+x2", 1024, 768) < 1.0e9


def test_widened_weights_see_the_full_frame_as_m_plus_saw_it_halved():
    """widen.py: "m+x2"'s first two layers on a frame give what "m+"'s gave on the
    frame halved (the daemon's 0.5 resize averages 2x2 pixels), up to the one
    native pixel the 6x6 stride-4 padding shifts the window by: on a smooth frame,
    within a few per cent; the rest of the network is the same weights."""
    widen = training_module("widen")
    torch.manual_seed(3)
    small = torch_net.DensityNet("m+").eval()
    arrays = torch_net.keras_arrays(small)
    big = torch_net.DensityNet("m+x2").eval()
    torch_net.load_keras_arrays(big, widen.widen(arrays, seed=1))
    rng = np.random.default_rng(4)
    frame = cv2.GaussianBlur(rng.uniform(0, 255, (384, 512)).astype(np.float32), (0, 0), 6)
    frame = (frame - frame.min()) / np.ptp(frame) * 255
    halved = cv2.resize(frame, (256, 192), interpolation=cv2.INTER_LINEAR)

    def stem(net, image):
        with torch.no_grad():
            return net.convs["stem2"](net.convs["stem1"](torch.from_numpy(image)[None, None]))

    a, b = stem(small, halved), stem(big, frame)
    assert a.shape == b.shape == (1, 24, 48, 64)
    difference = float((b - a).abs().mean()) / float(a.abs().mean())
    assert 0 < difference < 0.05  # a shifted window, not the same computation
    later = [k for k in arrays if not k.startswith(("stem1", "stem2/"))]
    widened = torch_net.keras_arrays(big)
    assert all(np.array_equal(widened[k], arrays[k]) for k in later)


def test_head_dropout_drops_head_channels_in_training_and_is_the_identity_in_evaluation():
    torch.manual_seed(0)
    plain, dropped = torch_net.DensityNet("m+"), torch_net.DensityNet("m+", head_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 64, 96) * 255
    plain.eval(), dropped.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), dropped(x))
        plain.train(), dropped.train()
        assert torch.equal(plain(x), plain(x))
        assert not torch.allclose(dropped(x), dropped(x))
