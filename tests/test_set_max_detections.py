"""models/tools/set_max_detections.py on the real SSD: rewrite, read back, count more."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys

import cv2
import pytest
from ai_edge_litert.interpreter import Interpreter

from crowdsign.config import ModelConfig, ZoneConfig
from crowdsign.counting.counter import load_counter
from crowdsign.counting.modelcard import load_model_card
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry
from shared_data import REPO, shared_path

TOOL = REPO / "models/tools/set_max_detections.py"
CARD = REPO / "models/cards/ssd_mobilenet_v1_coco_quant.toml"
ALL = ZoneGeometry([ZoneConfig("all", ((0, 0), (1, 0), (1, 1), (0, 1)))])


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("set_max_detections", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_raise_cap_to_100(tool, tmp_path):
    source = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    before = _digest(source)
    out = tmp_path / "ssd_max100.tflite"
    tool.set_max_detections(source, 100, out, card=CARD)
    assert _digest(source) == before

    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    shapes = sorted(tuple(d["shape"]) for d in interpreter.get_output_details())
    assert shapes == [(1,), (1, 100), (1, 100), (1, 100, 4)]

    card = load_model_card(out.with_suffix(".toml"))
    assert card.file == out and card.max_detections == 100 and card.labels[1] == "person"

    image = cv2.imread(str(shared_path("data", "mall", "train", "images", "seq_000001.jpg")))
    frame = Frame(image, PixelFormat.BGR, 0.0, 0)
    capped = load_counter(ModelConfig(path=CARD), ALL).count(frame).total
    raised = load_counter(ModelConfig(path=out.with_suffix(".toml")), ALL).count(frame).total
    assert capped == 10
    assert raised > 15  # 29 people in this frame


def test_cli_round_trip_and_errors(tmp_path):
    source = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    out = tmp_path / "m.tflite"
    ok = subprocess.run([sys.executable, str(TOOL), str(source), "--max", "25", "-o", str(out)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert not out.with_suffix(".toml").exists()
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    assert (1, 25, 4) in [tuple(d["shape"]) for d in interpreter.get_output_details()]

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    bad = subprocess.run([sys.executable, str(TOOL), str(junk), "--max", "100", "-o",
                          str(tmp_path / "x.tflite")], capture_output=True, text=True)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and str(junk) in bad.stderr
    assert not (tmp_path / "x.tflite").exists()


def test_refuses_a_model_without_postprocess_op(tool, tmp_path):
    source = shared_path("models", "yolox_nano_320_float32.tflite")
    with pytest.raises(tool.ToolError, match="TFLite_Detection_PostProcess"):
        tool.set_max_detections(source, 100, tmp_path / "y.tflite")
    with pytest.raises(tool.ToolError, match="must not be the input"):
        tool.set_max_detections(source, 100, source)
