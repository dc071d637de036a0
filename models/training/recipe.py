"""The shipped model from one training command and one export command.

    # PyTorch (the `train-torch` extra): the shipped model's two stages, on 2 CPU
    # cores (about 140 minutes on x86-64; resumable)
    python -m models.training.recipe --cpu --data ../shared/data --out OUT
    # or the same two stages with the forward pass in bfloat16: about 68 minutes on
    # a CPU with AVX512-BF16 (or AMX), a model level with v7 but not the same one
    python -m models.training.recipe --cpu --bf16 --data ../shared/data --out OUT
    # then TensorFlow (the `train` extra): float and int8 TFLite of its best epoch,
    # and a card beside them with the per-cell gain fitted on the training images
    .venv-train/bin/python -m models.training.recipe --export cpu --data ../shared/data --out OUT
    cp OUT/export/crowdsign_density_gray.tflite OUT/export/crowdsign_density_gray.toml \
        models/crowdsign_density_gray/

The shipped model (v7) comes from two stages on the CPU, each keeping the
epoch with the best validation score: `CPU_RUN`, `arch="m+"` from scratch
with the Bayesian loss alone, 13 epochs of 500 batches of 64 patches
(416,000 patches; best: the last) into OUT/cpu; then `CPU_MORE`, 4 more
epochs from that best on new patches with a lower peak learning rate (best:
epoch 3) into OUT/cpu-more, which is exported.
`GPU_RUN` made the previous model (v6, `arch="m"`, the density-map loss, 88
epochs on a GPU from the data packed to travel, models.training.pack ->
.gpu/data; best epoch 27); `--gpu` and `--export gpu` rebuild it. Either run
resumes after an interruption (`--resume`); `--smoke` runs one 2-step epoch
(the plumbing, not a model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.training import cell_gain, export

# Settings both runs share; the patch stream of a step is seeded by (seed, step),
# so the CPU run sees the GPU run's first 6,500 batches.
EVERY_RUN = ["--batch", "64", "--ema", "0.999", "--lr", "1.5e-3", "--count-weight", "5",
             "--seed", "11"]
# The shipped model's runs: the open head and the Bayesian loss alone, on the CPU
# (the model card's "Toward the bars" says why).
BAYES_ON_CPU = ["--arch", "m+", "--bayes", "1", "--density-weight", "0", "--device", "cpu",
                "--workers", "1"]
CPU_RUN = EVERY_RUN + BAYES_ON_CPU + ["--epochs", "13", "--eval-from", "7"]
# Its second stage: another patch stream (seed 13), Adam 5e-4, a shorter average.
CPU_MORE = BAYES_ON_CPU + ["--batch", "64", "--ema", "0.998", "--lr", "5e-4", "--warmup", "100",
                           "--count-weight", "5", "--seed", "13", "--epochs", "4", "--eval-from", "1"]
# The previous model's run. It was planned as a 7.3-minute run beside a second
# one on the same GPU (`--minutes 7.3` resolved to 88 epochs) and stopped by its
# time limit at epoch 84; its best epoch was 27.
GPU_RUN = EVERY_RUN + ["--arch", "m", "--epochs", "88", "--eval-from", "4"]
# Each run's stages: (folder under OUT, train_torch arguments); a later stage
# starts from the best epoch of the one before, and the last one is exported.
RUNS = {"gpu": [("gpu", GPU_RUN)], "cpu": [("cpu", CPU_RUN), ("cpu-more", CPU_MORE)]}
# Runs whose export gets a per-cell gain. Not v6's: it had memorised its
# training images, and a gain fitted on them made validation worse.
FIT_GAIN = {"cpu"}
# The exported card: the shipped one's text, its per-cell gain refitted.
CARD = Path(__file__).resolve().parents[1] / "crowdsign_density_gray/crowdsign_density_gray.toml"


def arch_of(run: str) -> str:
    args = RUNS[run][-1][1]
    return args[args.index("--arch") + 1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--gpu", action="store_const", const="gpu", dest="run",
                      help="the previous model's run (PyTorch, CUDA) into OUT/gpu")
    what.add_argument("--cpu", action="store_const", const="cpu", dest="run",
                      help="the shipped model's two stages (PyTorch, CPU) into OUT/cpu, OUT/cpu-more")
    what.add_argument("--export", choices=sorted(RUNS),
                      help="export the run's last best.npz and its card into OUT/export (TensorFlow)")
    p.add_argument("--bf16", action="store_true",
                   help="every stage's forward pass in bfloat16 (train_torch --bf16): the CPU "
                        "run in about 68 minutes instead of 140, a model level with v7 within "
                        "its standard errors, not the same one")
    p.add_argument("--smoke", action="store_true", help="one 2-step epoch")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = p.parse_args(argv)

    if args.export:
        out = args.out / "export"
        export.main(["--weights", str(args.out / RUNS[args.export][-1][0] / "best.npz"),
                     "--arch", arch_of(args.export), "--data", str(args.data), "--out", str(out)])
        card = out / CARD.name
        card.write_text(cell_gain.card_text_with_gain(CARD.read_text(encoding="utf-8"), None),
                        encoding="utf-8")
        if args.export in FIT_GAIN:
            cell_gain.main(["--card", str(card), "--data", str(args.data), "--write"])
        return
    from models.training import train_torch
    smoke = ["--epochs", "1", "--steps", "2", "--warmup", "1", "--eval-from", "1"] if args.smoke else []
    previous = None
    for folder, stage in RUNS[args.run]:
        start = ["--init", str(args.out / previous / "best.npz")] if previous else []
        train_torch.main(["--data", str(args.data), "--out", str(args.out / folder)]
                         + stage + start + smoke + (["--resume"] if args.resume else [])
                         + (["--bf16"] if args.bf16 else []))
        previous = folder


if __name__ == "__main__":
    main()
