"""The shipped model from one command: the three training stages and the int8 export.

    .venv-train/bin/python -m models.training.recipe --data ../shared/data --out build/train/shipped
    cp build/train/shipped/export/crowdsign_density_gray.tflite models/crowdsign_density_gray/

Stage 1 trains `arch="m"` from scratch (40 epochs, weight EMA); stage 2
fine-tunes its best epoch with BatchNorm frozen and the patch-count term x20
(20 epochs), stage 3 with the term x50 (25 epochs); the export writes the
float and the bias-corrected int8 model of stage 3's best epoch. About 100
minutes on 2 cores, over the 90-minute goal: one fine-tuning stage in place of
stages 2 and 3 (x50, 30 epochs) took 91 minutes in all and made a worse model
(models/crowdsign_density_gray/README.md, "Time"). Each stage keeps its own folder
under OUT and resumes there (`--resume`) after an interruption.
`--smoke` runs one 2-step epoch a stage (the plumbing, not a model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.training import export, train

# --eval-from only skips validation passes of epochs that were never the best (stage 1's
# best is epoch 38, stage 2's 15, stage 3's 25); training itself does not depend on it.
STAGE1 = ["--arch", "m", "--ema", "0.998", "--epochs", "40", "--eval-from", "31",
          "--seed", "1234"]
STAGE2 = ["--arch", "m", "--freeze-bn", "--ema", "0.998", "--count-weight", "20",
          "--epochs", "20", "--eval-from", "11", "--lr", "2e-4", "--warmup", "100",
          "--seed", "4321"]
STAGE3 = ["--arch", "m", "--freeze-bn", "--ema", "0.998", "--count-weight", "50",
          "--epochs", "25", "--eval-from", "11", "--lr", "1.5e-4", "--warmup", "100",
          "--seed", "777"]


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
    stage1, stage2, stage3 = (args.out / f"stage{i}" for i in (1, 2, 3))
    train.main(common + ["--out", str(stage1)] + STAGE1 + smoke)
    train.main(common + ["--out", str(stage2), "--init", str(stage1 / "best.weights.h5")]
               + STAGE2 + smoke)
    train.main(common + ["--out", str(stage3), "--init", str(stage2 / "best.weights.h5")]
               + STAGE3 + smoke)
    export.main(["--weights", str(stage3 / "best.weights.h5"), "--arch", "m",
                 "--data", str(args.data), "--out", str(args.out / "export")])


if __name__ == "__main__":
    main()
