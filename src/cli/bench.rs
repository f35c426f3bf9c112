//! `curvature bench`: the standard workloads (S, M, L) on one device and
//! precision — median time, operations per second, GFLOP/s from the FLOP
//! counts of `curvature::bench`, and the fraction of the device's peak
//! measured in the same run — then the ratios the targets name.

use crate::cli::out::outln;
use clap::Args;
use curvature::bench::{
    cpu_peak, gpu_peak, gpu_peak_size, hv_targets, ratios, run_workload, Bench, Options, Row,
    Workload, PEAK_SIZE_CPU,
};
use curvature::engine::device::{Device, DeviceChoice, Precision};
use curvature::files::{write_atomic, Overwrite};
use curvature::{Error, Result};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// S (64-50-10, digits), M (784-128-10, mnist10k), L (784-512-512-10 tanh, mnist10k) or all.
    #[arg(long, default_value = "S")]
    pub workload: String,
    /// cpu (the fast engine), gpu (any adapter) or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Pick the GPU adapter whose name contains this text.
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// f32 or f64 (the CPU computes in either, f64 by default; a GPU always in f32).
    #[arg(long, value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Timed runs per operation (the median is reported), after warm-up.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Timed runs of the full H and GGN (S only) [default: --runs on the CPU,
    /// where each takes 0.15–0.3 s; 3 on a GPU, where each takes seconds].
    #[arg(long)]
    pub long_runs: Option<usize>,
    /// Also write the rows as JSON to this file (replaced if present).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    s.parse()
}

fn workloads(spec: &str) -> Result<Vec<Workload>> {
    if spec.eq_ignore_ascii_case("all") {
        return Ok(Workload::ALL.to_vec());
    }
    spec.split(',')
        .map(|w| w.parse().map_err(Error::Shape))
        .collect()
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let workloads = workloads(&args.workload)?;
    let (device, note) = Device::open(args.device, args.adapter.as_deref())?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let device = device.with_precision(args.precision.unwrap_or(Precision::F64));
    if device.is_gpu() && args.precision == Some(Precision::F64) {
        eprintln!("note: the GPU computes in f32; --precision f64 applies to the CPU only");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    outln!("device: {} ({cores} cores visible)", device.describe());
    let peak_n = match &device {
        Device::Gpu(ctx) => gpu_peak_size(ctx)?,
        _ => PEAK_SIZE_CPU,
    };
    if let Device::Gpu(ctx) = &device {
        outln!("matmul kernel: {}", ctx.matmul_variant());
    }
    let opts = Options {
        runs: args.runs.max(1),
        long_runs: args
            .long_runs
            .unwrap_or(if device.is_gpu() { 3 } else { args.runs })
            .max(1),
        warmup: 2,
    };
    let on = Bench::of(&device);
    let mut all: Vec<Row> = Vec::new();
    for w in workloads {
        let mlp = w.mlp()?;
        outln!(
            "\nworkload {}: {} (W = {}); median of {} runs after warm-up ({} for full H/GGN)",
            w.name(),
            mlp.describe(),
            mlp.num_params(),
            opts.runs,
            opts.long_runs
        );
        // The peak is measured again before each workload: on a shared or
        // virtual machine one short measurement at the start can be off by
        // 20% (seen on the 2-core VM the README's tables come from).
        let peak = match &device {
            Device::Gpu(ctx) => gpu_peak(ctx, peak_n, PEAK_RUNS)?,
            Device::FastCpuF32 => cpu_peak::<f32>(PEAK_SIZE_CPU, PEAK_RUNS)?,
            Device::FastCpuF64 => cpu_peak::<f64>(PEAK_SIZE_CPU, PEAK_RUNS)?,
        };
        outln!(
            "  peak: {peak:.1} GFLOP/s ({peak_n}×{peak_n} matrix product, median of {PEAK_RUNS}, just before this workload)"
        );
        outln!(
            "  {:<16} {:>12} {:>10} {:>10} {:>8}",
            "op",
            "time",
            "ops/s",
            "GFLOP/s",
            "of peak"
        );
        let rows = run_workload(w, &device, peak, &opts, |r| {
            outln!(
                "  {:<16} {:>12} {:>10.2} {:>10.2} {:>7.1}%",
                r.op,
                format_seconds(r.seconds),
                1.0 / r.seconds,
                r.gflops,
                100.0 * r.fraction_of_peak
            );
        })?;
        outln!("  ratios (target; FLOP ratio = the value at equal GFLOP/s):");
        for r in ratios(&rows, on) {
            let (target, mark) = match r.bound {
                Some(b) => (
                    format!("(≤ {b})"),
                    if r.value <= b { "ok" } else { "MISSED" },
                ),
                None => ("(no target here)".to_string(), ""),
            };
            outln!(
                "    {:<19} {:>9.2}  {:<16} {:<6}  FLOP ratio {:.2}",
                r.name,
                r.value,
                target,
                mark,
                r.flop_ratio
            );
        }
        for t in hv_targets(&rows, on) {
            let mark = match t.met {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "not judged: a target for a real GPU, this adapter is software",
            };
            let target = format!("({})", t.target);
            outln!("    {:<19} {:>9}  {target:<16} {mark}", t.what, t.measured);
        }
        all.extend(rows);
    }
    if let Some(path) = &args.json {
        let json = serde_json::Value::Array(all.iter().map(Row::to_json).collect());
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| Error::Shape(format!("cannot format the rows as JSON: {e}")))?;
        write_atomic(path, text.as_bytes(), Overwrite::Allow)?;
        outln!("\nwrote {} rows to {}", all.len(), path.display());
    }
    Ok(())
}

/// Timed runs of the peak's square product (after one warm-up).
const PEAK_RUNS: usize = 15;

fn format_seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}
