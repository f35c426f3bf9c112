//! `curvature bench --workload S --runs 2 --json FILE` writes one parseable row per
//! operation of S, with the FLOP counts of `curvature::bench::flops` and
//! self-consistent rates. No timing is asserted (the machine is shared).

use curvature::bench::{flops, hv_targets, larger_peak_size, ratios, Bench, Op, Row, Workload};
use std::process::Command;

#[test]
fn bench_s_writes_json_rows() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rows.json");
    let o = Command::new(env!("CARGO_BIN_EXE_curvature"))
        .args([
            "bench",
            "--workload",
            "S",
            "--runs",
            "2",
            "--long-runs",
            "1",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("Hv / loss+grad"), "{out}");

    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    let mlp = Workload::S.mlp().unwrap();
    let ops = Op::of(Workload::S);
    assert_eq!(rows.len(), ops.len());
    for (row, op) in rows.iter().zip(ops) {
        assert_eq!(row["workload"], "S");
        assert_eq!(row["op"], op.name());
        assert_eq!(row["n"], 1797);
        assert_eq!(row["precision"], "f64");
        assert_eq!(row["runs"], if op.is_long() { 1 } else { 2 });
        let seconds = row["seconds"].as_f64().unwrap();
        assert!(seconds > 0.0 && seconds.is_finite(), "{row}");
        let f = row["flops"].as_f64().unwrap();
        assert_eq!(f, flops(&mlp, 1797, op, false));
        let gflops = row["gflops"].as_f64().unwrap();
        assert!((gflops - f / seconds / 1e9).abs() <= 1e-9 * gflops, "{row}");
        let peak = row["peak_gflops"].as_f64().unwrap();
        let fraction = row["fraction_of_peak"].as_f64().unwrap();
        assert!(peak > 0.0 && (fraction - gflops / peak).abs() <= 1e-9 * fraction.max(1e-300));
    }
}

/// The FLOP counts follow the stated formulas: Hv of one vector on S by hand.
#[test]
fn flop_count_of_hv_on_s() {
    let mlp = Workload::S.mlp().unwrap();
    let n = 1797.0;
    let (p, p1) = (64.0 * 50.0 + 50.0 * 10.0, 50.0 * 10.0);
    let want = 2.0 * n * p + 2.0 * n * p1 + (4.0 * n * p + 8.0 * n * p1);
    assert_eq!(flops(&mlp, 1797, Op::Hv, false), want);
    assert_eq!(
        flops(&mlp, 1797, Op::LossGrad, false),
        4.0 * n * p + 2.0 * n * p1
    );
}

/// The full H's FLOP count on the CPU (per-sample Kronecker sums,
/// `cpu_fast::full`) on S, by hand: forward, backward, the per-sample factors
/// B = M₁W₁ and BᵀW₁, the packed diagonal blocks, the cross block and its δ
/// term; the GPU's is blocks of 32 Hv of unit vectors, whose products z·V_lᵀ (2np per
/// vector) and δ·V_l (2np₁) are gathers: 2np + 6np₁ per column after the shared
/// forward (2np) and backward (2np₁) of each block.
#[test]
fn flop_count_of_the_full_hessian_on_s() {
    let mlp = Workload::S.mlp().unwrap();
    let n = 1797.0;
    let f = |x: f64| 2.0 * n * x;
    let pk = |m: f64| m * (m + 1.0) / 2.0;
    let (p, p1) = (64.0 * 50.0 + 50.0 * 10.0, 50.0 * 10.0);
    let factors = f(10.0 * 10.0 * 50.0) + f(50.0 * 50.0 * 10.0);
    let diagonal_blocks = f(pk(50.0) * pk(65.0)) + f(pk(10.0) * pk(51.0));
    let cross = f(10.0 * 50.0 * 51.0 * 65.0);
    let delta_term = f(10.0 * 50.0 * 65.0);
    let want = f(p) + f(p1) + factors + diagonal_blocks + cross + delta_term;
    // Equal up to the order of the additions.
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b;
    assert!(same(flops(&mlp, 1797, Op::Hessian, false), want));
    let want_g = f(p) + factors + diagonal_blocks + cross;
    assert!(same(flops(&mlp, 1797, Op::Ggn, false), want_g));
    let columns = |k: f64| 2.0 * n * p + 2.0 * n * p1 + k * (2.0 * n * p + 6.0 * n * p1);
    let gpu = 117.0 * columns(32.0) + columns(16.0); // 3760 = 117·32 + 16
    assert!(same(flops(&mlp, 1797, Op::Hessian, true), gpu));
    let columns_g = |k: f64| 2.0 * n * p + k * (2.0 * n * p + 4.0 * n * p1);
    let gpu_g = 117.0 * columns_g(32.0) + columns_g(16.0);
    assert!(same(flops(&mlp, 1797, Op::Ggn, true), gpu_g));
}

/// The K-FAC rows' FLOP counts on S by hand (module header of `curvature::bench`):
/// the factors (exact: K = 10 columns per sample through layer 1; Z̃ᵀZ̃ and SᵀS in full
/// on the GPU, upper triangles on the CPU), the inverse refresh (9n³ per factor) and the
/// per-sample gradients, whose rows are capped for the large workloads.
#[test]
fn flop_counts_of_the_kfac_rows_on_s() {
    use curvature::bench::per_sample_rows;
    let mlp = Workload::S.mlp().unwrap();
    let n = 1797.0;
    let (p, p1) = (64.0 * 50.0 + 50.0 * 10.0, 50.0 * 10.0);
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b;
    let base = 2.0 * n * p + 2.0 * n * 10.0 * p1 + 2.0 * n * (64.0 + 50.0);
    let gpu = base
        + 2.0 * n * (64.0f64.powi(2) + 50.0f64.powi(2))
        + 2.0 * n * 10.0 * (50.0f64.powi(2) + 10.0f64.powi(2));
    let cpu = base + n * (64.0 * 65.0 + 50.0 * 51.0) + n * 10.0 * (50.0 * 51.0 + 10.0 * 11.0);
    assert!(same(flops(&mlp, 1797, Op::KfacFactors, true), gpu));
    assert!(same(flops(&mlp, 1797, Op::KfacFactors, false), cpu));
    let inverse = 9.0 * (65.0f64.powi(3) + 50.0f64.powi(3) + 51.0f64.powi(3) + 10.0f64.powi(3));
    assert!(same(flops(&mlp, 1797, Op::KfacInverse, false), inverse));
    let psg = 2.0 * n * p + 2.0 * n * p1 + n * p;
    assert!(same(flops(&mlp, 1797, Op::PerSampleGrads, false), psg));
    // N_b = min(N, 2²⁵ / W): all of S, 329 rows of M (W = 101770), 50 of L (W = 669706).
    assert_eq!(per_sample_rows(&mlp, 1797), 1797);
    assert_eq!(per_sample_rows(&Workload::M.mlp().unwrap(), 10000), 329);
    assert_eq!(per_sample_rows(&Workload::L.mlp().unwrap(), 10000), 50);
    assert_eq!(
        Op::PerSampleGrads.rows(&Workload::L.mlp().unwrap(), 10000),
        50
    );
}

/// Synthetic rows of one workload: every op at `seconds` and share `of_peak`.
fn rows(workload: &str, precision: &str, seconds: f64, of_peak: f64) -> Vec<Row> {
    let w: Workload = workload.parse().unwrap();
    Op::of(w)
        .into_iter()
        .map(|op| Row {
            workload: workload.to_string(),
            network: String::new(),
            n: 1,
            device: String::new(),
            precision: precision.to_string(),
            op: op.name().to_string(),
            runs: 1,
            seconds,
            flops: 1.0,
            gflops: 1.0,
            fraction_of_peak: of_peak,
            peak_gflops: 1.0,
        })
        .collect()
}

#[test]
fn the_s_on_the_cpu_targets_bound_only_s_on_the_cpu() {
    let bound = |rows: &[Row], on_gpu: bool, name: &str| {
        let on = if on_gpu {
            Bench::Gpu { software: false }
        } else {
            Bench::Cpu
        };
        ratios(rows, on)
            .into_iter()
            .find(|r| r.name == name)
            .and_then(|r| r.bound)
    };
    let s = rows("S", "f32", 1e-3, 0.5);
    assert_eq!(bound(&s, false, "full H / Hv"), Some(3760.0 / 4.0));
    assert_eq!(bound(&s, false, "diag GGN / Hv"), Some(4.0));
    assert_eq!(bound(&s, false, "diag H / Hv"), Some(25.0));
    assert_eq!(bound(&s, true, "full H / Hv"), None);
    assert_eq!(bound(&s, true, "diag H / Hv"), None);
    let m = rows("M", "f32", 1e-3, 0.5);
    assert_eq!(bound(&m, false, "diag GGN / Hv"), None);
    // Every device and workload: Hv ≤ 2 loss+grad, block16 ≤ 8 Hv.
    for (r, on_gpu) in [(&s, true), (&m, false)] {
        assert_eq!(bound(r, on_gpu, "Hv / loss+grad"), Some(2.0));
        assert_eq!(bound(r, on_gpu, "block16 / Hv"), Some(8.0));
    }
}

#[test]
fn the_hv_targets_follow_the_device_and_workload() {
    let met = |rows: &[Row], on: Bench| -> Vec<(String, Option<bool>)> {
        hv_targets(rows, on)
            .into_iter()
            .map(|t| (t.target, t.met))
            .collect()
    };
    // CPU f32: 35% on S, 70% on M and L; none in f64.
    let s = rows("S", "f32", 2e-3, 0.40);
    assert_eq!(met(&s, Bench::Cpu), [("≥ 35%".to_string(), Some(true))]);
    let l = rows("L", "f32", 0.2, 0.60);
    assert_eq!(met(&l, Bench::Cpu), [("≥ 70%".to_string(), Some(false))]);
    assert!(met(&rows("M", "f64", 0.1, 0.9), Bench::Cpu).is_empty());
    // A real GPU: S under 1 ms, L at 30%; a software adapter is measured, not judged.
    let gpu = Bench::Gpu { software: false };
    assert_eq!(met(&s, gpu), [("< 1 ms".to_string(), Some(false))]);
    let fast_s = rows("S", "f32", 0.5e-3, 0.01);
    assert_eq!(met(&fast_s, gpu), [("< 1 ms".to_string(), Some(true))]);
    assert_eq!(met(&l, gpu), [("≥ 30%".to_string(), Some(true))]);
    let software = Bench::Gpu { software: true };
    assert_eq!(met(&l, software), [("≥ 30%".to_string(), None)]);
    assert!(met(&rows("M", "f32", 0.1, 0.9), gpu).is_empty());
}

#[test]
fn the_gpu_peak_square_grows_until_it_is_throughput_bound_or_too_big() {
    let gib = 1u64 << 30;
    // 2.1 GFLOP in 0.2 ms (a large GPU): latency-bound, try 2048.
    assert_eq!(larger_peak_size(1024, Some(2e-4), 4 * gib), Some(2048));
    // Not timed yet: a larger side is possible.
    assert_eq!(larger_peak_size(1024, None, 4 * gib), Some(2048));
    // 0.5 s (a software adapter): long enough, keep 1024.
    assert_eq!(larger_peak_size(1024, Some(0.5), 4 * gib), None);
    // 8192² f32 is 256 MiB: over a 128 MiB binding limit, keep 4096.
    assert_eq!(larger_peak_size(4096, Some(1e-3), 128 << 20), None);
    assert_eq!(larger_peak_size(4096, Some(1e-3), gib), Some(8192));
    // Never past 8192.
    assert_eq!(larger_peak_size(8192, Some(1e-3), 64 * gib), None);
}
