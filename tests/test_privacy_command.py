"""`crowdsign privacy` describes the processing of the live config for a DPIA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon_process import SSD_CARD
from tflite_fixtures import write_density_model


def privacy(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowdsign", "privacy", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def write_config(tmp_path: Path, card: Path, source: str, outputs: str = "") -> Path:
    path = tmp_path / "crowdsign.toml"
    path.write_text(f"""
[source]
uri = "{source}"
buffer_count = 3
[model]
path = "{card}"
[[zones]]
name = "front"
polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
[[zones]]
name = "back"
polygon = [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]
[logging]
summary_interval_s = 60
{outputs}
""")
    return path


OUTPUTS = """
[[outputs]]
type = "serial"
port = "/dev/ttyUSB0"
rate_hz = 2
[[outputs]]
type = "modbus"
port = "/dev/ttyAMA0"
unit_id = 7
"""


def test_privacy_json_says_what_is_captured_kept_sent_and_never_made(tmp_path):
    card = write_density_model(tmp_path, size=64)   # a real gray density model, 64x64
    config = write_config(tmp_path, card, "picamera2", OUTPUTS)
    result = privacy(config, "--json")
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    assert d["captured"]["model_input"] == "64x64 luma (grey) only"
    assert "low-resolution stream" in d["captured"]["stream"]
    assert d["captured"]["zones"] == ["front", "back"]
    assert d["storage"]["where"].startswith("RAM only")
    assert "3 camera buffers" in d["storage"]["buffers"]
    assert "frame period" in d["storage"]["kept_for"]
    outs = d["leaves_device"]["outputs"]
    assert [(o["type"], o["to"]) for o in outs] == [("serial", "/dev/ttyUSB0"),
                                                   ("modbus", "/dev/ttyAMA0 (unit 7)")]
    assert outs[0]["how_often"] == "at most 2 per second"
    assert "every 60 s" in d["leaves_device"]["journal"]
    never = " ".join(d["never_produced"])
    for word in ("images", "boxes", "identities", "attributes"):
        assert word in never
    assert set(d["measures"]) == {"no_storage", "no_core_dumps", "no_network", "no_tracking",
                                  "frames_transient"}
    assert any("PR_SET_DUMPABLE" in m for m in d["measures"]["no_core_dumps"])


def test_privacy_text_names_a_colour_model_and_no_outputs(tmp_path):
    config = write_config(tmp_path, SSD_CARD, f"replay:{tmp_path}")
    result = privacy(config)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for heading in ("What is captured", "Where it lives", "What leaves the device",
                    "Never produced", "Measures that enforce it"):
        assert heading in text
    assert "300x300 colour (RGB)" in text
    assert "outputs:      none configured" in text


def test_privacy_with_a_missing_model_is_one_line_and_exit_code_2(tmp_path):
    config = write_config(tmp_path, tmp_path / "missing.toml", "picamera2")
    result = privacy(config)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "missing.toml" in result.stderr
