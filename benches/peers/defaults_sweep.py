#!/usr/bin/env python3
"""The sweep that chose `curvature train`'s defaults: candidate recipes run over
seeds, each judged on its VALIDATION rows only (the last epoch's validation
accuracy, 10% of the training part); the test accuracy is recorded beside it
but never used to choose.

    benches/peers/defaults_sweep.py DATA OUT.jsonl [--seeds 0,1,2,3,4] [--only NAME,...]

DATA is `digits` or `mnist10k`. Each line of OUT.jsonl is one run:
{"data", "recipe", "args", "seed", "val_accuracy", "val_loss", "test_accuracy",
"wall_seconds"}; a run already in OUT.jsonl is not re-run (the file can be
extended). At the end a table per recipe: medians over seeds, sorted by
validation accuracy.

Environment: CURVATURE [target/release/curvature].
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

# Each recipe: a name and the train arguments beside --data/--seed. The
# candidate set is the one README's "How the defaults were chosen" reports.
RECIPES = {
    "digits": {
        # The old default, as the baseline.
        "hf-sigmoid50-l2e-3": "--precision f64 --optimizer hessian-free --hidden 50 --activation sigmoid --l2 1e-3",
        "hf-relu100-l2e-4": "--precision f32 --optimizer hessian-free --hidden 100 --activation relu --l2 1e-4",
        "hf-relu100-l2e-3": "--precision f32 --optimizer hessian-free --hidden 100 --activation relu --l2 1e-3",
        "hf-tanh100-l2e-3": "--precision f32 --optimizer hessian-free --hidden 100 --activation tanh --l2 1e-3",
        "cgpr-relu100-l2e-4": "--precision f32 --optimizer cg-pr --hidden 100 --activation relu --l2 1e-4 --epochs 100",
        "cgpr-relu100-l2e-3": "--precision f32 --optimizer cg-pr --hidden 100 --activation relu --l2 1e-3 --epochs 100",
        "cgpr-relu200-l2e-3": "--precision f32 --optimizer cg-pr --hidden 200 --activation relu --l2 1e-3 --epochs 100",
        "lbfgs-relu100-l2e-3": "--precision f32 --optimizer lbfgs --hidden 100 --activation relu --l2 1e-3 --epochs 100",
        "kfac-relu100-l2e-4": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-4 --epochs 30 --batch-size 128",
        "kfac-relu100-l2e-3": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-3 --epochs 30 --batch-size 128",
        "kfac-relu100-l2e-5": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-5 --epochs 30 --batch-size 128",
        "kfac-relu100-l2e-4-b64": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-4 --epochs 30 --batch-size 64",
        "kfac-relu100-l2e-4-b256": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-4 --epochs 30 --batch-size 256",
        "kfac-relu100-l2e-4-e15": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-4 --epochs 15 --batch-size 128",
        "kfac-relu100-l2e-4-e50": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-4 --epochs 50 --batch-size 128",
        "kfac-relu200-l2e-4": "--precision f32 --optimizer kfac --hidden 200 --activation relu --l2 1e-4 --epochs 30 --batch-size 128",
        "kfac-relu100-l2e-4-f64": "--precision f64 --optimizer kfac --hidden 100 --activation relu --l2 1e-4 --epochs 30 --batch-size 128",
        # The λ grid and the evidence around the winner (README: λ by the evidence).
        "kfac-relu100-l2e-6": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-6 --epochs 30 --batch-size 128",
        "kfac-relu100-l2e-2": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 1e-2 --epochs 30 --batch-size 128",
        "kfac-relu100-evidence": "--precision f32 --optimizer kfac --hidden 100 --activation relu --l2 evidence --epochs 30 --batch-size 128",
        "adam-relu100-l2e-4": "--precision f32 --optimizer adam --hidden 100 --activation relu --l2 1e-4 --epochs 60 --batch-size 32",
        "hf-relu100-evidence": "--precision f32 --optimizer hessian-free --hidden 100 --activation relu --l2 evidence",
    },
    "mnist10k": {
        # The old default, as the baseline.
        "hf-sigmoid50-l2e-3": "--precision f64 --optimizer hessian-free --hidden 50 --activation sigmoid --l2 1e-3",
        "kfac-relu256-l2e-5-b256-10": "--precision f32 --optimizer kfac --hidden 256 --activation relu --l2 1e-5 --batch-size 256 --epochs 10",
        "kfac-relu256-l2e-4-b256-10": "--precision f32 --optimizer kfac --hidden 256 --activation relu --l2 1e-4 --batch-size 256 --epochs 10",
        "kfac-relu512-l2e-4-b256-8": "--precision f32 --optimizer kfac --hidden 512 --activation relu --l2 1e-4 --batch-size 256 --epochs 8",
        "kfac-relu512-l2e-5-b256-8": "--precision f32 --optimizer kfac --hidden 512 --activation relu --l2 1e-5 --batch-size 256 --epochs 8",
        "kfac-relu512-l2e-4-b512-10": "--precision f32 --optimizer kfac --hidden 512 --activation relu --l2 1e-4 --batch-size 512 --epochs 10",
        "kfac-relu256x2-l2e-4-b256-8": "--precision f32 --optimizer kfac --hidden 256,256 --activation relu --l2 1e-4 --batch-size 256 --epochs 8",
        "kfac-relu1024-l2e-4-b256-6": "--precision f32 --optimizer kfac --hidden 1024 --activation relu --l2 1e-4 --batch-size 256 --epochs 6",
        "kfac-relu256-l2e-4-b256-5": "--precision f32 --optimizer kfac --hidden 256 --activation relu --l2 1e-4 --batch-size 256 --epochs 5",
        "kfac-relu256-l2e-4-b512-6": "--precision f32 --optimizer kfac --hidden 256 --activation relu --l2 1e-4 --batch-size 512 --epochs 6",
        "kfac-relu512-l2e-4-b512-5": "--precision f32 --optimizer kfac --hidden 512 --activation relu --l2 1e-4 --batch-size 512 --epochs 5",
        "kfac-relu384-l2e-4-b512-6": "--precision f32 --optimizer kfac --hidden 384 --activation relu --l2 1e-4 --batch-size 512 --epochs 6",
        "kfac-relu256-l2e-4-b256-5-inv50": "--precision f32 --optimizer kfac --set inverse-every=50 --hidden 256 --activation relu --l2 1e-4 --batch-size 256 --epochs 5",
        # The λ grid and the evidence around the winner (README: λ by the evidence).
        "kfac-relu256-l2e-5-b256-5-inv50": "--precision f32 --optimizer kfac --set inverse-every=50 --hidden 256 --activation relu --l2 1e-5 --batch-size 256 --epochs 5",
        "kfac-relu256-l2e-3-b256-5-inv50": "--precision f32 --optimizer kfac --set inverse-every=50 --hidden 256 --activation relu --l2 1e-3 --batch-size 256 --epochs 5",
        "kfac-relu256-evidence-b256-5-inv50": "--precision f32 --optimizer kfac --set inverse-every=50 --hidden 256 --activation relu --l2 evidence --evidence-every 1 --batch-size 256 --epochs 5",
        "adam-relu256-l2e-4-b64-15": "--precision f32 --optimizer adam --hidden 256 --activation relu --l2 1e-4 --batch-size 64 --epochs 15",
        "adam-relu512-l2e-4-b64-12": "--precision f32 --optimizer adam --hidden 512 --activation relu --l2 1e-4 --batch-size 64 --epochs 12",
    },
}


def run(binary, data, args, seed):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [binary, "train", "--data", data, "--seed", str(seed), "--quiet",
               "--checkpoint-every", "0", "--run-dir", tmp + "/run", *args.split()]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
        text = out.stdout
        test = re.search(r"test accuracy ([0-9.]+)", text)
        wall = re.search(r"wall time ([0-9.]+) s", text)
        with open(tmp + "/run/history.json") as f:
            hist = json.load(f)
        last = hist["epochs"][-1]
        return {
            "val_accuracy": last["val_accuracy"],
            "val_loss": last["val_loss"],
            "test_accuracy": float(test.group(1)) if test else None,
            "wall_seconds": float(wall.group(1)) if wall else None,
            "epochs": hist["last_epoch"],
        }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", choices=sorted(RECIPES))
    p.add_argument("out")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--only", default="")
    a = p.parse_args()
    binary = os.environ.get("CURVATURE", "target/release/curvature")
    seeds = [int(s) for s in a.seeds.split(",")]
    recipes = RECIPES[a.data]
    if a.only:
        recipes = {k: v for k, v in recipes.items() if k in a.only.split(",")}
    done = set()
    if os.path.exists(a.out):
        with open(a.out) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["recipe"], r["seed"]))
    with open(a.out, "a") as f:
        for seed in seeds:
            for name, args in recipes.items():
                if (name, seed) in done:
                    continue
                r = {"data": a.data, "recipe": name, "args": args, "seed": seed,
                     **run(binary, a.data, args, seed)}
                print(json.dumps(r), flush=True)
                f.write(json.dumps(r) + "\n")
                f.flush()
    table(a.out, a.data)


def table(path, data):
    rows = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["data"] == data and "val_accuracy" in r:
                rows.setdefault(r["recipe"], []).append(r)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    order = sorted(rows, key=lambda k: -med(rows[k], "val_accuracy"))
    print(f"\n| recipe ({data}) | seeds | validation acc. (median) | wall s (median) | test acc. (median, not used to choose) |")
    print("|---|---:|---:|---:|---:|")
    for k in order:
        rs = rows[k]
        print(f"| {k} | {len(rs)} | {100*med(rs, 'val_accuracy'):.2f}% | {med(rs, 'wall_seconds'):.2f} | {100*med(rs, 'test_accuracy'):.2f}% |")


if __name__ == "__main__":
    sys.exit(main())
