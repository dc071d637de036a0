"""Train the density model from scratch; checkpoint every epoch; export at the end.

    python -m models.training.train --data ../shared/data --out build/train/density-m \
        --arch m --ema 0.998 --epochs 40

Everything random is seeded (--seed): the validation split, the patch stream of
each epoch (seeded by seed and epoch, so a resumed run sees the same patches)
and the weight initialisation. `--resume` continues from OUT/last.* after an
interruption. Per epoch, the float model (with --ema, the moving average of its
weights) is evaluated on the validation split (whole images at the deployed
512x384) and the best epoch by mall_mae / 2 + shb_mae / 12 (the issue's bars)
is kept as OUT/best.weights.h5. At the end `models.training.export` scores the
best and the last epoch on the validation split again and writes the better one
as float and int8 TFLite models into OUT.

`--init WEIGHTS [--freeze-bn]` starts from trained weights instead, for a second
stage or fine-tuning on a site's own labelled frames.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

from models.training import data as D


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding mall/, shanghaitech_b/, ...")
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, logs, models)")
    p.add_argument("--datasets", nargs="+", default=list(D.DATASETS),
                   help=f"datasets under --data to train on (default: {' '.join(D.DATASETS)})")
    p.add_argument("--arch", default="s", help="network size, see net.ARCHS (default s)")
    p.add_argument("--epochs", type=int, default=32)
    p.add_argument("--steps", type=int, default=250, help="steps per epoch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--warmup", type=int, default=300, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all cores)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.*")
    p.add_argument("--empty-share", type=float, default=D.EMPTY_SHARE,
                   help=f"share of people-free patches: black, white, flat (default {D.EMPTY_SHARE})")
    p.add_argument("--ema", type=float, default=0.0,
                   help="exponential moving average of the weights with this decay (e.g. 0.999), "
                        "validated and saved instead of the raw weights; 0: off")
    p.add_argument("--count-weight", type=float, default=1.0,
                   help="weight of the patch-count L1 term against the pixel terms (default 1)")
    p.add_argument("--init", type=Path, help="start from these weights (a second, fine-tuning stage)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep the BatchNorm statistics of --init fixed (stable fine-tuning: "
                        "the running averages of a batch of 16 mixed patches drift epoch to epoch)")
    p.add_argument("--eval-from", type=int, default=1,
                   help="validate (and keep the best) from this epoch on (default 1); the cosine "
                        "schedule puts the best epoch near the end, and a validation pass costs "
                        "a seventh of an epoch")
    p.add_argument("--no-export", action="store_true", help="skip the TFLite export at the end")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from models.training import net

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    train, val = D.load_split(args.data, args.datasets)
    print(f"loaded {sum(map(len, train.values()))} train, {sum(map(len, val.values()))} val "
          f"images in {time.time() - t0:.0f} s: "
          + ", ".join(f"{k} {len(train[k])}/{len(val[k])}" for k in train), flush=True)
    val_x = {k: np.stack([it.image for it in v])[..., None].astype(np.float32)
             for k, v in val.items() if v}
    val_y = {k: np.array([it.count for it in v], np.float64) for k, v in val.items() if v}

    model = net.build(relu=False, arch=args.arch)
    if args.init:
        net.load(model, args.init)
        print(f"initialised from {args.init}", flush=True)
    if args.freeze_bn:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras 3: also runs it in inference mode
    total = args.epochs * args.steps
    warmup = min(args.warmup, total // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, total - warmup, alpha=0.005, warmup_target=args.lr, warmup_steps=warmup)
    opt = keras.optimizers.Adam(schedule)
    opt.build(model.trainable_variables)
    scale = net.DENSITY_SCALE
    # Weight averaging: single Adam steps move the whole map's scale (whole-image
    # counts swing by tens of percent epoch to epoch); the average does not. The
    # BatchNorm statistics are averaged with the weights they belong to.
    ema = [tf.Variable(v, trainable=False) for v in model.weights] if args.ema else []

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        y = y * scale
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            mse1 = tf.reduce_mean(tf.square(p - y))
            # Counts over 4x4-cell blocks (32 px): forgives a blob placed a cell off.
            p4 = tf.nn.avg_pool2d(p, 4, 4, "VALID")
            y4 = tf.nn.avg_pool2d(y, 4, 4, "VALID")
            mse4 = tf.reduce_mean(tf.square(p4 - y4))
            cells = tf.cast(tf.reduce_prod(tf.shape(p)[1:]), tf.float32)
            count = tf.reduce_mean(tf.abs(tf.reduce_sum(p, [1, 2, 3]) - tf.reduce_sum(y, [1, 2, 3])))
            # The exported model clips at zero: keep the linear output non-negative.
            negative = tf.reduce_mean(tf.square(tf.nn.relu(-p)))
            loss = mse1 + mse4 + args.count_weight * count / cells + negative
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        for a, v in zip(ema, model.weights):
            a.assign(args.ema * a + (1.0 - args.ema) * v)
        return loss, count / scale

    class averaged_weights:
        """Within the block the model holds the averaged weights (no-op without --ema)."""

        def __enter__(self):
            self.raw = [v.numpy() for v in model.weights]
            for a, v in zip(ema, model.weights):
                v.assign(a)

        def __exit__(self, *exc):
            for r, v in zip(self.raw, model.weights):
                v.assign(r)

    @tf.function(reduce_retracing=True)
    def predict(x):
        return tf.reduce_sum(tf.nn.relu(model(x, training=False)), [1, 2, 3]) / scale

    def evaluate() -> dict:
        out = {}
        for k, x in val_x.items():
            pred = np.concatenate([predict(x[i:i + 8]).numpy() for i in range(0, len(x), 8)])
            out[k] = D.count_metrics(pred, val_y[k])
        return out

    state_file = args.out / "state.json"
    start, best, elapsed = 0, float("inf"), 0.0
    if args.resume and state_file.is_file():
        state = json.loads(state_file.read_text())
        model.load_weights(args.out / "last.weights.h5")
        saved = np.load(args.out / "last.optimizer.npz")
        for i, v in enumerate(opt.variables):
            v.assign(saved[f"v{i}"])
        for i, a in enumerate(ema):
            a.assign(saved[f"ema{i}"])
        start, best, elapsed = state["epoch"], state["best_score"], state["train_seconds"]
        print(f"resumed after epoch {start} (best score {best:.3f})", flush=True)

    log = open(args.out / "log.jsonl", "a", encoding="utf-8")
    for epoch in range(start, args.epochs):
        sampler = D.PatchSampler(train, np.random.default_rng([args.seed, epoch]),
                                 empty_share=args.empty_share)
        batches: queue.Queue = queue.Queue(maxsize=6)

        def produce(n=args.steps):
            for _ in range(n):
                batches.put(sampler.batch(args.batch))

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        t_epoch = time.time()
        losses, count_err = [], []
        for _ in range(args.steps):
            x, y = batches.get()
            loss, cerr = train_step(x, y)
            losses.append(float(loss))
            count_err.append(float(cerr))
        producer.join()
        elapsed += time.time() - t_epoch
        model.save_weights(args.out / "last.weights.h5")
        np.savez(args.out / "last.optimizer.npz", **{f"v{i}": v.numpy() for i, v in enumerate(opt.variables)},
                 **{f"ema{i}": a.numpy() for i, a in enumerate(ema)})
        validate = epoch + 1 >= args.eval_from or epoch + 1 == args.epochs
        with averaged_weights():
            metrics = evaluate() if validate else {}
            s = D.selection_score(metrics) if validate else None
            improved = s is not None and s < best
            if improved:
                best = s
                model.save_weights(args.out / "best.weights.h5")
            if ema:
                model.save_weights(args.out / "last_ema.weights.h5")
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
               "patch_count_mae": float(np.mean(count_err)), "lr": float(schedule(opt.iterations)),
               "val": metrics, "score": s, "best": improved, "train_seconds": round(elapsed, 1)}
        log.write(json.dumps(row) + "\n")
        log.flush()
        state_file.write_text(json.dumps({"epoch": epoch + 1, "best_score": best,
                                          "train_seconds": elapsed, "args": {
                                              k: str(v) for k, v in vars(args).items()}}))
        print(f"epoch {epoch + 1}/{args.epochs} loss {row['loss']:.3f} patch-count-mae "
              f"{row['patch_count_mae']:.2f} | " + D.describe(metrics)
              + (f" | score {s:.3f}{' *' if improved else ''}" if s is not None else "")
              + f" | {elapsed / 60:.1f} min", flush=True)
    log.close()

    if not args.no_export:
        from models.training import export
        last = "last_ema" if ema else "last"
        export.main(["--weights", str(args.out / "best.weights.h5"), str(args.out / f"{last}.weights.h5"),
                     "--data", str(args.data), "--out", str(args.out), "--seed", str(args.seed),
                     "--arch", args.arch])


if __name__ == "__main__":
    main()
