#!/usr/bin/env bash
# curvature against scikit-learn and PyTorch, interleaved in one run so that every ratio
# compares measurements taken back to back in the same machine state.
#
#   benches/peers/run_all.sh [OUT_DIR]          # default OUT_DIR: runs/peers-<date-time>
#
# Environment (defaults in brackets):
#   REPEATS [3]            repeats of the epoch-time block
#   EPOCHS [5]             timed epochs after one warm-up epoch (curvature: EPOCHS+1 epochs)
#   BATCHES ["128 32"]     mini-batch sizes of the epoch-time block
#   THREADS ["2 1"]        thread counts: RAYON_NUM_THREADS for curvature,
#                          torch.set_num_threads, threadpoolctl/OMP_NUM_THREADS for sklearn
#   SEEDS ["0 1 2 3 4"]    digits split seeds of the fit block
#   MNIST_SEEDS ["0 1 2 3 4"]  mnist10k seeds of the fit block (natural split: the seed picks
#                          the init and the validation rows); "" skips mnist10k fits
#   EPOCH_DATA ["mnist10k digits"]   data sets of the epoch-time block
#   MNIST_OPTIMIZERS [kfac adam … lbfgs]  optimizers of block 3 ("" skips it)
#   PYTHON [python3]       a Python with numpy, scikit-learn, torch, threadpoolctl
#   SKIP_BUILD [unset]     set to use the binaries already in $CARGO_TARGET_DIR
#   CARGO_TARGET_DIR [./target]
#
# Block 1 (epoch time), for each repeat, thread count, data set and batch size, in this order:
#   a. curvature train --optimizer momentum --set lr=0.1,momentum=0.9 --batch-size B
#      --validation-fraction 0 (so it updates on the same rows as torch: mnist10k's 8000,
#      digits' 1438) --checkpoint-every 0 --device cpu; per-epoch time = differences of the
#      history.json stamps (they include curvature's evaluation of the training set after
#      every epoch), epoch 1 dropped as the warm-up.
#      With --precision in `curvature train --help`, once with --precision f32 as well.
#   b. examples/train_timing, the same run built from the same library calls, timing each
#      epoch's update loop alone, in f64 (what train uses) and in f32.
#   c. benches/peers/torch_epoch.py: SGD (lr 0.1, momentum 0.9) then Adam (lr 1e-3), float32,
#      from curvature's θ₀ (curvature train --epochs 0), same λ (1e-3 on the weights,
#      curvature's default before the defaults were chosen on validation; kept for comparability), update loop timed, plus one no-grad evaluation of the training set.
# Block 2 (whole fits), for each thread count and seed:
#   a. curvature train with its defaults (chosen by the data: K-FAC, relu, f32; see
#      src/cli/train/defaults.rs): the wall time it prints (training only) and its test accuracy;
#   b. benches/peers/sklearn_baselines.py: MLPClassifier adam and lbfgs, sklearn defaults
#      (relu; hidden (100,) on digits, the issue's (128,) on mnist10k), on the same training
#      rows (validation rows left out, as curvature leaves them out).
# Then benches/peers/ratios.py prints the tables and writes OUT_DIR/summary.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PY=${PYTHON:-python3}
OUT=${1:-$ROOT/runs/peers-$(date +%Y%m%d-%H%M%S)}
REPEATS=${REPEATS:-3}
EPOCHS=${EPOCHS:-5}
BATCHES=${BATCHES:-"128 32"}
THREADS=${THREADS:-"2 1"}
SEEDS=${SEEDS-"0 1 2 3 4"}
MNIST_SEEDS=${MNIST_SEEDS-"0 1 2 3 4"}
EPOCH_DATA=${EPOCH_DATA:-"mnist10k digits"}
MNIST_OPTIMIZERS=${MNIST_OPTIMIZERS-"kfac adam adamw rmsprop adagrad momentum nesterov gd hessian-diag hessian-free cg-pr lbfgs"}
L2=0.001 # the epoch block's λ (curvature's former default), given to torch too
BIN=$CARGO_TARGET_DIR/release
PEERS=$ROOT/benches/peers

hidden_of() { if [ "$1" = mnist10k ]; then echo 128; else echo 50; fi; }

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --bin curvature --example export_split --example train_timing
fi
mkdir -p "$OUT"/splits "$OUT"/init "$OUT"/epoch "$OUT"/fit

# What this run is: versions, machine, load.
{
    echo "date $(date -Is)"
    echo "git $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?') $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(dirty)')"
    echo "nproc $(nproc)"
    echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "python $($PY -c 'import sys, numpy, sklearn, torch; print(sys.version.split()[0], "numpy", numpy.__version__, "sklearn", sklearn.__version__, "torch", torch.__version__)')"
    echo "rustc $(rustc --version 2>/dev/null || echo '?')"
    echo "OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-unset}"
} >"$OUT/machine.txt"
echo "writing to $OUT"

# Does `curvature train` take --precision? (Its CPU engine is f64 without it.)
if "$BIN/curvature" train --help | grep -q -- '--precision'; then
    TRAIN_PRECISIONS="f64 f32"
else
    TRAIN_PRECISIONS="default"
    echo "note: curvature train has no --precision (its CPU engine is f64); f32 figures come from examples/train_timing" | tee -a "$OUT/machine.txt"
fi
echo "train_precisions $TRAIN_PRECISIONS" >>"$OUT/machine.txt"

# The splits (the rows curvature trains on) and curvature's θ₀ for torch.
for d in $EPOCH_DATA; do
    "$BIN/examples/export_split" "$d" "$OUT/splits/$d-s0" --seed=0 >/dev/null
    "$BIN/curvature" train --data "$d" --hidden "$(hidden_of "$d")" --optimizer momentum --epochs 0 \
        --seed 0 --validation-fraction 0 --device cpu --quiet --force --checkpoint-every 0 \
        --out "$OUT/init/$d/model.safetensors" >/dev/null
done
for s in $SEEDS; do "$BIN/examples/export_split" digits "$OUT/splits/digits-s$s" --seed="$s" >/dev/null; done
for s in $MNIST_SEEDS; do "$BIN/examples/export_split" mnist10k "$OUT/splits/mnist10k-s$s" --seed="$s" >/dev/null; done

# Block 1: epoch time.
for r in $(seq 1 "$REPEATS"); do
    for t in $THREADS; do
        for d in $EPOCH_DATA; do
            h=$(hidden_of "$d")
            for b in $BATCHES; do
                dir=$OUT/epoch/$d-b$b-t$t-r$r
                mkdir -p "$dir"
                echo "== epoch time: repeat $r, $t threads, $d (hidden $h), batch $b"
                for p in $TRAIN_PRECISIONS; do
                    pflag=()
                    [ "$p" = default ] || pflag=(--precision "$p")
                    RAYON_NUM_THREADS=$t "$BIN/curvature" train --data "$d" --hidden "$h" \
                        --optimizer momentum --set lr=0.1,momentum=0.9 --batch-size "$b" \
                        --epochs $((EPOCHS + 1)) --l2 $L2 --seed 0 --validation-fraction 0 \
                        --device cpu --quiet --force --checkpoint-every 0 "${pflag[@]}" \
                        --out "$dir/curvature-$p/model.safetensors" >"$dir/curvature-$p.log"
                done
                for p in f64 f32; do
                    RAYON_NUM_THREADS=$t "$BIN/examples/train_timing" --data="$d" --hidden="$h" \
                        --optimizer=momentum --set=lr=0.1,momentum=0.9 --batch-size="$b" \
                        --epochs=$((EPOCHS + 1)) --l2=$L2 --seed=0 --validation-fraction=0 \
                        --precision=$p --json="$dir/timing-$p.json" >/dev/null
                done
                "$PY" "$PEERS/torch_epoch.py" --data "$d" --split-dir "$OUT/splits/$d-s0" \
                    --hidden "$h" --optimizers sgd,adam --batch-sizes "$b" --epochs "$EPOCHS" \
                    --l2 $L2 --init-from "$OUT/init/$d/model.safetensors" --threads "$t" \
                    --json "$dir/torch.json" --quiet
            done
        done
    done
done

# Block 2: whole fits with defaults.
fit() { # data seed threads
    local d=$1 s=$2 t=$3 dir=$OUT/fit/$1-s$2-t$3 sk_hidden=100
    [ "$d" = mnist10k ] && sk_hidden=128
    mkdir -p "$dir"
    echo "== fit: $d seed $s, $t threads"
    RAYON_NUM_THREADS=$t "$BIN/curvature" train --data "$d" --seed "$s" \
        --device cpu --quiet --force --checkpoint-every 0 \
        --out "$dir/curvature/model.safetensors" >"$dir/curvature.log"
    "$PY" "$PEERS/sklearn_baselines.py" --data "$d" --seeds "$s" --solvers adam,lbfgs \
        --hidden "$sk_hidden" --activation relu \
        --threads "$t" --work "$OUT/splits" --json "$dir/sklearn.json" --quiet >/dev/null
}
for t in $THREADS; do
    for s in $SEEDS; do fit digits "$s" "$t"; done
    for s in $MNIST_SEEDS; do fit mnist10k "$s" "$t"; done
done

# Block 3: every optimizer on mnist10k with the default network (the defaults' 784-256-10
# relu, λ 1e-5, f32; each optimizer's own epochs and batch size), seed 0. newton, lm and bfgs
# need the dense W×W matrix (W = 203,530: 331 GB) and are refused, so they are not run.
mkdir -p "$OUT/optimizers"
for o in $MNIST_OPTIMIZERS; do
    echo "== mnist10k with $o"
    RAYON_NUM_THREADS=2 "$BIN/curvature" train --data mnist10k --hidden 256 --activation relu \
        --l2 1e-5 --precision f32 --optimizer "$o" --seed 0 --device cpu --quiet --force \
        --checkpoint-every 0 --out "$OUT/optimizers/$o/model.safetensors" >"$OUT/optimizers/$o.log" 2>&1 || true
done

echo "loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$PY" "$PEERS/ratios.py" "$OUT"
