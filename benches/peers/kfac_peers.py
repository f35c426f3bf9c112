"""BackPACK and curvlinops on the ops of `curvature bench` that they also compute: the
K-FAC factors, the K-FAC inverse refresh (eigendecompositions of every factor) and the
per-sample gradients, on the same network, rows and precision as a workload of
`curvature bench` (src/bench.rs).

    python benches/peers/kfac_peers.py --workload S --precision f32 --json out.json

Workloads (src/bench.rs `Workload::spec`): S = 64-50-10 sigmoid on digits (1797 rows),
M = 784-128-10 sigmoid on mnist10k (10000 rows), L = 784-512-512-10 tanh on mnist10k;
softmax cross-entropy, mean over rows (CrossEntropyLoss(reduction='mean')). The rows are
read from the files `curvature` loads (data/digits.csv.gz ×1/16, data/mnist10k-*.gz ×1/255).
θ is PyTorch's default init (values do not change the work done).

Timed, each after warm-up, median of --runs (fewer when one run takes over --long-s):
  backpack   K-FAC factors       forward + loss + backward `with backpack(KFLR())` on all N
                                 rows (exact factors: curvature's `Fisher::Exact`); the
                                 backward also writes .grad (curvature's op does not)
  backpack   K-FAC factors (mc)  the same with KFAC() (1 MC sample; curvature's bench does
                                 not time its mc flavour: compare with care)
  backpack   K-FAC inverse       torch.linalg.eigh of every distinct KFLR factor (A_l: in_l,
                                 BackPACK has no bias row; B_l: out_l), factors made before
  backpack   per-sample grads    forward + loss + backward `with backpack(BatchGrad())` on the
                                 first N_b = min(N, 2^25 // W) rows (curvature's N_b)
  curvlinops K-FAC factors       KFACLinearOperator(fisher_type='type-2',
                                 separate_weight_and_bias=False, check_deterministic=False)
                                 construction + compute_kronecker_factors() (its forward and
                                 its K backward passes) on all N rows in one batch
  curvlinops K-FAC factors (mc)  the same with fisher_type='mc', mc_samples=1
  curvlinops K-FAC inverse       a fresh KFACInverseLinearOperator(use_exact_damping=True,
                                 damping=1e-3) and its per-layer eigendecompositions
                                 (_compute_or_get_cached_inverse: eigh of A_l (in_l+1, with
                                 the bias row, as curvature's) and B_l (out_l)), factors made before
  both       K-FAC inverse (f64) in f32 runs, the peer's inverse row on its factors cast to f64
                                 (cast untimed): curvature's KroneckerFactors are f64 and its
                                 refresh decomposes them in f64 whatever --precision
"""

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[2]
PER_SAMPLE_ENTRIES = 1 << 25  # src/bench.rs PER_SAMPLE_ENTRIES

WORKLOADS = {
    "S": ([64, 50, 10], "sigmoid", "digits"),
    "M": ([784, 128, 10], "sigmoid", "mnist10k"),
    "L": ([784, 512, 512, 10], "tanh", "mnist10k"),
}


def load_data(name, data_dir):
    data_dir = Path(data_dir)
    if name == "digits":
        with gzip.open(data_dir / "digits.csv.gz", "rt") as f:
            a = np.loadtxt(f, delimiter=",", dtype=np.int64)
        return a[:, :64].astype(np.float64) / 16.0, a[:, 64]
    with gzip.open(data_dir / "mnist10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    n, r, c = (int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, r * c).astype(np.float64) / 255.0
    with gzip.open(data_dir / "mnist10k-labels-idx1-ubyte.gz", "rb") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    return x, y


def make_model(torch, sizes, hidden, dtype):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid() if hidden == "sigmoid" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers).to(dtype)


def timed(fn, runs, warmup, long_s, prepare=None):
    """Median seconds of fn() over `runs` runs after `warmup` (3 runs when a warm-up run
    takes over long_s). `prepare()` runs untimed before every call; returns (median, all)."""
    first = None
    for _ in range(max(warmup, 1)):
        arg = prepare() if prepare else None
        t0 = time.perf_counter()
        fn(arg)
        first = time.perf_counter() - t0
    if first > long_s:
        runs = min(runs, 3)
    times = []
    for _ in range(runs):
        arg = prepare() if prepare else None
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


OPS = ["K-FAC factors", "K-FAC factors (mc)", "K-FAC inverse", "K-FAC inverse (f64)", "per-sample grads"]
# the curvature row each peer row is divided by
CURV_OP = {"K-FAC factors (mc)": "K-FAC factors", "K-FAC inverse (f64)": "K-FAC inverse"}
PEERS = ["backpack", "curvlinops"]


def summarize(out_dir):
    """Tables from OUT_DIR/r<R>/{curvature,peers}-<W>-<P>.json: per op the median over
    repeats of each side's time, and the median over repeats of the per-repeat ratio
    peer / curvature (> 1: curvature faster). The mc rows are divided by curvature's exact
    factors (its bench does not time mc)."""
    out_dir = Path(out_dir)
    reps = sorted(p for p in out_dir.glob("r*") if p.is_dir())
    keys = sorted({p.name[len("peers-"):-len(".json")] for r in reps for p in r.glob("peers-*.json")},
                  key=lambda k: ("SML".index(k[0]), k))
    summary, lines = {}, []
    for key in keys:
        w, prec = key.split("-")
        per = []  # (curvature {op: (s, n)}, peers {(peer, op): (s, n)})
        for r in reps:
            cf, pf = r / f"curvature-{key}.json", r / f"peers-{key}.json"
            if not (cf.is_file() and pf.is_file()):
                continue
            c = {row["op"]: (row["seconds"], row["n"]) for row in json.loads(cf.read_text())}
            pj = json.loads(pf.read_text())
            p = {(row["peer"], row["op"]): (row["seconds"], row["n"]) for row in pj["rows"]}
            per.append((c, p, pj))
        if not per:
            continue
        net = per[0][2]["network"]
        lines.append(f"\n### {w} ({net}), {prec}, {len(per)} repeats\n")
        head = "| op | rows | curvature | " + " | ".join(PEERS) + " | " + " | ".join(f"{q} / curvature" for q in PEERS) + " |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        table = []
        for op in OPS:
            cop = CURV_OP.get(op, op)
            cts = [c[cop][0] for c, _, _ in per if cop in c]
            if not cts:
                continue
            rec = {"op": op, "curvature_op": cop, "curvature_s": statistics.median(cts), "curvature_runs": cts}
            nrows = per[0][0][cop][1]
            cells_t, cells_r = [], []
            for q in PEERS:
                pts = [p[(q, op)][0] for _, p, _ in per if (q, op) in p]
                rat = [p[(q, op)][0] / c[cop][0] for c, p, _ in per if (q, op) in p and cop in c]
                if pts:
                    prow = per[0][1][(q, op)][1]
                    if prow != nrows:
                        print(f"warning: {key} {op}: {q} on {prow} rows, curvature on {nrows}", file=sys.stderr)
                    rec[q] = {"s": statistics.median(pts), "runs": pts, "ratio": statistics.median(rat), "ratios": rat}
                    cells_t.append(fmt_s(rec[q]["s"]))
                    cells_r.append(f"{rec[q]['ratio']:.2f}")
                else:
                    cells_t.append("–")
                    cells_r.append("–")
            label = op + (" ¹" if op.endswith("(mc)") else "")
            ctime = fmt_s(rec["curvature_s"]) + (" (exact)" if op.endswith("(mc)") else "")
            lines.append(f"| {label} | {nrows} | {ctime} | " + " | ".join(cells_t) + " | " + " | ".join(cells_r) + " |")
            table.append(rec)
        summary[key] = {"network": net, "repeats": len(per), "rows": table, "versions": per[0][2]["versions"]}
    lines.append("\n¹ peer's MC factors (1 sample) divided by curvature's exact factors: curvature bench times only `Fisher::Exact`.")
    lines.append("K-FAC inverse: curvature decomposes f64 factors at every precision; the peers' plain row is in the run's precision, the (f64) row on the factors cast to f64.")
    text = "\n".join(lines)
    print(text)
    (out_dir / "summary.md").write_text(text + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))


def fmt_s(s):
    return f"{s * 1e3:.2f} ms" if s < 10 else f"{s:.2f} s"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize":
        return summarize(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="S", choices=sorted(WORKLOADS))
    ap.add_argument("--precision", default="f32", choices=["f32", "f64"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--long-s", type=float, default=1.0, help="runs drop to 3 above this")
    ap.add_argument("--peers", default="backpack,curvlinops")
    ap.add_argument("--mc", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the MC flavour of the factors")
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    dtype = torch.float32 if args.precision == "f32" else torch.float64

    sizes, hidden, data_name = WORKLOADS[args.workload]
    x_np, y_np = load_data(data_name, args.data_dir)
    X = torch.from_numpy(x_np).to(dtype).contiguous()
    y = torch.from_numpy(y_np)
    n = X.shape[0]
    model = make_model(torch, sizes, hidden, dtype)
    w = sum(p.numel() for p in model.parameters())
    n_b = min(max(PER_SAMPLE_ENTRIES // w, 1), n)
    peers = [p for p in args.peers.split(",") if p]
    rows = []

    def record(peer, op, n_rows, sec, times, note):
        rows.append({"peer": peer, "op": op, "n": n_rows, "seconds": sec, "times": times, "note": note})
        print(f"  {args.workload} {args.precision} {peer:10s} {op:22s} n={n_rows:5d} {sec * 1e3:10.2f} ms", flush=True)

    if "backpack" in peers:
        from backpack import backpack, extend
        from backpack.extensions import KFAC, KFLR, BatchGrad

        bmodel = extend(make_model(torch, sizes, hidden, dtype))
        bmodel.load_state_dict(model.state_dict())
        bloss = extend(torch.nn.CrossEntropyLoss(reduction="mean"))

        def run_ext(ext, xs, ys):
            def f(_):
                bmodel.zero_grad(set_to_none=True)
                loss = bloss(bmodel(xs), ys)
                with backpack(ext):
                    loss.backward()
            return f

        s, t = timed(run_ext(KFLR(), X, y), args.runs, args.warmup, args.long_s)
        record("backpack", "K-FAC factors", n, s, t, "fwd+loss+bwd with KFLR() (exact), .grad too")
        # factors for the inverse: the KFLR ones just computed (weight: [B, A], bias: [B])
        factors = []
        for mod in bmodel:
            if isinstance(mod, torch.nn.Linear):
                factors.extend([f.detach().clone() for f in mod.weight.kflr])
        if args.mc:
            s, t = timed(run_ext(KFAC(mc_samples=1), X, y), args.runs, args.warmup, args.long_s)
            record("backpack", "K-FAC factors (mc)", n, s, t, "fwd+loss+bwd with KFAC() (1 MC sample)")

        def eig_all(_):
            for f in factors:
                torch.linalg.eigh(f)

        s, t = timed(eig_all, args.runs, args.warmup, args.long_s)
        record("backpack", "K-FAC inverse", n, s, t,
               "torch.linalg.eigh of every KFLR factor: A_l (in_l, no bias row), B_l (out_l)")
        if dtype != torch.float64:
            factors64 = [f.double() for f in factors]

            def eig_all64(_):
                for f in factors64:
                    torch.linalg.eigh(f)

            s, t = timed(eig_all64, args.runs, args.warmup, args.long_s)
            record("backpack", "K-FAC inverse (f64)", n, s, t,
                   "torch.linalg.eigh of every KFLR factor cast to f64 before (curvature's refresh is f64)")
        s, t = timed(run_ext(BatchGrad(), X[:n_b], y[:n_b]), args.runs, args.warmup, args.long_s)
        record("backpack", "per-sample grads", n_b, s, t, "fwd+loss+bwd with BatchGrad() on N_b rows, .grad too")
        del bmodel

    if "curvlinops" in peers:
        from curvlinops import KFACInverseLinearOperator, KFACLinearOperator

        cmodel = make_model(torch, sizes, hidden, dtype)
        cmodel.load_state_dict(model.state_dict())
        closs = torch.nn.CrossEntropyLoss(reduction="mean")
        params = [p for p in cmodel.parameters() if p.requires_grad]
        data = [(X, y)]

        def build(fisher_type):
            kfac = KFACLinearOperator(
                cmodel, closs, params, data, fisher_type=fisher_type, mc_samples=1,
                check_deterministic=False, separate_weight_and_bias=False, num_data=n,
            )
            kfac.compute_kronecker_factors()
            return kfac

        kfac = None

        def factors_type2(_):
            nonlocal kfac
            kfac = build("type-2")

        s, t = timed(factors_type2, args.runs, args.warmup, args.long_s)
        record("curvlinops", "K-FAC factors", n, s, t,
               "KFACLinearOperator(type-2) + compute_kronecker_factors, one batch of N rows")
        if args.mc:
            s, t = timed(lambda _: build("mc"), args.runs, args.warmup, args.long_s)
            record("curvlinops", "K-FAC factors (mc)", n, s, t, "KFACLinearOperator(mc, 1 sample) + compute")
        names = list(kfac._mapping.keys())
        shapes = [
            (tuple(kfac._input_covariances[m].shape), tuple(kfac._gradient_covariances[m].shape)) for m in names
        ]

        def inverse(inv):
            for m in names:
                inv._compute_or_get_cached_inverse(m)

        s, t = timed(
            inverse, args.runs, args.warmup, args.long_s,
            prepare=lambda: KFACInverseLinearOperator(kfac, damping=1e-3, use_exact_damping=True),
        )
        record("curvlinops", "K-FAC inverse", n, s, t,
               f"KFACInverseLinearOperator(use_exact_damping) eigendecompositions, factor shapes {shapes}")
        if dtype != torch.float64:
            # curvature keeps its factors in f64 and decomposes them in f64 whatever the
            # precision: the same decompositions of the factors cast to f64 (cast untimed)
            kfac._input_covariances = {k: v.double() for k, v in kfac._input_covariances.items()}
            kfac._gradient_covariances = {k: v.double() for k, v in kfac._gradient_covariances.items()}
            s, t = timed(
                inverse, args.runs, args.warmup, args.long_s,
                prepare=lambda: KFACInverseLinearOperator(kfac, damping=1e-3, use_exact_damping=True),
            )
            record("curvlinops", "K-FAC inverse (f64)", n, s, t,
                   "the same on the factors cast to f64 before (curvature's refresh is f64)")

    out = {
        "workload": args.workload,
        "network": "-".join(map(str, sizes)) + f" {hidden}/softmax ce",
        "n": n,
        "n_b": n_b,
        "params": w,
        "precision": args.precision,
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            **{k: version(v) for k, v in [("backpack", "backpack-for-pytorch"), ("curvlinops", "curvlinops-for-pytorch")]},
        },
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg": os.getloadavg(),
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
