"""models/training/parallel.py: several training runs in one time limit, results gathered."""

from __future__ import annotations

import argparse
import json

import pytest

from shared_data import training_module

parallel = training_module("parallel")


def test_a_run_is_a_name_and_train_torch_arguments():
    assert parallel.parse_run("m-wd:--arch m --weight-decay 0.02") == (
        "m-wd", ["--arch", "m", "--weight-decay", "0.02"])


@pytest.mark.parametrize("spec", ["--arch m", "bad name:--arch m", "a/b:--arch m", ":--arch m"])
def test_a_run_without_a_plain_name_is_refused(spec):
    with pytest.raises(argparse.ArgumentTypeError, match="NAME:ARGS"):
        parallel.parse_run(spec)


def test_the_best_epoch_is_the_lowest_validated_score(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"epoch": 1, "score": None}, {"epoch": 2, "score": 2.4}, {"epoch": 3, "score": 2.2},
            {"epoch": 4, "score": 2.3}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert parallel.best_epoch(log)["epoch"] == 3
    assert parallel.best_epoch(tmp_path / "missing.jsonl") is None


def test_runs_that_fail_are_reported_with_their_error_and_exit_non_zero(tmp_path, capsys):
    code = parallel.main(["--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "runs"),
                          "--minutes", "2", "--collect", str(tmp_path / "collected"),
                          "--run", "x:--arch nope --epochs 1", "--run", "y:--epochs 1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "x: no validated epoch" in out and "y: no validated epoch" in out
    assert not (tmp_path / "collected").exists()
    assert (tmp_path / "runs" / "x" / "train.log").is_file()


def test_two_runs_with_one_name_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        parallel.main(["--data", str(tmp_path), "--out", str(tmp_path), "--minutes", "1",
                       "--run", "a:--epochs 1", "--run", "a:--epochs 2"])
