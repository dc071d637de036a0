"""Config loading: typed values, and one clear line per problem naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crowdsign.config import ConfigError, LevelsConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crowdsign.toml"
    path.write_text(text)
    return path


def test_example_configs_load_into_typed_values():
    config = load_config(REPO / "examples" / "pi-platform.toml")
    assert config.source.kind == "picamera2"
    assert [z.name for z in config.zones] == ["car1", "car2", "car3", "car4"]
    assert config.levels.thresholds == (6.0, 15.0)
    assert config.outputs[0].port == "/dev/serial0"
    assert config.outputs[0].template == "{zones}\r\n"

    replay = load_config(REPO / "examples" / "replay-video.toml")
    assert Path(replay.source.target) == REPO / "build" / "sample" / "vtest.avi"
    assert replay.model.path == (
        REPO / "models" / "crowdsign_density_gray" / "crowdsign_density_gray.toml")


def test_empty_config_gives_the_defaults_and_one_zone_covering_the_frame(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.levels == LevelsConfig()
    assert [z.name for z in config.zone_list()] == ["all"]


BAD_CONFIGS = [
    ("[source]\nuri = \"replay:x.avi\"\nspeed = 2\n", "[source].speed: unknown key"),
    ("[levels]\nwindow = \"five\"\n", "[levels].window: expected an integer, got 'five'"),
    ("[levels]\nwindow = 0\n", "[levels].window: must be 1..1000, got 0"),
    ("[levels]\nthresholds = [10, 5]\n", "[levels].thresholds: must be non-negative and strictly ascending"),
    ("[levels]\nthresholds = [10]\n", "[levels].thresholds: needs 2 values"),
    ("[model]\nthreshold = 1.5\n", "[model].threshold: must be between 0 and 1, got 1.5"),
    ("[model]\ntiles = [0, 2]\n", "[model].tiles: must be [rows, cols], each 1..8"),
    ("[model]\nmirror = \"sometimes\"\n",
     "[model].mirror: must be off, alternate or both, got 'sometimes'"),
    ("[source]\nuri = \"http://cam\"\n", "[source].uri: must start with one of"),
    ("[camera]\nuri = \"picamera2\"\n", "[camera]: unknown section"),
    ("[source]\nuri = \"picamera2:front\"\n", "[source].uri: picamera2 takes a camera number"),
    ("[[zones]]\nname = \"a\"\npolygon = [[0, 0], [1, 0]]\n",
     "[[zones]] #1 (a).polygon: must be at least three [x, y] points"),
    ("[[zones]]\nname = \"a\"\npolygon = [[0, 0], [2, 0], [0, 1]]\n",
     "[[zones]] #1 (a).polygon: points must lie in normalised image coordinates 0..1"),
    ("[[zones]]\npolygon = [[0, 0], [1, 0], [0, 1]]\n", "[[zones]] #1.name: required key missing"),
    ("[[outputs]]\ntype = \"telnet\"\nport = \"x\"\n", "[[outputs]] #1.type: must be one of serial"),
    ("[[outputs]]\ntype = \"serial\"\nport = \"/dev/ttyS0\"\nparity = \"X\"\n",
     "[[outputs]] #1.parity: must be N, E, O, M or S"),
    ("[[outputs]]\ntype = \"serial\"\nport = \"/dev/ttyS0\"\ntemplate = \"{count[nowhere]}\"\n",
     "[[outputs]] #1.template:"),
    ("[logging]\nlevel = \"loud\"\n", "[logging].level: must be debug, info, warning or error"),
    ("[source\nuri = 1\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,expected", BAD_CONFIGS, ids=[e for _, e in BAD_CONFIGS])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    problem = info.value.problems[0]
    assert problem.startswith(f"{path}: ")
    assert expected in problem
    assert "\n" not in problem


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "[levels]\nwindow = 0\nhysteresis = -1\n[model]\nnum_threads = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 3


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowdsign", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("text,expected", BAD_CONFIGS[:6], ids=[e for _, e in BAD_CONFIGS[:6]])
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_exits_2_with_its_line(tmp_path, command, text, expected):
    path = write(tmp_path, text)
    result = run_cli(command, "-c", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_check_reports_a_missing_model_and_replay_file(tmp_path):
    path = write(tmp_path, "[source]\nuri = \"replay:missing.avi\"\n"
                           "[model]\npath = \"missing.toml\"\n")
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any("[model].path" in line and "missing.toml" in line for line in lines), lines
    assert any("missing.avi" in line for line in lines), lines
    assert "Traceback" not in result.stderr
