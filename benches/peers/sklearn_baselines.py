#!/usr/bin/env python3
"""scikit-learn's MLPClassifier on curvature's splits: fit time and test accuracy.

For each data set and split seed, `examples/export_split` writes the rows `curvature train
--seed S` uses (scaled as curvature scales them: digits ×1/16, MNIST ×1/255), and
MLPClassifier fits the same network shape: one hidden layer (--hidden, default 128 for
mnist10k and 50 for digits), softmax output and log-loss, `activation` logistic (curvature's
sigmoid; `--activation relu` for sklearn's default). Everything else is sklearn's default, as
a user would leave it: alpha 1e-4, early_stopping False, max_iter 200 (for adam: epochs,
batch_size min(200, n), lr 1e-3, stop after 10 epochs without tol 1e-4 improvement; for
lbfgs: iterations, max_fun 15000), random_state = the split seed.

Fitted on the rows curvature's optimizer updates on (--fit-on train: the training part less
curvature's validation rows — digits 1294, mnist10k 7200; `trainval` for the whole training
part); scored on the test part (digits 359 of a seeded shuffle, mnist10k the natural 2000).

Timed: the `fit` call alone (time.perf_counter). Threads: BLAS/OpenMP pools limited to
--threads (default 2) with threadpoolctl, and OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/
MKL_NUM_THREADS set to it before numpy is imported (unless already set).

  python benches/peers/sklearn_baselines.py --data digits,mnist10k --seeds 0,1,2,3,4 \\
      --solvers adam,lbfgs --json sklearn.json

Prints one row per (data, solver) with the median over the seeds, and writes every fit to
--json.
"""

import argparse
import os
import sys

THREADS_DEFAULT = 2


def _threads_from_argv():
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return str(THREADS_DEFAULT)


# Before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads_from_argv())

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_split, limit_threads, load_split, machine, median  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

DEFAULT_HIDDEN = {"mnist10k": 128, "digits": 50}


def fit_one(parts, data, seed, solver, hidden, activation, fit_on):
    x, y = parts[fit_on]
    xt, yt = parts["test"]
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), activation=activation, solver=solver,
                        random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(x, y)
        seconds = time.perf_counter() - t0
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {
        "data": data,
        "seed": seed,
        "solver": solver,
        "hidden": [hidden],
        "activation": activation,
        "alpha": clf.alpha,
        "max_iter": clf.max_iter,
        "batch_size": min(200, len(y)) if solver != "lbfgs" else "full",
        "fit_on": fit_on,
        "fit_rows": int(len(y)),
        "fit_seconds": seconds,
        "n_iter": int(clf.n_iter_),
        "converged": converged,
        "final_loss": float(clf.loss_),
        "train_accuracy": float(clf.score(x, y)),
        "test_accuracy": float(clf.score(xt, yt)),
        "test_rows": int(len(yt)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits,mnist10k")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="split seeds (curvature train --seed)")
    ap.add_argument("--solvers", default="adam,lbfgs")
    ap.add_argument("--hidden", type=int, default=None, help="default 128 mnist10k, 50 digits")
    ap.add_argument("--activation", default="logistic")
    ap.add_argument("--fit-on", default="train", choices=["train", "trainval"])
    ap.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    ap.add_argument("--work", default=None, help="directory of exported splits DATA-sSEED (made if missing; default: the temp dir)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    def split_dir(data, seed):
        if args.work:
            return Path(args.work) / f"{data}-s{seed}"
        return Path(tempfile.gettempdir()) / f"curvature-split-{data}-s{seed}"

    fits = []
    with limit_threads(args.threads):
        for data in args.data.split(","):
            hidden = args.hidden or DEFAULT_HIDDEN.get(data, 50)
            for seed in [int(s) for s in args.seeds.split(",")]:
                parts, _ = load_split(export_split(data, seed, split_dir(data, seed)))
                for solver in args.solvers.split(","):
                    r = fit_one(parts, data, seed, solver, hidden, args.activation, args.fit_on)
                    fits.append(r)
                    if not args.quiet:
                        print(f"sklearn {data:8} seed {seed} {solver:5}: {r['fit_seconds']:7.2f} s, "
                              f"{r['n_iter']:3} iterations{'' if r['converged'] else ' (max_iter reached)'}, "
                              f"test acc {100 * r['test_accuracy']:.2f}%", flush=True)
        from threadpoolctl import threadpool_info

        pools = [{k: p.get(k) for k in ("internal_api", "num_threads", "version")} for p in threadpool_info()]

    print(f"\nscikit-learn {sklearn.__version__}, MLPClassifier, activation {args.activation}, "
          f"fit on '{args.fit_on}', {args.threads} threads; median over seeds")
    print(f"{'data':9} {'solver':6} {'seeds':>5} {'fit s':>8} {'iters':>6} {'test acc %':>10} {'converged':>9}")
    summary = []
    for data in args.data.split(","):
        for solver in args.solvers.split(","):
            rs = [r for r in fits if r["data"] == data and r["solver"] == solver]
            row = {
                "data": data, "solver": solver, "seeds": [r["seed"] for r in rs],
                "median_fit_seconds": median([r["fit_seconds"] for r in rs]),
                "median_n_iter": median([r["n_iter"] for r in rs]),
                "median_test_accuracy": median([r["test_accuracy"] for r in rs]),
                "converged": sum(r["converged"] for r in rs),
            }
            summary.append(row)
            print(f"{data:9} {solver:6} {len(rs):>5} {row['median_fit_seconds']:>8.2f} "
                  f"{row['median_n_iter']:>6.0f} {100 * row['median_test_accuracy']:>10.2f} "
                  f"{row['converged']:>5}/{len(rs)}")
    report = {
        "tool": "sklearn",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "threads": args.threads,
        "threadpools_during_fit": pools,
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                               "OMP_WAIT_POLICY")},
        "machine": machine(),
        "fits": fits,
        "summary": summary,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
