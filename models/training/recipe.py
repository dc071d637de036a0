"""The shipped model from one command: five training stages and the int8 export.

    .venv-train/bin/python -m models.training.recipe --data ../shared/data --out build/train/shipped
    cp build/train/shipped/export/crowdsign_density_gray.tflite models/crowdsign_density_gray/

Stage 1 trains `arch="m"` from scratch (40 epochs, weight EMA); stage 2
fine-tunes its best epoch with BatchNorm frozen and the patch-count term x20
(20 epochs), stage 3 with the term x50 (25 epochs). The model was still
underfitting there (whole training images counted as badly as validation ones),
so stage 4 restarts the schedule on stage 3's weights (BatchNorm trained again,
Adam 5e-4, term x10, 40 epochs) and stage 5 repeats that restart on stage 4's
weights. The export writes the float and the bias-corrected int8 model of
stage 5's best epoch. About 190 minutes on 2 cores, about twice the 90-minute
goal (models/crowdsign_density_gray/README.md, "Time").
Each stage keeps its own folder under OUT and resumes there (`--resume`) after
an interruption.
`--smoke` runs one 2-step epoch a stage (the plumbing, not a model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.training import export, train

# Each stage starts from the best epoch of the one before it (stage 1 from scratch).
# --eval-from only skips validation passes of epochs that were never the best
# (best epochs: stage 1 38, stage 2 15, stage 3 25, stage 4 19, stage 5 34);
# training itself does not depend on it.
ARCH = "m"
EVERY_STAGE = ["--arch", ARCH, "--ema", "0.998"]
FINE_TUNE = EVERY_STAGE + ["--freeze-bn", "--warmup", "100"]
RESTART = EVERY_STAGE + ["--count-weight", "10", "--epochs", "40", "--eval-from", "11",
                         "--lr", "5e-4", "--warmup", "300"]
STAGES = [
    EVERY_STAGE + ["--epochs", "40", "--eval-from", "31", "--seed", "1234"],
    FINE_TUNE + ["--count-weight", "20", "--epochs", "20", "--eval-from", "11",
                 "--lr", "2e-4", "--seed", "4321"],
    FINE_TUNE + ["--count-weight", "50", "--epochs", "25", "--eval-from", "11",
                 "--lr", "1.5e-4", "--seed", "777"],
    RESTART + ["--seed", "2468"],
    RESTART + ["--seed", "3579"],
]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke", action="store_true", help="one 2-step epoch a stage")
    p.add_argument("--resume", action="store_true", help="resume the stage in progress")
    args = p.parse_args(argv)

    common = ["--data", str(args.data), "--no-export"]
    smoke = ["--epochs", "1", "--steps", "2", "--warmup", "1"] if args.smoke else []
    if args.resume:
        common += ["--resume"]
    previous = None
    for number, stage_args in enumerate(STAGES, 1):
        out = args.out / f"stage{number}"
        init = ["--init", str(previous / "best.weights.h5")] if previous else []
        train.main(common + ["--out", str(out)] + init + stage_args + smoke)
        previous = out
    export.main(["--weights", str(previous / "best.weights.h5"), "--arch", ARCH,
                 "--data", str(args.data), "--out", str(args.out / "export")])


if __name__ == "__main__":
    main()
