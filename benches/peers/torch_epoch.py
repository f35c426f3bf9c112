#!/usr/bin/env python3
"""PyTorch's epoch time on curvature's splits: momentum SGD and Adam, mini-batches, float32.

The network is curvature's: D-H-10, sigmoid hidden, softmax + cross-entropy
(nn.Linear → sigmoid → nn.Linear, nn.CrossEntropyLoss with mean reduction). Data are the
rows `examples/export_split` writes (scaled as curvature scales them), by default the
whole training part before curvature takes its validation rows out: mnist10k's natural
8000 training rows, digits' 1438.

Per configuration (optimizer × batch size): one warm-up epoch, then --epochs timed epochs.
An epoch is a fresh torch.randperm of the rows, then for every batch: index the rows,
zero_grad, forward, loss, backward, step. Only that loop is timed (time.perf_counter around
it): `update_seconds`. Separately, after every epoch, one no-grad forward over the training
rows giving their loss and accuracy is timed (`eval_seconds`), because curvature's
history.json stamps include its per-epoch evaluation of the training (and validation) set.
Reported: median (and min, max) of the timed epochs, test accuracy after all 1 + E epochs.

  python benches/peers/torch_epoch.py --data mnist10k --hidden 128 \\
      --optimizers sgd,adam --batch-sizes 32,128 --epochs 5 --json torch.json

Threads: torch.set_num_threads(--threads, default 2) and set_num_interop_threads(same).
--l2 λ adds curvature's penalty (λ/2)‖W‖² on the weights only (as weight_decay on the
weight tensors, biases 0); default 0. --init-from takes θ₀ from a curvature model file
(`curvature train --epochs 0 --out M` writes its Glorot θ₀) instead of torch's default init.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_split, load_safetensors, load_split, machine, median  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

DEFAULT_HIDDEN = {"mnist10k": 128, "digits": 50}


class Mlp(nn.Module):
    def __init__(self, d, h, k):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(d, h), nn.Linear(h, k)])

    def forward(self, x):
        return self.layers[1](torch.sigmoid(self.layers[0](x)))


def make_optimizer(name, model, lr, momentum, l2):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": l2}, {"params": biases, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr if lr is not None else 0.1, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr if lr is not None else 1e-3)
    raise ValueError(f"optimizer {name}: use sgd or adam")


def epoch(model, opt, loss_fn, x, y, batch, gen):
    """One shuffled pass of updates; returns its wall time (s)."""
    n = x.shape[0]
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n, batch):
        idx = perm[start : start + batch]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(model, loss_fn, x, y):
    out = model(x)
    return float(loss_fn(out, y)), float((out.argmax(1) == y).float().mean())


def run_one(args, data, parts, opt_name, batch):
    x, y = (torch.from_numpy(a) for a in parts[args.rows])
    xt, yt = (torch.from_numpy(a) for a in parts["test"])
    torch.manual_seed(args.seed)
    hidden = args.hidden or DEFAULT_HIDDEN.get(data, 50)
    model = Mlp(x.shape[1], hidden, int(max(y.max(), yt.max())) + 1)
    if args.init_from:
        tensors, _ = load_safetensors(args.init_from)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.from_numpy(np.array(tensors[name], dtype=np.float32)))
    opt = make_optimizer(opt_name, model, args.lr, args.momentum, args.l2)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    warmup = epoch(model, opt, loss_fn, x, y, batch, gen)
    update, evals = [], []
    for _ in range(args.epochs):
        update.append(epoch(model, opt, loss_fn, x, y, batch, gen))
        t0 = time.perf_counter()
        train_loss, train_acc = evaluate(model, loss_fn, x, y)
        evals.append(time.perf_counter() - t0)
    test_loss, test_acc = evaluate(model, loss_fn, xt, yt)
    return {
        "data": data,
        "sizes": [x.shape[1], hidden, model.layers[1].out_features],
        "optimizer": opt_name,
        "lr": opt.param_groups[0]["lr"],
        "momentum": args.momentum if opt_name == "sgd" else None,
        "l2": args.l2,
        "batch_size": batch,
        "rows": args.rows,
        "train_rows": int(x.shape[0]),
        "warmup_seconds": warmup,
        "epochs_timed": args.epochs,
        "update_seconds": update,
        "eval_seconds": evals,
        "median_update_seconds": median(update),
        "min_update_seconds": min(update),
        "max_update_seconds": max(update),
        "median_eval_seconds": median(evals),
        "epochs_total": 1 + args.epochs,
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "test_rows": int(xt.shape[0]),
        "init": args.init_from or "torch default (kaiming uniform)",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist10k", help="digits or mnist10k (comma-separated for both)")
    ap.add_argument("--split-dir", default=None, help="an export_split directory (default: export one)")
    ap.add_argument("--seed", type=int, default=0, help="split seed for the export, and torch's seed")
    ap.add_argument("--rows", default="trainval", choices=["trainval", "train"],
                    help="trainval: the whole training part (mnist10k 8000); train: less curvature's validation rows")
    ap.add_argument("--hidden", type=int, default=None, help="hidden width (default 128 mnist10k, 50 digits)")
    ap.add_argument("--optimizers", default="sgd,adam")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs after the warm-up epoch")
    ap.add_argument("--lr", type=float, default=None, help="default 0.1 for sgd, 1e-3 for adam")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--l2", type=float, default=0.0)
    ap.add_argument("--init-from", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass  # already set in this process
    results = []
    for data in args.data.split(","):
        split_dir = args.split_dir or export_split(
            data, args.seed, Path(tempfile.gettempdir()) / f"curvature-split-{data}-s{args.seed}")
        parts, _ = load_split(split_dir)
        for opt_name in args.optimizers.split(","):
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                r = run_one(args, data, parts, opt_name, batch)
                results.append(r)
                if not args.quiet:
                    print(f"torch {data:8} {opt_name:4} batch {batch:>4}: epoch {r['median_update_seconds']:.4f} s "
                          f"(min {r['min_update_seconds']:.4f}, max {r['max_update_seconds']:.4f}; "
                          f"+ eval {r['median_eval_seconds']:.4f} s) over {args.epochs} epochs after 1 warm-up; "
                          f"test acc {100 * r['test_accuracy']:.2f}% after {r['epochs_total']} epochs", flush=True)
    report = {
        "tool": "torch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "dtype": "float32",
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "machine": machine(),
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
