//! The `curvature bench` workloads under criterion: for each workload (S by
//! default; `CURVATURE_WORKLOADS=S,M,L` for more) and each CPU precision, the
//! operations of issue 7 on the fast CPU engine (and on a GPU adapter when one
//! is found). Short measurement windows: the machine is shared. FLOP counts and
//! the fraction of peak are printed by `curvature bench`, not here.

use criterion::{criterion_group, criterion_main, Criterion};
use curvature::bench::{Op, Workload, BLOCK};
use curvature::cpu::Fisher;
use curvature::data::load_named;
use curvature::engine::device::{Device, DeviceChoice};
use curvature::Curvature;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn workloads() -> Vec<Workload> {
    std::env::var("CURVATURE_WORKLOADS")
        .ok()
        .map(|s| s.split(',').filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_else(|| vec![Workload::S])
}

fn devices() -> Vec<Device> {
    let mut d = vec![Device::FastCpuF64, Device::FastCpuF32];
    match Device::open(
        DeviceChoice::Gpu,
        std::env::var("CURVATURE_ADAPTER").ok().as_deref(),
    ) {
        Ok((gpu, _)) => d.push(gpu),
        Err(e) => eprintln!("SKIPPED the GPU (no adapter): {e}"),
    }
    d
}

fn bench_workloads(c: &mut Criterion) {
    for w in workloads() {
        let mlp = w.mlp().expect("workload network");
        let data = load_named(w.spec().2).expect("bundled data");
        let n = data.x.nrows();
        // Alternated call by call, as in `curvature bench`: the CPU engine
        // reuses a product's passes at the previous product's θ.
        let thetas = [mlp.init_params(1), mlp.init_params(2)];
        let mut calls = 0usize;
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let block =
            Array2::from_shape_fn((BLOCK, mlp.num_params()), |_| rng.random_range(-1.0..1.0));
        let v = block.row(0).to_vec();
        for device in devices() {
            let mut eng = device
                .engine(&mlp, data.x.view(), data.t.view())
                .expect("engine");
            let mut group = c.benchmark_group(format!("{} {}", w.name(), device.describe()));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
            for op in Op::of(w).into_iter().filter(|op| !op.is_long()) {
                group.bench_function(op.name(), |b| {
                    b.iter(|| {
                        calls += 1;
                        let theta = &thetas[calls % 2];
                        match op {
                            Op::Loss => drop(eng.loss(theta, 0..n).expect("loss")),
                            Op::LossGrad => drop(eng.loss_grad(theta, 0..n).expect("grad")),
                            Op::Hv => drop(eng.hvp(theta, 0..n, &v).expect("hv")),
                            Op::Gv => drop(eng.gvp(theta, 0..n, &v).expect("gv")),
                            Op::HvBlock16 => {
                                drop(eng.hvp_block(theta, 0..n, block.view()).expect("block"))
                            }
                            Op::DiagGgn => drop(eng.diag_ggn(theta, 0..n).expect("diag G")),
                            Op::DiagHessian => drop(eng.diag_hessian(theta, 0..n).expect("diag H")),
                            Op::KfacFactors => {
                                drop(eng.kfac_factors(Fisher::Exact, theta, 0..n).expect("K-FAC"))
                            }
                            Op::PerSampleGrads => {
                                let rows = op.rows(&mlp, n);
                                drop(eng.per_sample_gradients(theta, 0..rows).expect("g_n"))
                            }
                            // The long ones (full H and G, the inverse refresh): `curvature bench`.
                            Op::Hessian | Op::Ggn | Op::KfacInverse => {}
                        }
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench_workloads);
criterion_main!(benches);
