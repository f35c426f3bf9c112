//! Kernel-level parity: both matmul variants in the three layouts the passes use
//! (A·B, A·Bᵀ, Aᵀ·B), batched with a shared operand, with β, on shapes that are not
//! multiples of any tile (1, 3, 7, 33, 65, 257), against host loops in f64. And the
//! comparator itself: a perturbed result must fail.

use crate::gpu_support;
use curvature::gpu::kernels::{Kernel, Strided};
use curvature::gpu::probe;
use gpu_support::{assert_close, compare, gpu, Tol, TOL_MATMUL};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// A (m, k) row-major · B (k, n) row-major
    AB,
    /// A (m, k) · Bᵀ with B stored (n, k)
    ABt,
    /// Aᵀ with A stored (k, m) · B (k, n)
    AtB,
}

/// Runs one product on the GPU and on the host; `shared_b`: B has batch stride 0.
fn check(
    kernel: Kernel,
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    batch: usize,
    beta: f32,
    seed: u64,
) {
    check_split(kernel, layout, (m, n, k), batch, beta, seed, 1);
}

/// `check` with `splits` K splits (split-K partial sums, then their fixed-order sum).
#[allow(clippy::too_many_arguments)]
fn check_split(
    kernel: Kernel,
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    batch: usize,
    beta: f32,
    seed: u64,
    splits: usize,
) {
    let Some(ctx) = gpu() else { return };
    let shared_b = batch > 1 && seed.is_multiple_of(2);
    let a = random(batch * m * k, seed);
    let b = random(if shared_b { k * n } else { batch * k * n }, seed + 1);
    let c0 = random(batch * m * n, seed + 2);
    let (sa, sb) = match layout {
        Layout::AB => (Strided::rows(0, k), Strided::rows(0, n)),
        Layout::ABt => (Strided::rows(0, k), Strided::transposed(0, k)),
        Layout::AtB => (Strided::transposed(0, m), Strided::rows(0, n)),
    };
    let sa = sa.batch(m * k);
    let sb = sb.batch(if shared_b { 0 } else { k * n });
    let sc = Strided::rows(0, n).batch(m * n);
    let alpha = 0.75;
    let got = probe::matmul(
        &ctx,
        kernel,
        (m, n, k, batch),
        (&a, sa),
        (&b, sb),
        (&c0, sc),
        alpha,
        beta,
        splits,
    )
    .expect("matmul");
    let mut want = vec![0.0f64; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for kk in 0..k {
                    let av = a[sa.off + bi * sa.bs + i * sa.rs + kk * sa.cs] as f64;
                    let bv = b[sb.off + bi * sb.bs + kk * sb.rs + j * sb.cs] as f64;
                    s += av * bv;
                }
                let ci = bi * m * n + i * n + j;
                want[ci] = beta as f64 * c0[ci] as f64 + alpha as f64 * s;
            }
        }
    }
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    // abs scaled to √k: the sum of k products of magnitude < 1 has typical size √k.
    let tol = Tol {
        abs: TOL_MATMUL.abs * (k as f64).sqrt().max(1.0),
        rel: TOL_MATMUL.rel,
    };
    assert_close(
        &format!("{kernel:?} {layout:?} m{m} n{n} k{k} batch{batch} β{beta} splits{splits}"),
        &got,
        &want,
        tol,
    );
}

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 7, 3),
    (7, 1, 33),
    (3, 65, 7),
    (33, 33, 1),
    (65, 7, 257),
    (257, 3, 65),
    (31, 257, 33),
    (130, 70, 90),
];

fn sweep(kernel: Kernel) {
    for (i, &shape) in SHAPES.iter().enumerate() {
        for layout in [Layout::AB, Layout::ABt, Layout::AtB] {
            check(kernel, layout, shape, 1, 0.0, i as u64 * 10);
        }
        check(kernel, Layout::AB, shape, 3, 1.0, i as u64 * 10 + 2);
        check(kernel, Layout::ABt, shape, 2, 0.5, i as u64 * 10 + 3);
    }
}

/// Split-K: K ranges that are and are not multiples of the 16-long split unit, more splits
/// than whole units (empty splits), batches, β.
fn split_sweep(kernel: Kernel) {
    for (i, &(shape, batch, splits)) in [
        ((50, 64, 1797), 1, 7),
        ((1, 1, 1000), 1, 3),
        ((10, 3, 40), 2, 5),
        ((7, 33, 513), 3, 32),
        ((3, 1, 17), 1, 4),
    ]
    .iter()
    .enumerate()
    {
        check_split(
            kernel,
            Layout::AtB,
            shape,
            batch,
            0.0,
            500 + i as u64,
            splits,
        );
        check_split(
            kernel,
            Layout::AB,
            shape,
            batch,
            1.0,
            510 + i as u64,
            splits,
        );
    }
}

#[test]
fn split_k_matches_host() {
    split_sweep(Kernel::MatmulTiled);
    split_sweep(Kernel::MatmulReg);
}

#[test]
fn split_k_is_chosen_for_few_tiles_and_long_k() {
    use curvature::gpu::kernels::split_k;
    // The digits gradient δᵀz: 50×64 outputs summed over 1797 rows → split.
    assert!(split_k(Kernel::MatmulTiled, (50, 64, 1797, 1), 1 << 22) > 1);
    // Many output tiles, or a short K → no split.
    assert_eq!(split_k(Kernel::MatmulTiled, (1797, 512, 64, 1), 1 << 22), 1);
    assert_eq!(split_k(Kernel::MatmulTiled, (50, 64, 300, 1), 1 << 22), 1);
    // No room for the partial sums → no split.
    assert_eq!(split_k(Kernel::MatmulTiled, (50, 64, 1797, 1), 50 * 64), 1);
}

#[test]
fn matmul_tiled_matches_host() {
    sweep(Kernel::MatmulTiled);
}

#[test]
fn matmul_register_blocked_matches_host() {
    sweep(Kernel::MatmulReg);
}

#[test]
fn context_reports_adapter_and_variant() {
    let Some(ctx) = gpu() else { return };
    assert!(!ctx.summary().name.is_empty());
    assert!(ctx.summary().max_binding_bytes() >= 1 << 20);
    let note = ctx.matmul_variant();
    assert!(note.contains("tiled") && note.contains("ms"), "{note}");
}

#[test]
fn comparator_rejects_a_perturbed_result() {
    let cpu: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut gpu_like = cpu.clone();
    assert!(compare("identical", &gpu_like, &cpu, TOL_MATMUL).is_ok());
    gpu_like[42] += 1e-3;
    let report = compare("perturbed", &gpu_like, &cpu, TOL_MATMUL).unwrap_err();
    assert!(report.contains("[42]"), "{report}");
    gpu_like[42] = f64::NAN;
    assert!(compare("nan", &gpu_like, &cpu, TOL_MATMUL).is_err());
}

#[test]
fn adapter_choice_and_errors() {
    use curvature::gpu::{list_adapters, AdapterChoice, AdapterOptions, GpuContext, GpuError};
    // Through the one helper, so that CURVATURE_REQUIRE_GPU=1 turns "no adapter" into a failure.
    let Some(_ctx) = gpu() else { return };
    let adapters = list_adapters();
    // A name no adapter has: NoMatch, listing what there is.
    let err = GpuContext::new(&AdapterOptions {
        choice: AdapterChoice::Gpu,
        name: Some("no-such-adapter-xyz".into()),
    })
    .unwrap_err();
    assert!(matches!(err, GpuError::NoMatch { .. }), "{err}");
    assert!(err.to_string().contains(&adapters[0].name), "{err}");
    // `auto` never takes a software adapter: only software here → NoHardware.
    if adapters.iter().all(|a| a.is_software) {
        let err = GpuContext::new(&AdapterOptions {
            choice: AdapterChoice::Auto,
            name: None,
        })
        .unwrap_err();
        assert!(matches!(err, GpuError::NoHardware(_)), "{err}");
        assert!(err.to_string().contains("--device gpu"), "{err}");
    }
    // The no-adapter message says how to get one.
    let msg = GpuError::NoAdapter("searched vulkan".into()).to_string();
    assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
}
