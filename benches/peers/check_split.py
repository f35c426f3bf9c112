#!/usr/bin/env python3
"""Checks that `examples/export_split` writes exactly the rows `curvature train` uses.

For each (data, seed): export the split, train a model with `curvature train --seed S`,
then compare, on the exported rows, numpy's forward pass of the saved weights with
  - test part: `curvature eval` (the model's own test split, from its metadata),
  - train and validation parts: the last record of the run's history.json
    (E with the L2 penalty on the train part, accuracy on both parts).
Accuracies must agree exactly (same rows, same labels); losses to ~1e-6 relative (the model
file stores θ in f32; training evaluated with the f64 θ).

  python benches/peers/check_split.py [--data digits --seeds 0,3] [--epochs N] [--json F]
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TARGET, ce_loss, export_split, forward, load_safetensors, load_split  # noqa: E402

CURVATURE = TARGET / "release" / "curvature"


def check(data, seed, work, extra):
    split_dir = export_split(data, seed, work / f"{data}_s{seed}")
    parts, meta = load_split(split_dir)
    model = work / f"model_{data}_s{seed}" / "model.safetensors"
    cmd = [str(CURVATURE), "train", "--data", data, "--seed", str(seed), "--device", "cpu",
           "--quiet", "--force", "--checkpoint-every", "0", "--out", str(model)] + extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ev = subprocess.run([str(CURVATURE), "eval", "--model", str(model), "--data", data,
                         "--device", "cpu"], check=True, capture_output=True, text=True).stdout
    eval_loss = float(re.search(r"^loss\s+([0-9.eE+-]+)", ev, re.M).group(1))
    m = re.search(r"^accuracy\s+[0-9.]+ \((\d+) of (\d+)\)", ev, re.M)
    eval_correct, eval_rows = int(m.group(1)), int(m.group(2))
    history = json.loads(model.with_suffix(".history.json").read_text())
    last = history["epochs"][-1]
    tensors, mmeta = load_safetensors(model)
    l2 = float(mmeta["l2"])

    rows = []
    x, y = parts["test"]
    p = forward(tensors, mmeta, x)
    rows.append(("test", len(y), eval_rows, int((p.argmax(1) == y).sum()), eval_correct,
                 ce_loss(p, y, tensors, l2), eval_loss))
    x, y = parts["train"]
    p = forward(tensors, mmeta, x)
    n_train = round(last["train_accuracy"] * len(y))
    rows.append(("train", len(y), len(y), int((p.argmax(1) == y).sum()), n_train,
                 ce_loss(p, y, tensors, l2), last["train_loss"]))
    if "val" in parts:
        x, y = parts["val"]
        p = forward(tensors, mmeta, x)
        rows.append(("val", len(y), len(y), int((p.argmax(1) == y).sum()),
                     round(last["val_accuracy"] * len(y)), ce_loss(p, y, tensors, l2),
                     last["val_loss"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--seeds", default="0,3")
    ap.add_argument("--epochs", type=int, default=None, help="passed to curvature train")
    ap.add_argument("--work", default=None, help="directory for splits and models (default: a temp dir)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="curvature-check-split-"))
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    ok = True
    out = []
    print(f"{'data':9} {'seed':>4} {'part':6} {'rows np/cv':>11} {'correct np/cv':>15} "
          f"{'loss numpy':>12} {'loss curvature':>14} {'rel diff':>9}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for part, n_np, n_cv, c_np, c_cv, l_np, l_cv in check(args.data, seed, work, extra):
            rel = abs(l_np - l_cv) / abs(l_cv)
            good = n_np == n_cv and c_np == c_cv and rel < 1e-5
            ok &= good
            print(f"{args.data:9} {seed:>4} {part:6} {n_np:>5}/{n_cv:<5} {c_np:>7}/{c_cv:<7} "
                  f"{l_np:>12.7f} {l_cv:>14.7f} {rel:>9.1e} {'ok' if good else 'MISMATCH'}")
            out.append(dict(data=args.data, seed=seed, part=part, rows_numpy=n_np, rows_curvature=n_cv,
                            correct_numpy=c_np, correct_curvature=c_cv, loss_numpy=l_np,
                            loss_curvature=l_cv, ok=good))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print("all parts agree" if ok else "MISMATCH: the exported rows are not the ones curvature trains on")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
