"""The shipped model from one command: both training stages and the int8 export.

    .venv-train/bin/python -m models.training.recipe --data ../shared/data --out build/train/shipped
    cp build/train/shipped/export/crowdsign_density_gray.tflite models/crowdsign_density_gray/

Stage 1 trains `arch="m"` from scratch (40 epochs, weight EMA); stage 2
fine-tunes its best epoch with BatchNorm frozen and the patch-count term x50
(30 epochs); the export writes the float and the bias-corrected int8 model of
stage 2's best epoch. Under 90 minutes on 2 cores. Each stage keeps its own
folder under OUT and resumes there (`--resume`) after an interruption.
`--smoke` runs one 2-step epoch a stage (the plumbing, not a model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.training import export, train

STAGE1 = ["--arch", "m", "--ema", "0.998", "--epochs", "40", "--eval-from", "31",
          "--seed", "1234"]
STAGE2 = ["--arch", "m", "--freeze-bn", "--ema", "0.998", "--count-weight", "50",
          "--epochs", "30", "--eval-from", "11", "--lr", "2e-4", "--warmup", "100",
          "--seed", "4321"]


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
    stage1, stage2 = (args.out / f"stage{i}" for i in (1, 2))
    train.main(common + ["--out", str(stage1)] + STAGE1 + smoke)
    train.main(common + ["--out", str(stage2), "--init", str(stage1 / "best.weights.h5")]
               + STAGE2 + smoke)
    export.main(["--weights", str(stage2 / "best.weights.h5"), "--arch", "m",
                 "--data", str(args.data), "--out", str(args.out / "export")])


if __name__ == "__main__":
    main()
