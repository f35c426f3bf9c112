//! Forward and backward passes over one chunk of c samples (c ≤ the
//! workspace's capacity C), the same equations as `cpu/passes.rs`
//! (0-based: layer l maps z[l] → a[l] → z[l+1], z[0] = X):
//! ```text
//!   a[l]   = z[l] W_lᵀ + b_l          one GEMM (c, in_l)·(in_l, out_l)      PRML 5.98
//!   z[l+1] = h_l(a[l])                                                       PRML 5.99
//!   δ[L−1] = ∂E_n/∂a / N               (Loss::delta, per sample)
//!   δ[l]   = h_l′(a[l]) ⊙ (δ[l+1] W_{l+1})   one GEMM (c, out_{l+1})·(out_{l+1}, out_l)   PRML 5.56
//!   ∂E/∂W_l += δ[l]ᵀ z[l],  ∂E/∂b_l += Σ_n δ[l]                              PRML 5.53
//! ```

use super::gemm::{gemm, mat};
use super::net::{diagonal_output_hessian, is_softmax_ce, softmax_and_scale, Net};
use super::real::Real;

/// Buffers of the forward and backward passes for up to `cap` samples.
pub struct Base<T> {
    pub cap: usize,
    /// a[l] (cap, out_l).
    pub a: Vec<Vec<T>>,
    /// z[l+1] = h_l(a[l]) (cap, out_l); the last holds the outputs y.
    pub z: Vec<Vec<T>>,
    /// h_l′(a[l]), h_l″(a[l]) (cap, out_l) for hidden layers (empty at the output).
    pub dh: Vec<Vec<T>>,
    pub d2h: Vec<Vec<T>>,
    /// δ[l] (cap, out_l), of the batch mean.
    pub delta: Vec<Vec<T>>,
    /// back[l] = δ[l+1] W_{l+1} (cap, out_l) for hidden layers.
    pub back: Vec<Vec<T>>,
    /// Per sample output curvature: ce p (cap, K) and s (cap); otherwise the
    /// diagonal output Hessian (cap, K) of the last R-pass's kind.
    pub out_p: Vec<T>,
    pub out_s: Vec<T>,
    /// Gradient accumulators: ∂E/∂W_l (out_l, in_l), ∂E/∂b_l (out_l).
    pub gw: Vec<Vec<T>>,
    pub gb: Vec<Vec<T>>,
    /// f64 scratch rows of K for the loss formulas.
    pub s_a: Vec<f64>,
    pub s_t: Vec<f64>,
    pub s_o: Vec<f64>,
}

/// How much of the forward pass to keep.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    /// a and z only (loss, outputs).
    Values,
    /// and h′ (gradient, Gv).
    FirstDerivative,
    /// and h″ (Hv, diag H).
    SecondDerivative,
}

impl<T: Real> Base<T> {
    pub fn new(net: &Net<T>, cap: usize) -> Base<T> {
        let depth = net.depth();
        let per = |f: &dyn Fn(usize) -> usize| -> Vec<Vec<T>> {
            (0..depth).map(|l| vec![T::zero(); f(l)]).collect()
        };
        let out = |l: usize| net.layers[l].fan_out;
        let hidden = |l: usize| if l + 1 < depth { cap * out(l) } else { 0 };
        let k = net.k_out();
        Base {
            cap,
            a: per(&|l| cap * out(l)),
            z: per(&|l| cap * out(l)),
            dh: per(&hidden),
            d2h: per(&hidden),
            delta: per(&|l| cap * out(l)),
            back: per(&hidden),
            out_p: vec![T::zero(); cap * k],
            out_s: vec![T::zero(); cap],
            gw: per(&|l| net.layers[l].fan_out * net.layers[l].fan_in),
            gb: per(&out),
            s_a: vec![0.0; k],
            s_t: vec![0.0; k],
            s_o: vec![0.0; k],
        }
    }
}

/// z[l] of the chunk: X for l = 0, else the stored z.
pub fn input<'a, T>(base: &'a Base<T>, x: &'a [T], l: usize) -> &'a [T] {
    if l == 0 {
        x
    } else {
        &base.z[l - 1]
    }
}

/// The forward pass for the c samples of `x` (c, D).
pub fn forward<T: Real>(net: &Net<T>, x: &[T], c: usize, base: &mut Base<T>, keep: Keep) {
    let depth = net.depth();
    for l in 0..depth {
        let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
        let (z_before, z_rest) = base.z.split_at_mut(l);
        let zin: &[T] = if l == 0 { x } else { &z_before[l - 1] };
        let a = &mut base.a[l];
        gemm(
            a,
            mat(zin, c, fin),
            mat(net.w(l), fout, fin).t(),
            T::one(),
            false,
        );
        let bias = net.b(l);
        for row in a[..c * fout].chunks_exact_mut(fout) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += *b;
            }
        }
        let act = net.act(l);
        let z = &mut z_rest[0];
        if l + 1 < depth {
            hidden_values(
                act,
                &a[..c * fout],
                &mut z[..c * fout],
                &mut base.dh[l],
                &mut base.d2h[l],
                keep,
            );
        } else {
            // The outputs y: softmax rows for ce, h(a) otherwise (cpu::outputs).
            for (zrow, arow) in z[..c * fout]
                .chunks_exact_mut(fout)
                .zip(a[..c * fout].chunks_exact(fout))
            {
                if act == crate::activation::Activation::Softmax {
                    for (s, v) in base.s_a.iter_mut().zip(arow) {
                        *s = v.to_f64();
                    }
                    crate::loss::softmax(&base.s_a, &mut base.s_o);
                    for (zv, p) in zrow.iter_mut().zip(&base.s_o) {
                        *zv = T::from_f64(*p);
                    }
                } else {
                    for (zv, av) in zrow.iter_mut().zip(arow) {
                        *zv = T::from_f64(act.h(av.to_f64()));
                    }
                }
            }
        }
    }
}

/// Σ_n E_n over the chunk (f64, from the output pre-activations; no mean, no L2).
pub fn loss_sum<T: Real>(net: &Net<T>, t: &[f64], c: usize, base: &mut Base<T>) -> f64 {
    let k = net.k_out();
    let last = net.depth() - 1;
    let act = net.mlp.output_activation();
    let mut sum = 0.0;
    for s in 0..c {
        for (d, v) in base.s_a.iter_mut().zip(&base.a[last][s * k..(s + 1) * k]) {
            *d = v.to_f64();
        }
        sum += net.mlp.loss().value(act, &base.s_a, &t[s * k..(s + 1) * k]);
    }
    sum
}

/// The backward pass: δ[l] (c, out_l) of the batch mean (`inv_n` = 1/N) and
/// back[l] = δ[l+1] W_{l+1}. Needs a forward pass with h′.
pub fn backward<T: Real>(net: &Net<T>, t: &[f64], c: usize, base: &mut Base<T>, inv_n: f64) {
    let k = net.k_out();
    let last = net.depth() - 1;
    let act = net.mlp.output_activation();
    for s in 0..c {
        for (d, v) in base.s_a.iter_mut().zip(&base.a[last][s * k..(s + 1) * k]) {
            *d = v.to_f64();
        }
        net.mlp
            .loss()
            .delta(act, &base.s_a, &t[s * k..(s + 1) * k], &mut base.s_o);
        for (d, v) in base.delta[last][s * k..(s + 1) * k]
            .iter_mut()
            .zip(&base.s_o)
        {
            *d = T::from_f64(v * inv_n);
        }
    }
    for l in (0..last).rev() {
        let (out_next, out_l) = (net.layers[l + 1].fan_out, net.layers[l].fan_out);
        let (d_lo, d_hi) = base.delta.split_at_mut(l + 1);
        let back = &mut base.back[l];
        gemm(
            back,
            mat(&d_hi[0], c, out_next),
            mat(net.w(l + 1), out_next, out_l),
            T::one(),
            false,
        );
        for ((d, b), h) in d_lo[l][..c * out_l]
            .iter_mut()
            .zip(&back[..c * out_l])
            .zip(&base.dh[l][..c * out_l])
        {
            *d = *h * *b;
        }
    }
}

/// Adds (or, on the first chunk, writes) ∂E/∂W_l = δ[l]ᵀ z[l] and
/// ∂E/∂b_l = Σ_n δ[l] for every layer into the accumulators.
pub fn accumulate_gradient<T: Real>(
    net: &Net<T>,
    x: &[T],
    c: usize,
    base: &mut Base<T>,
    first: bool,
) {
    for l in 0..net.depth() {
        let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
        let mut gw = std::mem::take(&mut base.gw[l]);
        gemm(
            &mut gw,
            mat(&base.delta[l], c, fout).t(),
            mat(input(base, x, l), c, fin),
            T::one(),
            !first,
        );
        base.gw[l] = gw;
        let gb = &mut base.gb[l];
        if first {
            gb.iter_mut().for_each(|g| *g = T::zero());
        }
        for row in base.delta[l][..c * fout].chunks_exact(fout) {
            for (g, d) in gb.iter_mut().zip(row) {
                *g += *d;
            }
        }
    }
}

/// Prepares the output curvature of every sample of the chunk: p and s for
/// ce (s·(diag(p) − ppᵀ)), else the diagonal output Hessian (exact, or its
/// Gauss-Newton part).
pub fn prepare_output_curvature<T: Real>(
    net: &Net<T>,
    t: &[f64],
    c: usize,
    base: &mut Base<T>,
    gauss_newton: bool,
) {
    let k = net.k_out();
    let last = net.depth() - 1;
    let ce = is_softmax_ce(net.mlp);
    if ce {
        // p is the forward pass's output z[L] (softmax rows); s = Σ_k t_k.
        for s in 0..c {
            let span = s * k..(s + 1) * k;
            base.out_p[span.clone()].copy_from_slice(&base.z[last][span.clone()]);
            base.out_s[s] = T::from_f64(t[span].iter().sum());
        }
        return;
    }
    for s in 0..c {
        for (d, v) in base.s_a.iter_mut().zip(&base.a[last][s * k..(s + 1) * k]) {
            *d = v.to_f64();
        }
        let t_s = &t[s * k..(s + 1) * k];
        if ce {
            let scale = softmax_and_scale(&base.s_a, t_s, &mut base.s_o);
            base.out_s[s] = T::from_f64(scale);
        } else {
            diagonal_output_hessian(
                net.mlp.loss(),
                net.mlp.output_activation(),
                &base.s_a,
                t_s,
                gauss_newton,
                &mut base.s_o,
            );
        }
        for (d, v) in base.out_p[s * k..(s + 1) * k].iter_mut().zip(&base.s_o) {
            *d = T::from_f64(*v);
        }
    }
}

/// z = h(a), and h′(a), h″(a) as `keep` asks, elementwise. For sigmoid and tanh
/// h is evaluated once per entry and h′, h″ follow from it by the very
/// expressions of `activation.rs` (s(1 − s), s(1 − s)(1 − 2s); 1 − t², −2t(1 − t²)),
/// so the values are identical to calling h, h′, h″ separately.
fn hidden_values<T: Real>(
    act: crate::activation::Activation,
    a: &[T],
    z: &mut [T],
    dh: &mut [T],
    d2h: &mut [T],
    keep: Keep,
) {
    use crate::activation::{sigmoid, Activation};
    let n = a.len();
    let first = keep >= Keep::FirstDerivative;
    let second = keep >= Keep::SecondDerivative;
    match act {
        Activation::Sigmoid | Activation::Tanh => {
            for i in 0..n {
                let av = a[i].to_f64();
                let (h, d, d2) = if act == Activation::Sigmoid {
                    let s = sigmoid(av);
                    (s, s * (1.0 - s), s * (1.0 - s) * (1.0 - 2.0 * s))
                } else {
                    let t = av.tanh();
                    (t, 1.0 - t * t, -2.0 * t * (1.0 - t * t))
                };
                z[i] = T::from_f64(h);
                if first {
                    dh[i] = T::from_f64(d);
                }
                if second {
                    d2h[i] = T::from_f64(d2);
                }
            }
        }
        _ => {
            for i in 0..n {
                let av = a[i].to_f64();
                z[i] = T::from_f64(act.h(av));
                if first {
                    dh[i] = T::from_f64(act.dh(av));
                }
                if second {
                    d2h[i] = T::from_f64(act.d2h(av));
                }
            }
        }
    }
}
