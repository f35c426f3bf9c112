#!/usr/bin/env bash
# curvature's K-FAC factors, K-FAC inverse refresh and per-sample gradients against
# BackPACK and curvlinops, interleaved in one run so that every ratio compares two
# measurements taken back to back in the same machine state.
#
#   PYTHON=/work/venv/bin/python bash benches/peers/kfac_peers.sh [OUT_DIR]
#       default OUT_DIR: runs/kfac-peers-<date-time>
#
# Environment (defaults in brackets):
#   PYTHON [python3]        a Python with torch, numpy, backpack-for-pytorch, curvlinops-for-pytorch
#   CURVATURE [$CARGO_TARGET_DIR/release/curvature]   the binary (not built here)
#   WORKLOADS ["S M L"]     curvature bench workloads
#   PRECISIONS ["f32"]      precisions of every workload
#   S_F64 [1]               also S in f64 (1) or not (0)
#   REPEATS [3]             repeats; each repeat runs, per workload and precision, both sides
#                           (odd repeats curvature first, even repeats the peers first)
#   RUNS [5]                timed runs per op on each side (medians): `curvature bench
#                           --runs`, kfac_peers.py --runs (3 when a run takes over 1 s)
#   THREADS [2]             RAYON_NUM_THREADS for curvature, torch.set_num_threads for torch
#   PEERS ["backpack,curvlinops"]
#   TORCH_OMP_WAIT_POLICY [PASSIVE]  OMP_WAIT_POLICY for the Python side ("" leaves it unset:
#                           libgomp's default spin-wait). On a loaded machine the spinning
#                           threads of a 2-thread torch make small ops 10-30x slower (S's
#                           BackPACK factors: ~0.7 s spinning vs ~25 ms passive); PASSIVE
#                           is the fair setting there, and costs nothing on an idle machine.
#
# curvature side: `curvature bench --workload W --precision P --runs RUNS --json` runs every
# op of the workload; only its "K-FAC factors", "K-FAC inverse" and "per-sample grads" rows
# are used. Python side: benches/peers/kfac_peers.py (its docstring says what each peer
# op includes). Tables: OUT_DIR/summary.md, numbers with per-repeat values: summary.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PY=${PYTHON:-python3}
BIN=${CURVATURE:-$CARGO_TARGET_DIR/release/curvature}
OUT=${1:-$ROOT/runs/kfac-peers-$(date +%Y%m%d-%H%M%S)}
WORKLOADS=${WORKLOADS:-"S M L"}
PRECISIONS=${PRECISIONS:-"f32"}
S_F64=${S_F64:-1}
REPEATS=${REPEATS:-3}
RUNS=${RUNS:-5}
THREADS=${THREADS:-2}
PEERS=${PEERS:-"backpack,curvlinops"}
TORCH_OMP_WAIT_POLICY=${TORCH_OMP_WAIT_POLICY-PASSIVE}

[ -x "$BIN" ] || { echo "no curvature binary at $BIN (cargo build --release --bin curvature)" >&2; exit 1; }
mkdir -p "$OUT"

{
    echo "date $(date -Is)"
    echo "git $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?')"
    echo "curvature_sha256_start $(sha256sum "$BIN" | cut -d' ' -f1) $BIN"
    echo "nproc $(nproc)"
    echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "python $("$PY" -W ignore -c 'import sys, torch, numpy; from importlib.metadata import version as v; print(sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__, "backpack", v("backpack-for-pytorch"), "curvlinops", v("curvlinops-for-pytorch"))')"
    echo "threads $THREADS repeats $REPEATS runs $RUNS python_OMP_WAIT_POLICY ${TORCH_OMP_WAIT_POLICY:-unset}"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"
echo "writing to $OUT"

cases=()
for w in $WORKLOADS; do
    for p in $PRECISIONS; do cases+=("$w-$p"); done
    if [ "$w" = S ] && [ "$S_F64" = 1 ] && ! [[ " $PRECISIONS " == *" f64 "* ]]; then cases+=("S-f64"); fi
done

curv() { # workload precision json
    RAYON_NUM_THREADS=$THREADS "$BIN" bench --workload "$1" --precision "$2" --device cpu \
        --runs "$RUNS" --json "$3" >"${3%.json}.log" 2>&1
}
peers() { # workload precision json
    local omp=()
    [ -z "$TORCH_OMP_WAIT_POLICY" ] || omp=(env OMP_WAIT_POLICY="$TORCH_OMP_WAIT_POLICY")
    ${omp[@]+"${omp[@]}"} "$PY" "$ROOT/benches/peers/kfac_peers.py" --workload "$1" --precision "$2" \
        --threads "$THREADS" --runs "$RUNS" --peers "$PEERS" --json "$3" >"${3%.json}.log" 2>&1
}

for r in $(seq 1 "$REPEATS"); do
    dir=$OUT/r$r
    mkdir -p "$dir"
    for c in "${cases[@]}"; do
        w=${c%-*} p=${c#*-}
        echo "== repeat $r: $w $p ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))"
        if [ $((r % 2)) = 1 ]; then
            curv "$w" "$p" "$dir/curvature-$c.json"
            peers "$w" "$p" "$dir/peers-$c.json"
        else
            peers "$w" "$p" "$dir/peers-$c.json"
            curv "$w" "$p" "$dir/curvature-$c.json"
        fi
    done
done

{
    echo "loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "curvature_sha256_end $(sha256sum "$BIN" | cut -d' ' -f1)"
    echo "date_end $(date -Is)"
} >>"$OUT/machine.txt"
"$PY" "$ROOT/benches/peers/kfac_peers.py" --summarize "$OUT"
