"""Model problems become one-line ModelErrors naming the file."""

from __future__ import annotations

import os

import pytest

from crowdsign.config import ModelConfig, ZoneConfig
from crowdsign.counting.counter import load_counter
from crowdsign.counting.modelcard import ModelError, load_model_card
from crowdsign.zones import ZoneGeometry
from shared_data import REPO, shared_path
from tflite_fixtures import write_density_model

ZONES = ZoneGeometry([ZoneConfig("all", ((0, 0), (1, 0), (1, 1), (0, 1)))])
SSD_CARD = REPO / "models/cards/ssd_mobilenet_v1_coco_quant.toml"


def _error(path, **kwargs) -> str:
    with pytest.raises(ModelError) as e:
        load_counter(ModelConfig(path=path, **kwargs), ZONES)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_missing_card(tmp_path):
    path = tmp_path / "nope.toml"
    assert str(path) in _error(path)


def test_missing_tflite_file(tmp_path):
    card = write_density_model(tmp_path)
    (tmp_path / "density.tflite").unlink()
    message = _error(card)
    assert str(tmp_path / "density.tflite") in message and "not found" in message


def test_tflite_without_card(tmp_path):
    write_density_model(tmp_path)
    (tmp_path / "density.toml").unlink()
    assert "no model card" in _error(tmp_path / "density.tflite")


def test_random_bytes_are_not_a_model(tmp_path):
    card = write_density_model(tmp_path)
    (tmp_path / "density.tflite").write_bytes(os.urandom(4096))
    message = _error(card)
    assert str(tmp_path / "density.tflite") in message and "not a TFLite model" in message


def test_corrupt_flatbuffer_with_identifier(tmp_path):
    card = write_density_model(tmp_path)
    model = tmp_path / "density.tflite"
    model.write_bytes(b"\x10\x00\x00\x00TFL3" + os.urandom(2048))
    message = _error(card)
    assert str(model) in message


def test_unknown_card_key(tmp_path):
    card = write_density_model(tmp_path, extra='colour_space = "srgb"\n')
    message = _error(card)
    assert str(card) in message and "'colour_space'" in message


def test_bad_card_value(tmp_path):
    card = write_density_model(tmp_path)
    card.write_text(card.read_text().replace('kind = "density"', 'kind = "segmenter"'))
    message = _error(card)
    assert str(card) in message and "kind" in message


def test_cell_gain_on_a_detector_card_is_refused(tmp_path):
    card = tmp_path / "ssd.toml"
    text = "\n".join(line for line in SSD_CARD.read_text().splitlines()
                     if not line.startswith("labels"))
    card.write_text(text + '\nlabels = ["person"]\ncell_gain = [[0.0, 1.0], [1.0, 2.0]]\n')
    with pytest.raises(ModelError, match="cell_gain: only for density models") as e:
        load_model_card(card)
    assert str(card) in str(e.value)


def test_unknown_class_name():
    shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    message = _error(SSD_CARD, classes=("persn",))
    assert str(SSD_CARD) in message and "'persn'" in message


@pytest.mark.parametrize("kind", ["yolox", "density"])
def test_a_four_output_detector_carded_as_a_one_output_kind_is_refused(tmp_path, kind):
    model = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    card = tmp_path / "wrong.toml"
    card.write_text(f'name = "wrong"\nkind = "{kind}"\nfile = "{model}"\n'
                    'input_colour = "rgb"\nlabels = ["person"]\n')
    message = _error(card)
    assert str(model) in message and f"{kind} model needs one output" in message
    assert message.endswith("found 4")


def test_shipped_cards_load():
    for name in ("ssd_mobilenet_v1_coco_quant", "yolox_nano_320_float32"):
        card = load_model_card(REPO / "models/cards" / f"{name}.toml")
        assert card.licence == "Apache-2.0" and card.source
        assert card.class_index("person") == 0
