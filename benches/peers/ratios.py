#!/usr/bin/env python3
"""Tables of one `run_all.sh` output directory: curvature against PyTorch (epoch time) and
scikit-learn (whole fits). Every ratio is formed within one repeat (or one seed), from
measurements taken back to back, then the median over repeats (seeds) is shown.

  python benches/peers/ratios.py OUT_DIR        # prints, and writes OUT_DIR/summary.json
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def med(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, spec=".3f"):
    return "—" if x is None else format(x, spec)


def pct(x):
    return "—" if x is None else f"{100 * x:.1f}"


def curvature_log(path):
    """(test accuracy, wall seconds) from `curvature train`'s output."""
    if not path.is_file():
        return None, None
    text = path.read_text()
    acc = re.search(r"test accuracy ([0-9.]+)", text)
    wall = re.search(r"wall time ([0-9.]+) s", text)
    return (float(acc.group(1)) if acc else None, float(wall.group(1)) if wall else None)


def history_epoch_seconds(path):
    """Median per-epoch wall time from history.json, epoch 1 (the warm-up) dropped."""
    if not path.is_file():
        return None
    s = [e["seconds"] for e in json.loads(path.read_text())["epochs"]]
    diffs = [b - a for a, b in zip(s, s[1:])]
    return med(diffs[1:])


def epoch_block(out):
    rows = defaultdict(list)
    for d in sorted((out / "epoch").glob("*-b*-t*-r*")):
        m = re.fullmatch(r"(.+)-b(\d+)-t(\d+)-r(\d+)", d.name)
        data, b, t, r = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        rec = {"repeat": r}
        for log in d.glob("curvature-*.log"):
            p = log.stem.split("-", 1)[1]
            rec[f"train_{p}_epoch"] = history_epoch_seconds(d / f"curvature-{p}" / "model.history.json")
            rec[f"train_{p}_acc"] = curvature_log(log)[0]
        for p in ("f64", "f32"):
            f = d / f"timing-{p}.json"
            if f.is_file():
                j = json.loads(f.read_text())
                rec[f"upd_{p}"] = med(j["update_seconds"][1:])
                rec[f"timing_{p}_epoch"] = med(j["epoch_seconds"][1:])
                rec[f"timing_{p}_acc"] = j["test_accuracy"]
        f = d / "torch.json"
        if f.is_file():
            for res in json.loads(f.read_text())["results"]:
                o = res["optimizer"]
                rec[f"torch_{o}_upd"] = res["median_update_seconds"]
                rec[f"torch_{o}_eval"] = res["median_eval_seconds"]
                rec[f"torch_{o}_acc"] = res["test_accuracy"]
        # curvature train's own epoch (f64, or its default) against torch's epoch + evaluation.
        train_key = "train_default_epoch" if "train_default_epoch" in rec else "train_f64_epoch"
        rec["train_epoch"] = rec.get(train_key)
        rec["train_acc"] = rec.get(train_key.replace("_epoch", "_acc"))
        tu, te = rec.get("torch_sgd_upd"), rec.get("torch_sgd_eval")
        rec["r_train_vs_torch_eval"] = ratio(rec["train_epoch"], tu + te if tu and te else None)
        rec["r_f64_vs_torch"] = ratio(rec.get("upd_f64"), tu)
        rec["r_f32_vs_torch"] = ratio(rec.get("upd_f32"), tu)
        rec["r_train_f32_vs_torch_eval"] = ratio(rec.get("train_f32_epoch"), tu + te if tu and te else None)
        rows[(data, b, t)].append(rec)
    return rows


def fit_block(out):
    rows = defaultdict(list)
    for d in sorted((out / "fit").glob("*-s*-t*")):
        m = re.fullmatch(r"(.+)-s(\d+)-t(\d+)", d.name)
        data, s, t = m.group(1), int(m.group(2)), int(m.group(3))
        acc, wall = curvature_log(d / "curvature.log")
        rec = {"seed": s, "cv_acc": acc, "cv_wall": wall}
        f = d / "sklearn.json"
        if f.is_file():
            for fit in json.loads(f.read_text())["fits"]:
                o = fit["solver"]
                rec[f"{o}_s"] = fit["fit_seconds"]
                rec[f"{o}_acc"] = fit["test_accuracy"]
                rec[f"{o}_iter"] = fit["n_iter"]
                rec[f"{o}_conv"] = fit["converged"]
                rec[f"r_{o}"] = ratio(fit["fit_seconds"], wall)
        rows[(data, t)].append(rec)
    return rows


def main():
    out = Path(sys.argv[1])
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").is_file() else ""
    print(machine.rstrip())
    summary = {"machine": machine, "epoch": [], "fit": []}

    ep = epoch_block(out)
    print("\nEpoch time (s, median over the timed epochs, then over repeats); ratios per repeat, "
          "then median. >1: curvature slower.")
    print("  train   = `curvature train` momentum, history.json stamps (update loop + its evaluation "
          "of the training set), f64")
    print("  upd f64/f32 = examples/train_timing, update loop only;  torch = update loop only, "
          "+ev = plus one no-grad pass over the training rows")
    hdr = (f"{'data':9} {'B':>4} {'thr':>3} {'n':>2} | {'train':>7} {'upd f64':>7} {'upd f32':>7} | "
           f"{'torch':>7} {'+ev':>7} {'adam':>7} | {'train/+ev':>9} {'f64/torch':>9} {'f32/torch':>9} | "
           f"{'acc cv%':>7} {'acc pt%':>7}")
    print(hdr)
    print("-" * len(hdr))
    for (data, b, t), recs in sorted(ep.items(), key=lambda k: (k[0][0], -k[0][1], -k[0][2])):
        g = lambda k: med([r.get(k) for r in recs])  # noqa: E731
        tu, te = g("torch_sgd_upd"), g("torch_sgd_eval")
        row = {
            "data": data, "batch": b, "threads": t, "repeats": len(recs),
            "train_epoch_s": g("train_epoch"), "train_f32_epoch_s": g("train_f32_epoch"),
            "update_f64_s": g("upd_f64"), "update_f32_s": g("upd_f32"),
            "torch_sgd_update_s": tu, "torch_sgd_eval_s": te, "torch_adam_update_s": g("torch_adam_upd"),
            "ratio_train_vs_torch_plus_eval": g("r_train_vs_torch_eval"),
            "ratio_train_f32_vs_torch_plus_eval": g("r_train_f32_vs_torch_eval"),
            "ratio_update_f64_vs_torch": g("r_f64_vs_torch"),
            "ratio_update_f32_vs_torch": g("r_f32_vs_torch"),
            "test_acc_curvature_train": g("train_acc"), "test_acc_torch_sgd": g("torch_sgd_acc"),
            "test_acc_torch_adam": g("torch_adam_acc"), "per_repeat": recs,
        }
        summary["epoch"].append(row)
        print(f"{data:9} {b:>4} {t:>3} {len(recs):>2} | {fmt(row['train_epoch_s']):>7} "
              f"{fmt(row['update_f64_s']):>7} {fmt(row['update_f32_s']):>7} | {fmt(tu):>7} "
              f"{fmt(tu + te if tu and te else None):>7} {fmt(row['torch_adam_update_s']):>7} | "
              f"{fmt(row['ratio_train_vs_torch_plus_eval'], '.2f'):>9} "
              f"{fmt(row['ratio_update_f64_vs_torch'], '.2f'):>9} "
              f"{fmt(row['ratio_update_f32_vs_torch'], '.2f'):>9} | "
              f"{pct(row['test_acc_curvature_train']):>7} {pct(row['test_acc_torch_sgd']):>7}")

    fits = fit_block(out)
    if fits:
        print("\nWhole fits with defaults (s, test accuracy %; median over seeds; ratio = sklearn fit "
              "time / curvature train wall time, per seed, then median)")
        print("  curvature: `curvature train` defaults (by the data: K-FAC, relu, f32), wall time it prints")
        print("  sklearn: MLPClassifier defaults (alpha 1e-4, max_iter 200, relu; (100,) digits, (128,) mnist10k), fit() time")
        hdr = (f"{'data':9} {'thr':>3} {'n':>2} | {'cv s':>7} {'cv %':>6} | {'adam s':>7} {'adam %':>6} "
               f"{'it':>4} | {'lbfgs s':>7} {'lbfgs %':>7} {'it':>4} | {'adam/cv':>7} {'lbfgs/cv':>8}")
        print(hdr)
        print("-" * len(hdr))
        for (data, t), recs in sorted(fits.items(), key=lambda k: (k[0][0], -k[0][1])):
            g = lambda k: med([r.get(k) for r in recs])  # noqa: E731
            row = {
                "data": data, "threads": t, "seeds": [r["seed"] for r in recs],
                "curvature_wall_s": g("cv_wall"), "curvature_test_acc": g("cv_acc"),
                "adam_fit_s": g("adam_s"), "adam_test_acc": g("adam_acc"), "adam_n_iter": g("adam_iter"),
                "adam_converged": sum(bool(r.get("adam_conv")) for r in recs),
                "lbfgs_fit_s": g("lbfgs_s"), "lbfgs_test_acc": g("lbfgs_acc"), "lbfgs_n_iter": g("lbfgs_iter"),
                "lbfgs_converged": sum(bool(r.get("lbfgs_conv")) for r in recs),
                "ratio_adam_vs_curvature": g("r_adam"), "ratio_lbfgs_vs_curvature": g("r_lbfgs"),
                "per_seed": recs,
            }
            summary["fit"].append(row)
            print(f"{data:9} {t:>3} {len(recs):>2} | {fmt(row['curvature_wall_s'], '.2f'):>7} "
                  f"{pct(row['curvature_test_acc']):>6} | {fmt(row['adam_fit_s'], '.2f'):>7} "
                  f"{pct(row['adam_test_acc']):>6} {fmt(row['adam_n_iter'], '.0f'):>4} | "
                  f"{fmt(row['lbfgs_fit_s'], '.2f'):>7} {pct(row['lbfgs_test_acc']):>7} "
                  f"{fmt(row['lbfgs_n_iter'], '.0f'):>4} | {fmt(row['ratio_adam_vs_curvature'], '.2f'):>7} "
                  f"{fmt(row['ratio_lbfgs_vs_curvature'], '.2f'):>8}")
    opt_dir = out / "optimizers"
    if opt_dir.is_dir():
        import re
        print("\nEvery optimizer on mnist10k (784-256-10 relu, λ 1e-5, f32, seed 0; its own epochs and batch)")
        print(f"{'optimizer':14} {'epochs':>6} {'test %':>7} {'wall s':>7}")
        summary["optimizers"] = []
        for log in sorted(opt_dir.glob("*.log")):
            text = log.read_text()
            acc = re.search(r"test accuracy ([0-9.]+)", text)
            wall = re.search(r"(\d+) epochs, .* wall time ([0-9.]+) s", text)
            row = {"optimizer": log.stem,
                   "test_acc": float(acc.group(1)) if acc else None,
                   "epochs": int(wall.group(1)) if wall else None,
                   "wall_s": float(wall.group(2)) if wall else None,
                   "error": None if acc else text.strip().splitlines()[-1:] }
            summary["optimizers"].append(row)
            print(f"{row['optimizer']:14} {fmt(row['epochs'], '.0f'):>6} {pct(row['test_acc']):>7} "
                  f"{fmt(row['wall_s'], '.2f'):>7}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nsummary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
