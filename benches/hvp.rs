//! Hv on the GPU engine and on the CPU reference, for the digits network
//! (64-50-10 sigmoid/softmax-ce, λ = 1e-3) on N = 1797 random rows of the digits shape.
//! A software adapter (llvmpipe) is reported like any other; the adapter and the chosen
//! matmul variant are printed first. Short measurement windows: the machine is shared.

use criterion::{criterion_group, criterion_main, Criterion};
use curvature::cpu;
use curvature::gpu::{AdapterChoice, AdapterOptions, GpuContext, GpuEngine};
use curvature::{Activation, Curvature, Loss, Mlp};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const ROWS: usize = 1797;

fn setup() -> (Mlp, Vec<f64>, Array2<f64>, Array2<f64>, Vec<f64>) {
    let mlp = Mlp::with_hidden(&[64, 50, 10], Activation::Sigmoid, Loss::Ce, 1e-3).expect("mlp");
    let theta = mlp.init_params(1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = Array2::from_shape_fn((ROWS, 64), |_| rng.random_range(0.0..1.0));
    let mut t = Array2::zeros((ROWS, 10));
    for r in 0..ROWS {
        t[[r, rng.random_range(0..10)]] = 1.0;
    }
    let v = (0..mlp.num_params())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    (mlp, theta, x, t, v)
}

fn hvp(c: &mut Criterion) {
    let (mlp, theta, x, t, v) = setup();
    let mut group = c.benchmark_group("hvp 64-50-10 N=1797");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("cpu f64", |b| {
        b.iter(|| cpu::hvp(&mlp, &theta, x.view(), t.view(), &v))
    });
    let opts = AdapterOptions {
        choice: AdapterChoice::Gpu,
        name: std::env::var("CURVATURE_ADAPTER").ok(),
    };
    match GpuContext::new(&opts) {
        Ok(ctx) => {
            eprintln!(
                "adapter: {} ({}); matmul: {}",
                ctx.summary().name,
                ctx.summary().device_type,
                ctx.matmul_variant()
            );
            let mut eng = GpuEngine::new(
                ctx,
                &mlp,
                x.mapv(|a| a as f32).view(),
                t.mapv(|a| a as f32).view(),
            )
            .expect("engine");
            group.bench_function("gpu f32", |b| {
                b.iter(|| eng.hvp(&theta, 0..ROWS, &v).expect("hvp"))
            });
            let block =
                Array2::from_shape_fn((16, mlp.num_params()), |(i, j)| v[(i * 7 + j) % v.len()]);
            group.bench_function("gpu f32, block of 16", |b| {
                b.iter(|| {
                    eng.hvp_block(&theta, 0..ROWS, block.view())
                        .expect("hvp block")
                })
            });
            group.bench_function("cpu f64, block of 16", |b| {
                b.iter(|| cpu::hvp_block(&mlp, &theta, x.view(), t.view(), block.view()))
            });
        }
        Err(e) => eprintln!("SKIPPED (no GPU adapter): {e}"),
    }
    group.finish();
}

criterion_group!(benches, hvp);
criterion_main!(benches);
