"""Several train_torch runs side by side, inside one time limit, results gathered.

    python -m models.training.parallel --data .gpu/data --out build/runs --minutes 8.5 \
        --collect "$OUT" \
        --run "m-wd:--arch m --epochs 40 --weight-decay 0.02 --seed 11" \
        --run "l:--arch l --epochs 40 --seed 11"

One GPU trains several small networks at once faster than one after the
other (one run leaves most of an H100 idle), and the GPU machine is lent in
calls of at most 10 minutes. Each `--run NAME:ARGS` becomes
`train_torch --data DATA --out OUT/NAME ARGS`, with the machine's cores
shared out as data workers unless ARGS sets `--workers`. A run still going
when `--minutes` are up is stopped (its best.npz so far is kept: train_torch
writes it after every improving epoch). `--collect DIR` then copies each
run's best.npz and log.jsonl to DIR/NAME-best.npz and DIR/NAME-log.jsonl,
flat, for a tool that returns a few plain files (the device machine's $OUT).
The summary at the end gives each run's best epoch and validation score.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
REPO = Path(__file__).resolve().parents[2]


def parse_run(text: str) -> tuple[str, list[str]]:
    name, sep, args = text.partition(":")
    if not sep or not NAME.match(name):
        raise argparse.ArgumentTypeError(
            f"--run {text!r}: expected NAME:ARGS with NAME of letters, digits, '.', '_', '-'")
    return name, shlex.split(args)


def best_epoch(log: Path) -> dict | None:
    """The log row of the run's best (lowest) validation score, or None."""
    if not log.is_file():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    scored = [r for r in rows if r.get("score") is not None]
    return min(scored, key=lambda r: r["score"]) if scored else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="each run writes OUT/NAME")
    p.add_argument("--run", type=parse_run, action="append", required=True, metavar="NAME:ARGS")
    p.add_argument("--minutes", type=float, required=True, help="stop every run after this long")
    p.add_argument("--collect", type=Path, help="copy NAME-best.npz and NAME-log.jsonl here")
    args = p.parse_args(argv)
    names = [n for n, _ in args.run]
    if len(set(names)) != len(names):
        p.error(f"--run names must differ: {', '.join(names)}")

    workers = max(1, (os.cpu_count() or 2) // len(args.run) - 1)
    procs = {}
    for name, extra in args.run:
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "models.training.train_torch", "--data", str(args.data.resolve()),
               "--out", str(out.resolve())] + extra
        if "--workers" not in extra:
            cmd += ["--workers", str(workers)]
        print(f"{name}: {shlex.join(cmd)}", flush=True)
        with open(out / "train.log", "w") as log:
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline and any(pr.poll() is None for pr in procs.values()):
        time.sleep(2)
    for name, pr in procs.items():
        if pr.poll() is None:
            print(f"{name}: still running after {args.minutes} min, stopped", flush=True)
            pr.terminate()
    for pr in procs.values():
        try:
            pr.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.wait()

    failed = 0
    for name, pr in procs.items():
        out = args.out / name
        best = best_epoch(out / "log.jsonl")
        if best is None:
            failed += 1
            tail = (out / "train.log").read_text(errors="replace").strip().splitlines()[-3:]
            print(f"{name}: no validated epoch (exit {pr.returncode}): " + " | ".join(tail), flush=True)
            continue
        val = " | ".join(f"{k} mae {m['mae']:.2f} bias {m['bias']:+.2f}" for k, m in best["val"].items())
        print(f"{name}: best epoch {best['epoch']} of {best['epochs']}, score {best['score']:.3f}: {val}",
              flush=True)
        if args.collect:
            args.collect.mkdir(parents=True, exist_ok=True)
            for kept in ("best.npz", "log.jsonl"):
                if (out / kept).is_file():
                    shutil.copyfile(out / kept, args.collect / f"{name}-{kept}")
    return 1 if failed == len(procs) else 0


if __name__ == "__main__":
    sys.exit(main())
