"""A missing or corrupt model stops the daemon at start with one clear line and
exit code 2, which the unit's RestartPreventExitStatus=2 turns into "failed"
instead of a restart every two seconds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from daemon_process import REPO, SSD_CARD, replay_config
from shared_data import shared_path


def run_daemon(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowdsign", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=120)


MODELS = (SSD_CARD.parent / "../../../shared/models").resolve()


def card_for(tmp_path: Path, model: Path) -> Path:
    """The SSD's card, pointing at `model` (labels as they are)."""
    card = tmp_path / f"{model.name}.toml"
    card.write_text(SSD_CARD.read_text().replace(
        'file = "../../../shared/models/ssd_mobilenet_v1_coco_quant.tflite"',
        f'file = "{model}"').replace(
        'labels = "../../../shared/models/coco_labels.txt"',
        f'labels = "{MODELS / "coco_labels.txt"}"'))
    return card


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR: " in line]


def test_unit_does_not_restart_on_exit_code_2():
    unit = (REPO / "systemd" / "crowdsign.service").read_text()
    assert re.search(r"^RestartPreventExitStatus=2$", unit, re.M)


def test_missing_model_file_is_one_error_line_and_exit_code_2(tmp_path):
    card = card_for(tmp_path, tmp_path / "nowhere.tflite")
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"))
    config.write_text(config.read_text().replace(str(SSD_CARD), str(card)))
    result = run_daemon(config)
    assert result.returncode == 2
    lines = errors(result.stderr)
    assert len(lines) == 1 and "nowhere.tflite" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_missing_model_card_is_one_error_line_and_exit_code_2(tmp_path):
    config = replay_config(tmp_path, shared_path("video", "vtest.avi"))
    config.write_text(config.read_text().replace(str(SSD_CARD), str(tmp_path / "no.toml")))
    result = run_daemon(config)
    assert result.returncode == 2
    assert len(errors(result.stderr)) == 1 and "no.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_model_file_is_one_error_line_and_exit_code_2(tmp_path):
    real = MODELS / "ssd_mobilenet_v1_coco_quant.tflite"
    for name, data in (("garbage.tflite", b"\x00not a flatbuffer" * 64),
                       ("truncated.tflite", real.read_bytes()[:200_000]),
                       ("empty.tflite", b"")):
        (tmp_path / name).write_bytes(data)
        card = card_for(tmp_path, tmp_path / name)
        config = replay_config(tmp_path, shared_path("video", "vtest.avi"))
        config.write_text(config.read_text().replace(str(SSD_CARD), str(card)))
        result = run_daemon(config)
        assert result.returncode == 2, (name, result.stderr[-1500:])
        lines = errors(result.stderr)
        assert len(lines) == 1 and name in lines[0], (name, result.stderr)
        assert "Traceback" not in result.stderr, name
