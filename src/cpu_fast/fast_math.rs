//! Vectorizable f32 sigmoid and tanh with their first two derivatives, for the
//! f32 engine's hidden layers.
//!
//! Why: evaluating h, h′, h″ through the f64 formulas of `activation.rs` calls
//! glibc's scalar `exp` once per entry; on workload M (1.28 M hidden entries per
//! pass) that alone cost as much as a third of the GEMM time of a whole Hv.
//! Here e^x is a branch-free polynomial (Cody-Waite range reduction, a degree-6
//! polynomial for e^r on |r| ≤ ln2/2, the exponent put in by bit arithmetic),
//! which the compiler turns into 16-wide AVX-512 or 8-wide AVX2 code,
//! whichever the CPU has (AVX-512 measured ~3% faster on S's Hv).
//!
//! Accuracy (tested below against the f64 formulas on a dense grid): e^x within
//! 2 ulp of f32; sigmoid and tanh within 3·2⁻²⁴ relative on |x| ≤ 80 (sigmoid
//! of x < −87 is the smallest normal f32 instead of a subnormal); h′, h″ follow
//! from h by the very expressions of `activation.rs`: s(1 − s), s(1 − s)(1 − 2s);
//! 1 − t², −2t(1 − t²).
//!
//! Every lane does the same IEEE operations in the same order (no FMA), so the
//! AVX-512, AVX2 and portable paths give the same bits: results do not depend
//! on the machine's vector width.

/// e^x for x ≤ 0 (x is clamped to [−87, 0]: the result stays a normal f32).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2⁹ (Cody-Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Minimax coefficients of (e^r − 1 − r)/r² on |r| ≤ ln2/2 (Cephes expf).
    const P0: f32 = 1.987_569_1e-4;
    const P1: f32 = 1.398_199_9e-3;
    const P2: f32 = 8.333_452e-3;
    const P3: f32 = 4.166_579_6e-2;
    const P4: f32 = 1.666_666_5e-1;
    const P5: f32 = 5e-1;
    let x = x.clamp(-87.0, 0.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let poly = ((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5;
    let e_r = poly * (r * r) + r + 1.0;
    // 2ⁿ for n ∈ [−126, 0]: the biased exponent n + 127 ∈ [1, 127] put in
    // place by bit arithmetic. Adding 2²³ + 127 leaves n + 127 as the integer
    // in the low mantissa bits (the ulp there is 1), with no float-to-int
    // conversion, whose saturating semantics would keep the loop scalar.
    const SHIFT: f32 = 8_388_608.0 + 127.0;
    let biased = (n + SHIFT).to_bits() & 0x007F_FFFF;
    let two_n = f32::from_bits(biased << 23);
    e_r * two_n
}

/// σ(x) = 1/(1 + e^−x), evaluated as e/(1 + e) with e = e^−|x| for x < 0 so
/// that small values keep their relative accuracy (as `activation::sigmoid`).
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

/// tanh x: an odd polynomial for |x| < 0.625 (where (1 − e)/(1 + e) would
/// cancel), else sign(x)·(1 − e)/(1 + e) with e = e^−2|x|.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    // Minimax coefficients of (tanh x − x)/x³ in x² on |x| < 0.625 (Cephes tanhf).
    const Q0: f32 = -5.704_988_7e-3;
    const Q1: f32 = 2.063_909e-2;
    const Q2: f32 = -5.373_971_6e-2;
    const Q3: f32 = 1.333_144_2e-1;
    const Q4: f32 = -3.333_328e-1;
    let ax = x.abs();
    let z = x * x;
    let small = (((((Q0 * z + Q1) * z + Q2) * z + Q3) * z + Q4) * z) * x + x;
    let e = exp_nonpositive(-2.0 * ax);
    let large = (1.0 - e) / (1.0 + e);
    let large = if x < 0.0 { -large } else { large };
    if ax < 0.625 {
        small
    } else {
        large
    }
}

/// Which hidden activation a slice kernel evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Smooth {
    Sigmoid,
    Tanh,
}

/// z = h(a), and h′(a) into `dh` when `first`, h″(a) into `d2h` when `second`
/// (`dh`, `d2h` at least as long as `a` when asked for).
#[inline(always)]
fn kernel<const FIRST: bool, const SECOND: bool>(
    h: Smooth,
    a: &[f32],
    z: &mut [f32],
    dh: &mut [f32],
    d2h: &mut [f32],
) {
    let n = a.len();
    // Slicing to n up front lets the compiler drop the bounds checks.
    let z = &mut z[..n];
    let dh = if FIRST { &mut dh[..n] } else { &mut dh[..0] };
    let d2h = if SECOND { &mut d2h[..n] } else { &mut d2h[..0] };
    match h {
        Smooth::Sigmoid => {
            for i in 0..n {
                let s = sigmoid(a[i]);
                z[i] = s;
                if FIRST {
                    dh[i] = s * (1.0 - s);
                }
                if SECOND {
                    d2h[i] = s * (1.0 - s) * (1.0 - 2.0 * s);
                }
            }
        }
        Smooth::Tanh => {
            for i in 0..n {
                let t = tanh(a[i]);
                z[i] = t;
                if FIRST {
                    dh[i] = 1.0 - t * t;
                }
                if SECOND {
                    d2h[i] = -2.0 * t * (1.0 - t * t);
                }
            }
        }
    }
}

/// The kernel for `keep` (0: h; 1: and h′; 2: and h″), inlined into each
/// compiled path below so that it vectorizes for that path's features.
#[inline(always)]
fn by_keep(h: Smooth, a: &[f32], z: &mut [f32], dh: &mut [f32], d2h: &mut [f32], keep: u8) {
    match keep {
        0 => kernel::<false, false>(h, a, z, dh, d2h),
        1 => kernel::<true, false>(h, a, z, dh, d2h),
        _ => kernel::<true, true>(h, a, z, dh, d2h),
    }
}

fn portable(h: Smooth, a: &[f32], z: &mut [f32], dh: &mut [f32], d2h: &mut [f32], keep: u8) {
    by_keep(h, a, z, dh, d2h, keep)
}

/// The same loops compiled for AVX2 (8 lanes, `vroundps` for the floor).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2(h: Smooth, a: &[f32], z: &mut [f32], dh: &mut [f32], d2h: &mut [f32], keep: u8) {
    by_keep(h, a, z, dh, d2h, keep)
}

/// The same loops compiled for AVX-512 (16 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avx512(h: Smooth, a: &[f32], z: &mut [f32], dh: &mut [f32], d2h: &mut [f32], keep: u8) {
    by_keep(h, a, z, dh, d2h, keep)
}

/// h, h′ (`keep` ≥ 1), h″ (`keep` ≥ 2) of every entry of `a`; `z` and the
/// buffers asked for are at least as long as `a`, the others may be empty.
pub fn smooth_values(
    h: Smooth,
    a: &[f32],
    z: &mut [f32],
    dh: &mut [f32],
    d2h: &mut [f32],
    keep: u8,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available on this CPU.
        unsafe { avx512(h, a, z, dh, d2h, keep) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available on this CPU.
        unsafe { avx2(h, a, z, dh, d2h, keep) };
        return;
    }
    portable(h, a, z, dh, d2h, keep)
}

/// Softmax of each row of `a` (rows of k) into `p`: a − max(row) ≤ 0 through
/// the vectorized e^x, then each row divided by its sum, as `loss::softmax`
/// does in f64. Entries more than 87 below their row's maximum come out near
/// 1e−38 instead of 0 (e^x is clamped to stay a normal f32).
#[inline(always)]
fn softmax_kernel(a: &[f32], p: &mut [f32], k: usize) {
    let p = &mut p[..a.len()];
    for (prow, arow) in p.chunks_exact_mut(k).zip(a.chunks_exact(k)) {
        let m = arow.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (pv, av) in prow.iter_mut().zip(arow) {
            *pv = *av - m;
        }
    }
    // One pass of e^x over the whole chunk: vectorized across rows.
    for v in p.iter_mut() {
        *v = exp_nonpositive(*v);
    }
    for prow in p.chunks_exact_mut(k) {
        let sum: f32 = prow.iter().sum();
        for pv in prow.iter_mut() {
            *pv /= sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_avx2(a: &[f32], p: &mut [f32], k: usize) {
    softmax_kernel(a, p, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn softmax_avx512(a: &[f32], p: &mut [f32], k: usize) {
    softmax_kernel(a, p, k)
}

/// p = softmax of every row (k entries) of `a` (rows·k); `p` at least as long.
pub fn softmax_rows(a: &[f32], p: &mut [f32], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available on this CPU.
        unsafe { softmax_avx512(a, p, k) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available on this CPU.
        unsafe { softmax_avx2(a, p, k) };
        return;
    }
    softmax_kernel(a, p, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{sigmoid as sigmoid64, Activation};

    /// ulp of f32 at 1, halved: 2⁻²⁴, the rounding error of one f32 operation.
    const U: f64 = 5.960_464_477_539_063e-8;

    fn grid() -> impl Iterator<Item = f32> {
        // Dense near 0 (where tanh switches formulas and σ is steep), then wide.
        (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain((-8000..=8000).map(|i| i as f32 * 0.01))
    }

    fn rel(got: f32, want: f64) -> f64 {
        (f64::from(got) - want).abs() / want.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for x in grid().filter(|x| *x <= 0.0 && *x >= -87.0) {
            worst = worst.max(rel(exp_nonpositive(x), f64::from(x).exp()));
        }
        eprintln!(
            "exp: worst relative error {worst:.3e} = {:.2} × 2⁻²⁴",
            worst / U
        );
        // 2 ulp = 2·2⁻²³ relative.
        assert!(worst <= 4.0 * U, "exp worst relative error {worst:e}");
    }

    #[test]
    fn sigmoid_and_tanh_match_the_f64_formulas() {
        let mut worst = [0.0f64; 6];
        for x in grid() {
            let xd = f64::from(x);
            let mut z = [0.0f32; 1];
            let (mut d, mut d2) = ([0.0f32; 1], [0.0f32; 1]);
            for (slot, (h, act)) in [
                (Smooth::Sigmoid, Activation::Sigmoid),
                (Smooth::Tanh, Activation::Tanh),
            ]
            .into_iter()
            .enumerate()
            {
                smooth_values(h, &[x], &mut z, &mut d, &mut d2, 2);
                let want = if h == Smooth::Sigmoid {
                    sigmoid64(xd)
                } else {
                    xd.tanh()
                };
                worst[3 * slot] = worst[3 * slot].max(rel(z[0], want));
                // h′, h″ are products of h's value: their error is absolute,
                // relative to the scale 1 of h′ and h″'s maxima.
                worst[3 * slot + 1] = worst[3 * slot + 1].max((f64::from(d[0]) - act.dh(xd)).abs());
                worst[3 * slot + 2] =
                    worst[3 * slot + 2].max((f64::from(d2[0]) - act.d2h(xd)).abs());
            }
        }
        eprintln!(
            "worst errors in units of 2⁻²⁴ (σ, σ′, σ″, tanh, tanh′, tanh″): {:.2?}",
            worst.map(|w| w / U)
        );
        // h: 3 roundings' worth relative (exp's 2 ulp, the divide, the add).
        assert!(worst[0] <= 6.0 * U, "sigmoid relative error {:e}", worst[0]);
        assert!(worst[3] <= 6.0 * U, "tanh relative error {:e}", worst[3]);
        // h′ = s(1 − s), h″ = s(1 − s)(1 − 2s): a few more roundings on values ≤ 1.
        for (i, w) in [(1, "sigmoid′"), (2, "sigmoid″"), (4, "tanh′"), (5, "tanh″")] {
            assert!(worst[i] <= 12.0 * U, "{w} absolute error {:e}", worst[i]);
        }
    }

    type SmoothKernel = fn(Smooth, &[f32], &mut [f32], &mut [f32], &mut [f32], u8);
    type SoftmaxKernel = fn(&[f32], &mut [f32], usize);

    #[test]
    fn vector_and_portable_paths_agree_bit_for_bit() {
        let a: Vec<f32> = grid().step_by(7).collect();
        let n = a.len();
        for h in [Smooth::Sigmoid, Smooth::Tanh] {
            let mut out = [vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]];
            let mut reference = out.clone();
            let [z, d, d2] = &mut reference;
            portable(h, &a, z, d, d2, 2);
            // Every path this CPU has: the dispatched one, and AVX2 directly
            // (the dispatch prefers AVX-512 where present).
            let mut paths: Vec<SmoothKernel> = vec![smooth_values];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is available on this CPU.
                paths.push(|h, a, z, d, d2, keep| unsafe { avx2(h, a, z, d, d2, keep) });
            }
            for path in paths {
                out.iter_mut().for_each(|o| o.fill(0.0));
                let [z, d, d2] = &mut out;
                path(h, &a, z, d, d2, 2);
                for (got, want) in out.iter().zip(&reference) {
                    assert!(got
                        .iter()
                        .zip(want)
                        .all(|(g, w)| g.to_bits() == w.to_bits()));
                }
            }
        }
    }

    /// Rows of 10 logits in [−10, 10], spread over the grid, with a row of
    /// equal entries and one with an entry far below the rest.
    fn logit_rows() -> Vec<f32> {
        let mut a: Vec<f32> = grid().step_by(13).map(|x| (x * 7.3).sin() * 10.0).collect();
        a.truncate(a.len() / 10 * 10);
        a.extend([3.0; 10]);
        a.extend([0.0, 1.0, -100.0, 2.0, 0.5, -0.5, 1.5, -1.0, 0.25, 0.75]);
        a
    }

    #[test]
    fn softmax_matches_the_f64_formula() {
        let (a, k) = (logit_rows(), 10);
        let mut p = vec![0.0f32; a.len()];
        softmax_rows(&a, &mut p, k);
        let (mut s_a, mut s_p, mut worst) = (vec![0.0; k], vec![0.0; k], 0.0f64);
        for (arow, prow) in a.chunks_exact(k).zip(p.chunks_exact(k)) {
            for (s, v) in s_a.iter_mut().zip(arow) {
                *s = f64::from(*v);
            }
            crate::loss::softmax(&s_a, &mut s_p);
            for (got, want) in prow.iter().zip(&s_p) {
                // Entries below 1e−30 (the −100 one) are clamped, not tiny.
                if *want > 1e-30 {
                    worst = worst.max(rel(*got, *want));
                }
            }
        }
        eprintln!("softmax: worst relative error {:.2} × 2⁻²⁴", worst / U);
        // Bound: a − max rounds with relative error U, i.e. an absolute error
        // ≤ 20·U in e^x's argument (|a − max| ≤ 20), which e^x turns into 20·U
        // relative; e^x's own 2 ulp (4·U); the sum of 10 terms 10·U; the
        // divide U: 35·U, doubled for the ratio of two such values.
        assert!(worst <= 70.0 * U, "softmax relative error {worst:e}");
        // The far-below entry is tiny and every row sums to 1 within 10 roundings.
        assert!(p[p.len() - 8] < 1e-37);
        for prow in p.chunks_exact(k) {
            let sum: f64 = prow.iter().map(|v| f64::from(*v)).sum();
            assert!((sum - 1.0).abs() <= 10.0 * U, "row sum {sum}");
        }
    }

    #[test]
    fn softmax_vector_and_portable_paths_agree_bit_for_bit() {
        let (a, k) = (logit_rows(), 10);
        let (mut p, mut reference) = (vec![0.0f32; a.len()], vec![0.0f32; a.len()]);
        softmax_kernel(&a, &mut reference, k);
        let mut paths: Vec<SoftmaxKernel> = vec![softmax_rows];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available on this CPU.
            paths.push(|a, p, k| unsafe { softmax_avx2(a, p, k) });
        }
        for path in paths {
            p.iter_mut().for_each(|v| *v = 0.0);
            path(&a, &mut p, k);
            assert!(p
                .iter()
                .zip(&reference)
                .all(|(g, w)| g.to_bits() == w.to_bits()));
        }
    }

    #[test]
    fn extreme_inputs_stay_finite_and_saturate() {
        let a = [-1e30f32, -200.0, -88.0, 88.0, 200.0, 1e30];
        let n = a.len();
        let (mut z, mut d, mut d2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        smooth_values(Smooth::Sigmoid, &a, &mut z, &mut d, &mut d2, 2);
        assert!(z.iter().chain(&d).chain(&d2).all(|v| v.is_finite()));
        assert!(z[0] < 1e-37 && z[5] == 1.0);
        smooth_values(Smooth::Tanh, &a, &mut z, &mut d, &mut d2, 2);
        assert_eq!((z[0], z[5]), (-1.0, 1.0));
    }
}
