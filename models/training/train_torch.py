"""Train the density model with PyTorch, on a GPU or the CPU; weights as .npz for the export.

    python -m models.training.train_torch --data ../shared/data --out OUT --arch m --epochs 13

The network is arch.py's layer list (built by torch_net.py, layer for layer
what net.py builds in Keras for the export). Patches come from
data.PatchSampler in worker processes, each batch from a generator seeded by
(seed, step), so the stream depends on neither the number of workers nor an
interruption (`--resume` continues from OUT/last.pt). An exponential moving
average of the weights and BatchNorm statistics (--ema) is validated after
each epoch on whole images at the deployed 512x384 and the best epoch by
mall_mae / 2 + shb_mae / 12 (the issue's bars) is kept. `--minutes` times
steps 50-250 and then fixes the number of epochs to fit the budget (the
learning-rate schedule needs it; the log records it, and `--epochs N` repeats
a run). `--init WEIGHTS [--freeze-bn]` starts from trained weights instead,
a checkpoint or the shipped .tflite itself.

OUT gets best.npz (the best epoch's averaged weights), last.npz, log.jsonl,
state.json and last.pt. The .npz hold every weight in Keras' layout plus the
output on a fixed probe image, so `net.load` can check the transfer; then

    .venv-train/bin/python -m models.training.export --weights OUT/best.npz OUT/last.npz \
        --arch m --data ../shared/data --out OUT/export
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.training import arch as A
from models.training import data as D
from models.training import torch_net as T
from models.training.bayes_loss import bayesian_loss
from models.training.head_points import heads_per_patch
from models.training.ot_loss import binned_tv, ot_loss


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding mall/, shanghaitech_b/, ...")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=list(D.DATASETS))
    p.add_argument("--arch", default="m", help=f"network size: {', '.join(A.ARCHS)} (default m)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--epochs", type=int)
    length.add_argument("--minutes", type=float, help="fit the number of epochs to this budget")
    p.add_argument("--cosine-epochs", type=int, metavar="N",
                   help="with --epochs: the learning-rate cosine spans N epochs (N >= --epochs), so "
                        "the run stops while the rate is still a fraction of its peak (default: "
                        "--epochs, the cosine's end)")
    p.add_argument("--steps", type=int, default=500, help="steps per epoch")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1.5e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--warmup", type=int, default=500,
                   help="linear warm-up steps (must end after the --minutes timing, step 250)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--ema", type=float, default=0.999, help="weight-average decay; 0: off")
    p.add_argument("--count-weight", type=float, default=1.0)
    p.add_argument("--dense-ref", type=float, default=0.0,
                   help="people per patch beyond which the loss is relative, not absolute "
                        "(0: off; ~50 with --datasets ... shanghaitech_a; it also weighs the "
                        "Bayesian loss, per patch)")
    p.add_argument("--bayes", type=float, default=0.0,
                   help="weight of the Bayesian loss on the head points (bayes_loss.py; 0: off)")
    p.add_argument("--density-weight", type=float, default=1.0,
                   help="weight of the density-map terms (0 with --bayes: the Bayesian loss alone)")
    p.add_argument("--density-from", type=float, default=0.0,
                   help="people per patch from which the density-map terms count (0: every "
                        "patch); with --bayes, they teach only dense crowds their size")
    p.add_argument("--density-on", action="append", default=[], metavar="DATASET",
                   help="only patches of this dataset get the density-map terms (repeatable; "
                        "default: every dataset's); with --bayes, they correct one dataset's "
                        "counts while the others learn from the head points alone")
    p.add_argument("--bayes-count", type=float, default=0.0,
                   help="weight of each patch's absolute count error against its head points "
                        "(people), beside --bayes or --ot, which pulls whole crowds to their true size")
    p.add_argument("--ot", type=float, default=0.0,
                   help="weight of the optimal-transport term between the normalised density and "
                        "the head points (DM-Count, ot_loss.py; 0: off; its gradient is in squared "
                        "input pixels per person)")
    p.add_argument("--ot-tv", type=float, default=0.0,
                   help="weight of DM-Count's total-variation term: count x L1 between the "
                        "normalised density and the heads binned to cells (ot_loss.binned_tv)")
    p.add_argument("--ot-eps", type=float, default=16.0,
                   help="the transport's entropic regularisation, squared input pixels")
    p.add_argument("--bayes-sigma", type=float, default=8.0, help="its likelihood's sigma, input pixels")
    p.add_argument("--bayes-background", type=float, default=768.0,
                   help="its background distance (cells beyond sqrt(this) pixels from any head "
                        "go to the background)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW decay of the convolution kernels (0: plain Adam)")
    p.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="spatial dropout on the density head's input while training")
    p.add_argument("--empty-share", type=float, default=D.EMPTY_SHARE)
    p.add_argument("--jitter", type=D.parse_jitter, action="append", default=[], metavar="NAME=LO:HI",
                   help="a dataset's patch scale range instead of data.JITTER's (below 1 zooms "
                        "out: smaller heads, denser crowds)")
    p.add_argument("--mix", type=D.parse_mix, action="append", default=[], metavar="NAME=SHARE",
                   help="a dataset's share of the patches instead of data.MIX's (relative)")
    p.add_argument("--init", type=Path, help="start from these weights: .npz in Keras layout "
                   "(python -m models.training.net converts a .weights.h5) or a shipped int8 "
                   ".tflite (from_tflite.py)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep the BatchNorm layers of --init fixed (statistics and scale): "
                        "fine-tuning, e.g. on a site's own labelled frames")
    p.add_argument("--bf16", action="store_true",
                   help="the forward pass in bfloat16 (autocast; weights, loss and optimizer stay "
                        "float32): about twice as fast a step on a CPU with AVX512-BF16 or AMX")
    p.add_argument("--input-size", type=D.parse_input_size, default=D.INPUT_SIZE, metavar="WxH",
                   help="the deployed input size the images are trained and validated at "
                        "(default 512x384)")
    p.add_argument("--teacher", type=Path,
                   help="train on this network's mean density at several input sizes (.npz, "
                        "distill.py) instead of the head points; validation still counts heads")
    p.add_argument("--teacher-arch", default="m", help="the --teacher's network size (default m)")
    p.add_argument("--teacher-video", type=Path, action="append", default=[],
                   help="with --teacher: also train on this video's frames, labelled by the teacher")
    p.add_argument("--patch", type=D.parse_input_size, default=D.PATCH, metavar="WxH",
                   help=f"training patch size (default {D.PATCH[0]}x{D.PATCH[1]}, a quarter of the deployed "
                        "frame); a larger patch gives the deep layers the context they see "
                        "on a whole frame (shrink --batch to keep a step's pixels)")
    p.add_argument("--small-patches", type=int, default=0, metavar="EPOCHS",
                   help="train the first EPOCHS epochs on patches of half the side "
                        "(a quarter of the compute; progressive resizing)")
    p.add_argument("--eval-from", type=int, default=1, help="validate from this epoch on")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    args = p.parse_args(argv)
    if args.cosine_epochs is not None and (args.epochs is None or args.cosine_epochs < args.epochs):
        p.error("--cosine-epochs needs --epochs, and no fewer epochs than it")
    return args


def dense_weighted_bayesian_loss(density: torch.Tensor, points: torch.Tensor, sigma: float,
                                 background: float, dense_ref: float = 0.0,
                                 stride: int = D.STRIDE) -> torch.Tensor:
    """The batch's mean Bayesian loss; with dense_ref, a patch of more heads than
    dense_ref weighs as one of dense_ref (x dense_ref / heads): the loss sums over
    heads, so without it ShanghaiTech A's crowds of hundreds drown every other patch."""
    loss = bayesian_loss(density, points, stride, sigma, background)
    if dense_ref > 0:
        loss = loss * (dense_ref / heads_per_patch(points).clamp(min=1.0)).clamp(max=1.0)
    return loss.mean()


def patch_count_error(density: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The batch's mean absolute difference between each patch's density sum and its
    number of head points, in people."""
    return (density.sum((1, 2, 3)) - heads_per_patch(points)).abs().mean()


class Patches(torch.utils.data.IterableDataset):
    """Training batches for steps [start, stop); worker k makes steps k, k + W, ...

    DataLoader takes batches from its workers in turn, so they arrive in step order."""

    def __init__(self, train: dict, batch: int, seed: int, start: int, stop: int, empty_share: float,
                 points: bool = False, jitter: dict | None = None, small_until: int = 0,
                 mix: dict | None = None, density_on: tuple[str, ...] = (),
                 patch: tuple[int, int] = D.PATCH, stride: int = D.STRIDE):
        self.train, self.batch, self.seed, self.patch, self.stride = train, batch, seed, patch, stride
        self.density_on = density_on
        self.start, self.stop, self.empty_share, self.points = start, stop, empty_share, points
        self.jitter, self.small_until, self.mix = jitter, small_until, mix

    def patch_size(self, step: int) -> tuple[int, int]:
        """Steps before small_until train on patches of half the side (progressive
        resizing: a quarter of the compute, at the same scale, so heads look as they
        will at full size), the rest on the full patch."""
        w, h = self.patch
        return (w // 2, h // 2) if step < self.small_until else (w, h)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, w = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start + k, self.stop, w):
            sampler = D.PatchSampler(self.train, np.random.default_rng([self.seed, step]),
                                     patch=self.patch_size(step), empty_share=self.empty_share,
                                     jitter=self.jitter, mix=self.mix, stride=self.stride)
            x, y, sources, *pts = sampler.batch(self.batch, points=self.points, sources=True)
            on = np.isin(sources, self.density_on) if self.density_on else np.ones(len(x), bool)
            # Patch pixels are whole grey levels: uint8 is exact and a quarter of the traffic.
            yield (torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y),
                   torch.from_numpy(on.astype(np.float32)), *(torch.from_numpy(p) for p in pts))


def patch_loss(p, y, count_weight: float = 1.0, dense_ref: float = 0.0, density_weight: float = 1.0,
               density_from: float = 0.0, density_on: torch.Tensor | None = None):
    """(loss, mean absolute patch-count error), both in the scaled density's units.

    Per patch: pixel MSE + MSE of 4x4-cell block means (forgives a blob placed a
    cell off) + count_weight x |count error| / cells + squared negative outputs
    (the exported model clips at zero). With dense_ref > 0, a patch holding more
    than dense_ref people weighs as one holding dense_ref: its squared terms are
    scaled by (dense_ref / count)^2 and its count term by dense_ref / count, so
    ShanghaiTech A's crowds of hundreds teach shapes without drowning the loss
    of Mall's and ShanghaiTech B's tens (relative instead of absolute error).
    density_weight scales all but the negative term (0: only that term, for a
    run whose targets are the head points, --bayes). With density_from > 0, only
    patches whose target holds at least that many people get those terms: beside
    the Bayesian loss, which undercounts dense crowds, they then correct just those.
    density_on (one 0/1 per patch) likewise keeps them to the patches marked 1.
    """
    def per_patch(t):
        return t.flatten(1).mean(1)

    mse1 = per_patch((p - y).square())
    mse4 = per_patch((F.avg_pool2d(p, 4) - F.avg_pool2d(y, 4)).square())
    true = y.sum((1, 2, 3))
    count = (p.sum((1, 2, 3)) - true).abs()
    negative = per_patch(F.relu(-p).square())
    w = (dense_ref / true).clamp(max=1.0) if dense_ref > 0 else torch.ones_like(true)
    if density_from > 0:
        w = w * (true >= density_from)
    if density_on is not None:
        w = w * density_on
    loss = density_weight * (w.square() * (mse1 + mse4) + w * count_weight * count / p[0].numel()) + negative
    return loss.mean(), count.mean()


def lr_factor(step: int, warmup: int, total: int, alpha: float = 0.005) -> float:
    """Linear warm-up to 1, then cosine decay to alpha (Keras' CosineDecay with warm-up)."""
    if step < warmup:
        return step / warmup
    t = min(step - warmup, total - warmup) / max(1, total - warmup)
    return (1 - alpha) * 0.5 * (1 + math.cos(math.pi * t)) + alpha


def save_npz(model: T.DensityNet, path: Path) -> None:
    """The weights in Keras' layout, plus the network's output on the probe image.

    The probe runs on a float32 copy on the CPU: on a GPU, cuDNN's TF32
    convolutions differ from Keras' float32 by more than `net.check_probe` allows."""
    arrays = T.keras_arrays(model)
    probe_net = copy.deepcopy(model).float().cpu().eval()
    with torch.no_grad():
        x = torch.from_numpy(D.probe_image()).permute(0, 3, 1, 2)
        arrays["probe/output"] = probe_net(x).permute(0, 2, 3, 1).numpy()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv=None) -> None:
    args = parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    train, val = D.load_split(args.data, args.datasets, args.input_size)
    if not train:
        raise SystemExit(f"train_torch: no dataset of {', '.join(args.datasets)} under {args.data}")
    print(f"loaded {sum(map(len, train.values()))} train, {sum(map(len, val.values()))} val "
          f"images in {time.time() - t0:.0f} s: "
          + ", ".join(f"{k} {len(train[k])}/{len(val[k])}" for k in train), flush=True)
    unknown = sorted(set(args.density_on) - set(train))
    if unknown:
        raise SystemExit(f"train_torch: --density-on {', '.join(unknown)}: not a dataset of this run "
                         f"({', '.join(train)})")
    heads_needed = args.bayes or args.bayes_count or args.ot or args.ot_tv
    if heads_needed and args.teacher:
        raise SystemExit("train_torch: --bayes, --bayes-count, --ot and --ot-tv need head points, "
                         "and --teacher replaces them with maps")
    if args.teacher:
        from models.training import distill
        teacher = distill.load_teacher(args.teacher, args.teacher_arch)
        train = distill.with_teacher(train, args.data, teacher)
        for video in args.teacher_video:
            train[video.name] = distill.video_items(video, teacher, args.input_size)
        del teacher
        print(f"teacher {args.teacher} at {', '.join(f'{w}x{h}' for w, h in distill.TEACHER_SIZES)}: "
              + ", ".join(f"{k} {len(v)} images, {np.mean([it.density.sum() for it in v]):.1f} people "
                          "a frame" for k, v in train.items())
              + f" ({time.time() - t0:.0f} s)", flush=True)
    val_x = {k: torch.from_numpy(np.stack([it.image for it in v])[:, None]).to(dev)
             for k, v in val.items() if v}
    val_y = {k: np.array([it.count for it in v], np.float64) for k, v in val.items() if v}

    model = T.DensityNet(args.arch, head_dropout=args.dropout)
    if args.init:
        try:
            if args.init.suffix == ".tflite":
                from models.training import from_tflite
                from models.training.export import calibration_images
                arrays = from_tflite.keras_arrays(
                    args.init, args.arch, calibration_images(args.data, args.seed),
                    from_tflite.training_patches(train, args.seed, empty_share=args.empty_share))
            else:
                arrays = np.load(args.init)
            T.load_keras_arrays(model, arrays)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise SystemExit(f"train_torch: {args.init}: not weights of arch {args.arch!r} ({e})") from None
        print(f"initialised from {args.init}", flush=True)
    if args.bayes and model.cell_ceiling() is not None:
        print(f"train_torch: warning: --bayes on arch {args.arch!r}, whose ReLU6 before the output "
              "caps a cell's people; the open head (m+, l+) lets dense crowds count (bayes_loss.py)",
              flush=True)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if args.freeze_bn:
        for bn in batch_norms:
            bn.requires_grad_(False)
    model = model.to(dev).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model) if args.ema else model
    # Decoupled weight decay (AdamW) on the convolution kernels only, not BatchNorm or biases.
    kernels = [p for p in model.parameters() if p.ndim == 4]
    others = [p for p in model.parameters() if p.ndim != 4 and p.requires_grad]
    opt = torch.optim.AdamW([{"params": kernels, "weight_decay": args.weight_decay},
                             {"params": others, "weight_decay": 0.0}],
                            lr=args.lr, eps=1e-7)  # Keras' epsilon
    scale = A.DENSITY_SCALE
    stride = A.output_stride(args.arch)

    state_file, last_file = args.out / "state.json", args.out / "last.pt"
    start_epoch, best, elapsed, epochs = 0, float("inf"), 0.0, args.epochs
    if args.resume and last_file.is_file():
        saved = torch.load(last_file, map_location=dev)
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        start_epoch, best, elapsed, epochs = saved["epoch"], saved["best"], saved["elapsed"], saved["epochs"]
        print(f"resumed after epoch {start_epoch} of {epochs} (best score {best:.3f})", flush=True)

    def evaluate() -> tuple[dict, dict]:
        """(count metrics per dataset, the output's ceiling: people a cell and how
        many validation cells reach 99 % of it; None with an open head)."""
        ema.eval()
        out, ceiling, at_ceiling = {}, ema.cell_ceiling(), 0
        with torch.no_grad():
            for k, x in val_x.items():
                counts = []
                for i in range(0, len(x), 40):
                    density = F.relu(ema(x[i:i + 40].float().contiguous(memory_format=torch.channels_last)))
                    counts.append(density.sum((1, 2, 3)))
                    if ceiling is not None:
                        at_ceiling += int((density >= 0.99 * ceiling).sum())
                pred = torch.cat(counts) / scale
                out[k] = D.count_metrics(pred.double().cpu().numpy(), val_y[k])
        return out, {"people_a_cell": None if ceiling is None else round(ceiling / scale, 3),
                     "val_cells_at_it": None if ceiling is None else at_ceiling}

    ema_params = [p for p in ema.state_dict().values() if p.dtype.is_floating_point]
    raw_params = [p for p in model.state_dict().values() if p.dtype.is_floating_point]
    steps_total = (epochs or 0) * args.steps  # with --minutes, known once timed
    cosine_steps = (args.cosine_epochs or 0) * args.steps
    loader = torch.utils.data.DataLoader(
        Patches(train, args.batch, args.seed, start_epoch * args.steps,
                steps_total or 2 ** 62, args.empty_share, points=bool(heads_needed),
                jitter=dict(args.jitter), small_until=args.small_patches * args.steps,
                mix=dict(args.mix), density_on=tuple(args.density_on), patch=args.patch,
                stride=stride),
        batch_size=None, num_workers=args.workers, pin_memory=dev.type == "cuda",
        prefetch_factor=4 if args.workers else None, persistent_workers=False)
    batches = iter(loader)
    log = open(args.out / "log.jsonl", "a", encoding="utf-8")
    step = start_epoch * args.steps
    epoch = start_epoch
    timing = (50, 250)  # steps: skip the first (start-up), time up to the second
    while epochs is None or epoch < epochs:
        model.train()
        if args.freeze_bn:
            for bn in batch_norms:
                bn.eval()  # normalise with the stored statistics and leave them as they are
        t_epoch = time.time()
        losses, count_err = [], []
        for _ in range(args.steps):
            if epochs is None and step == timing[0]:
                sync(dev)
                t_timing = time.time()
            if epochs is None and step == timing[1]:
                sync(dev)
                per_step = (time.time() - t_timing) / (timing[1] - timing[0])
                # A validation pass costs about as much as 10 steps.
                epochs = max(1, int(args.minutes * 60 / ((args.steps + 10) * per_step)))
                steps_total = epochs * args.steps
                print(f"{per_step * 1000:.1f} ms a step -> {epochs} epochs of {args.steps} steps "
                      f"in {args.minutes} min", flush=True)
            x, y, density_on, *heads = next(batches)
            x = x.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
            y = y.to(dev, non_blocking=True).permute(0, 3, 1, 2) * scale
            for g in opt.param_groups:
                g["lr"] = args.lr * lr_factor(step, args.warmup, cosine_steps or steps_total or 2 ** 62)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
                p = model(x)
            p = p.float()
            loss, count = patch_loss(p, y, args.count_weight, args.dense_ref * scale, args.density_weight,
                                     args.density_from * scale, density_on.to(dev, non_blocking=True))
            if heads:
                points, people = heads[0].to(dev, non_blocking=True), p / scale
                if args.bayes:
                    loss = loss + args.bayes * dense_weighted_bayesian_loss(
                        people, points, args.bayes_sigma, args.bayes_background, args.dense_ref, stride)
                if args.ot:
                    loss = loss + args.ot * ot_loss(people, points, stride, args.ot_eps).mean()
                if args.ot_tv:
                    loss = loss + args.ot_tv * binned_tv(people, points, stride).mean()
                if args.bayes_count:
                    loss = loss + args.bayes_count * patch_count_error(people, points)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if args.ema:
                with torch.no_grad():
                    torch._foreach_mul_(ema_params, args.ema)
                    torch._foreach_add_(ema_params, raw_params, alpha=1.0 - args.ema)
            losses.append(loss.detach())
            count_err.append(count.detach() / scale)
            step += 1
            if epochs is not None and step >= epochs * args.steps:
                break
        epoch += 1
        elapsed += time.time() - t_epoch
        validate = epoch >= args.eval_from or epoch == epochs
        metrics, ceiling = evaluate() if validate else ({}, {})
        s = D.selection_score(metrics) if validate else None
        improved = s is not None and s < best
        if improved:
            best = s
            save_npz(ema, args.out / "best.npz")
        row = {"epoch": epoch, "epochs": epochs, "loss": float(torch.stack(losses).mean()),
               "patch_count_mae": float(torch.stack(count_err).mean()),
               "lr": opt.param_groups[0]["lr"], "val": metrics, "score": s, "best": improved,
               "ceiling": ceiling,
               "train_seconds": round(elapsed, 1)}
        log.write(json.dumps(row) + "\n")
        log.flush()
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "epoch": epoch, "epochs": epochs, "best": best, "elapsed": elapsed}, last_file)
        state_file.write_text(json.dumps({"epoch": epoch, "epochs": epochs, "best_score": best,
                                          "train_seconds": elapsed,
                                          "args": {k: str(v) for k, v in vars(args).items()}}))
        print(f"epoch {epoch}/{epochs} loss {row['loss']:.3f} patch-count-mae "
              f"{row['patch_count_mae']:.2f} | " + D.describe(metrics)
              + (f" | score {s:.3f}{' *' if improved else ''}" if s is not None else "")
              + (f" | ceiling {ceiling['people_a_cell']:.2f} a cell, {ceiling['val_cells_at_it']} val cells at it"
                 if ceiling.get("people_a_cell") is not None else "")
              + f" | {elapsed / 60:.1f} min", flush=True)
    save_npz(ema, args.out / "last.npz")
    log.close()
    del batches, loader


if __name__ == "__main__":
    main()
