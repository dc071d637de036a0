"""`crowdsign bench`: models compared on labelled images through the daemon's own counter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crowdsign.counting.macs import count_macs, op_macs
from shared_data import shared_path

REPO = Path(__file__).resolve().parents[1]
SSD_CARD = REPO / "models" / "cards" / "ssd_mobilenet_v1_coco_quant.toml"
YOLOX_CARD = REPO / "models" / "cards" / "yolox_nano_320_float32.toml"
DENSITY_CARD = REPO / "models" / "crowdsign_density_gray" / "crowdsign_density_gray.toml"


@pytest.fixture
def mall_sample(tmp_path) -> Path:
    """Six labelled Mall frames in a folder of their own, as `--data` expects."""
    source = shared_path("data", "mall", "train")
    lines = (source / "labels.jsonl").read_text().splitlines()[:6]
    (tmp_path / "images").mkdir()
    for line in lines:
        name = json.loads(line)["image"]
        (tmp_path / name).symlink_to(source / name)
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowdsign", "bench", *args],
                          capture_output=True, text=True, timeout=300)


def test_bench_reports_accuracy_speed_and_macs_per_model(mall_sample):
    truth = [json.loads(l)["count"] for l in (mall_sample / "labels.jsonl").read_text().splitlines()]
    result = bench("--data", str(mall_sample), "--model", str(SSD_CARD),
                   "--model", str(YOLOX_CARD), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["model"] for r in rows] == ["ssd_mobilenet_v1_coco_quant", "yolox_nano_320_float32"]
    for r in rows:
        assert set(r) == {"model", "frames", "mae", "rmse", "bias", "ms_median", "ms_p95", "macs"}
        assert r["frames"] == 6
        assert r["rmse"] >= r["mae"] >= abs(r["bias"])
        assert r["ms_p95"] >= r["ms_median"] > 0
    ssd, yolox = rows
    # The shipped SSD stops at 10 people, and every one of these frames has more.
    assert min(truth) > 10
    assert ssd["bias"] == pytest.approx(10 - sum(truth) / len(truth), abs=1.0)
    assert 0.29e9 < yolox["macs"] < 0.33e9  # YOLOX-nano: 1.08 GFLOPs at 416, so ~0.31 GMAC at 320


def test_tiles_multiply_the_invokes_of_detectors(mall_sample):
    one = json.loads(bench("--data", str(mall_sample), "--model", str(YOLOX_CARD),
                           "--json", "--limit", "3").stdout)
    four = json.loads(bench("--data", str(mall_sample), "--model", str(YOLOX_CARD),
                            "--json", "--limit", "3", "--tiles", "2x2").stdout)
    assert four["model"] == "yolox_nano_320_float32 2x2" and four["frames"] == 3
    assert four["macs"] == 4 * one["macs"]


def test_mirror_both_averages_each_image_with_its_mirror_at_twice_the_macs(mall_sample):
    plain = json.loads(bench("--data", str(mall_sample), "--model", str(DENSITY_CARD),
                             "--json", "--limit", "3", "--mirror", "off").stdout)
    assert plain["model"] == "crowdsign_density_gray"
    result = bench("--data", str(mall_sample), "--model", str(DENSITY_CARD),
                   "--json", "--limit", "3", "--mirror", "both")
    assert result.returncode == 0, result.stderr
    both = json.loads(result.stdout)
    assert both["model"] == "crowdsign_density_gray +mirror" and both["frames"] == 3
    assert both["macs"] == 2 * plain["macs"]
    assert both["bias"] != plain["bias"]


def test_each_model_counts_the_views_its_card_names_unless_told(mall_sample):
    """The shipped card says `mirror = "both"`, the detector's card nothing (off)."""
    result = bench("--data", str(mall_sample), "--model", str(YOLOX_CARD),
                   "--model", str(DENSITY_CARD), "--json", "--limit", "2")
    assert result.returncode == 0, result.stderr
    detector, density = (json.loads(line) for line in result.stdout.splitlines())
    assert detector["model"] == "yolox_nano_320_float32"
    assert density["model"] == "crowdsign_density_gray +mirror"


def test_one_mirror_per_model_mirrors_only_the_models_it_is_given_for(mall_sample):
    """A model meant to count both views, timed beside a detector's one pass."""
    result = bench("--data", str(mall_sample), "--model", str(YOLOX_CARD), "--mirror", "off",
                   "--model", str(DENSITY_CARD), "--mirror", "both", "--json", "--limit", "2")
    assert result.returncode == 0, result.stderr
    detector, density = (json.loads(line) for line in result.stdout.splitlines())
    assert detector["model"] == "yolox_nano_320_float32"
    assert density["model"] == "crowdsign_density_gray +mirror"


def test_as_many_mirrors_as_models_or_one_else_refused(mall_sample):
    result = bench("--data", str(mall_sample), "--model", str(YOLOX_CARD), "--model", str(DENSITY_CARD),
                   "--model", str(DENSITY_CARD), "--mirror", "off", "--mirror", "both", "--json")
    assert result.returncode == 2
    assert result.stderr.strip() == ("crowdsign: --mirror: give it once for every model or once "
                                     "per --model (3), got 2")
    assert result.stdout == ""


def test_models_with_the_same_file_name_are_reported_apart(mall_sample, tmp_path):
    """A candidate exported under the shipped model's name, compared with it."""
    shipped = REPO / "models" / "crowdsign_density_gray" / "crowdsign_density_gray.toml"
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    for name in ("crowdsign_density_gray.toml", "crowdsign_density_gray.tflite"):
        (candidate / name).write_bytes((shipped.parent / name).read_bytes())
    result = bench("--data", str(mall_sample), "--model", str(shipped),
                   "--model", str(candidate / shipped.name), "--model", str(shipped), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["model"] for r in rows] == [
        "crowdsign_density_gray +mirror", "candidate/crowdsign_density_gray +mirror",
        "crowdsign_density_gray/crowdsign_density_gray +mirror"]
    assert [r["frames"] for r in rows] == [6, 6, 6]
    assert rows[0]["mae"] == rows[1]["mae"] == rows[2]["mae"]


def test_bench_names_a_folder_without_labels_and_a_bad_tiles_value(tmp_path):
    result = bench("--data", str(tmp_path), "--model", str(SSD_CARD))
    assert result.returncode == 2
    assert result.stderr.strip() == f"crowdsign: {tmp_path / 'labels.jsonl'}: no labels.jsonl in the data folder"
    result = bench("--data", str(tmp_path), "--model", str(SSD_CARD), "--tiles", "two")
    assert result.returncode == 2 and "--tiles" in result.stderr


def test_macs_of_convolutions_come_from_their_shapes():
    shapes = {0: (1, 32, 32, 8), 1: (16, 3, 3, 8), 2: (1, 16, 16, 16), 3: (1, 3, 3, 16)}
    conv = {"op_name": "CONV_2D", "inputs": [0, 1, -1], "outputs": [2]}
    assert op_macs(conv, shapes) == 16 * 16 * 16 * 3 * 3 * 8
    depthwise = {"op_name": "DEPTHWISE_CONV_2D", "inputs": [2, 3, -1], "outputs": [2]}
    assert op_macs(depthwise, shapes) == 16 * 16 * 16 * 3 * 3
    assert op_macs({"op_name": "ADD", "inputs": [2, 2], "outputs": [2]}, shapes) == 0


def test_macs_of_the_ssd_are_those_of_mobilenet_v1_at_300_plus_its_heads():
    # The starter model is MobileNet v1 at depth 0.75 (24 filters in its first
    # convolution): 325 M MACs at 224x224, 585 M at 300x300, plus the SSD heads.
    macs = count_macs(shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite"))
    assert 0.6e9 < macs < 0.8e9
