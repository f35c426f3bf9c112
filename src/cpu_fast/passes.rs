//! Forward and backward passes over one chunk of c samples (c ≤ the
//! workspace's capacity C), the same equations as `cpu/passes.rs`
//! (0-based: layer l maps z\[l\] → a\[l\] → z[l+1], z\[0\] = X):
//! ```text
//!   a[l]   = z[l] W_lᵀ + b_l          one GEMM (c, in_l)·(in_l, out_l)      PRML 5.98
//!   z[l+1] = h_l(a[l])                                                       PRML 5.99
//!   δ[L−1] = ∂E_n/∂a / N               (Loss::delta, per sample)
//!   δ[l]   = h_l′(a[l]) ⊙ (δ[l+1] W_{l+1})   one GEMM (c, out_{l+1})·(out_{l+1}, out_l)   PRML 5.56
//!   ∂E/∂W_l += δ[l]ᵀ z[l],  ∂E/∂b_l += Σ_n δ[l]                              PRML 5.53
//! ```

use super::gemm::{gemm, gemm_into, mat, sum_plan, Layout, Operand};
use super::net::{softmax_output, Net};
use super::par::{self, rows_per_task, with_scratch};
use super::real::Real;
use crate::activation::Activation;
use crate::engine::Kind;

/// Buffers of the forward and backward passes for up to `cap` samples.
pub struct Base<T> {
    pub cap: usize,
    /// a\[l\] (cap, out_l).
    pub a: Vec<Vec<T>>,
    /// z[l+1] = h_l(a\[l\]) (cap, out_l); the last holds the outputs y.
    pub z: Vec<Vec<T>>,
    /// h_l′(a\[l\]), h_l″(a\[l\]) (cap, out_l) for hidden layers (empty at the output).
    pub dh: Vec<Vec<T>>,
    pub d2h: Vec<Vec<T>>,
    /// δ\[l\] (cap, out_l), of the batch mean.
    pub delta: Vec<Vec<T>>,
    /// back\[l\] = δ[l+1] W_{l+1} (cap, out_l) for hidden layers.
    pub back: Vec<Vec<T>>,
    /// Per sample output curvature: ce p (cap, K) and s (cap); otherwise the
    /// diagonal output Hessian (cap, K) of the last R-pass's kind.
    pub out_p: Vec<T>,
    pub out_s: Vec<T>,
    /// Gradient accumulators: ∂E/∂W_l (out_l, in_l) in `gw_layout[l]` (see
    /// `sum_over_samples`), ∂E/∂b_l (out_l).
    pub gw: Vec<Vec<T>>,
    pub gw_layout: Vec<Layout>,
    pub gb: Vec<Vec<T>>,
    /// E_n of every sample of the chunk (cap), summed in row order so the
    /// loss does not depend on how the rows were split among threads.
    pub row_loss: Vec<f64>,
    /// (cap) ones: Σ_n over rows as one GEMM (1, c)·(c, width).
    pub ones: Vec<T>,
}

/// How much of the forward pass to keep.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Keep {
    /// a and z only (loss, outputs).
    Values,
    /// and h′ (gradient, Gv).
    FirstDerivative,
    /// and h″ (Hv, diag H).
    SecondDerivative,
}

/// Which δ\[l\] the backward pass computes. back\[l\] = δ[l+1] W_{l+1} is always
/// computed; δ\[0\] = h′ ⊙ back\[0\] feeds only ∂E/∂W_0, so the curvature passes
/// skip it (on M it is one more pass over a (N, 128) buffer per Hv).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Deltas {
    /// Every layer's δ (the gradient).
    All,
    /// δ\[l\] for l ≥ 1 (Hv, the diagonals).
    AboveInput,
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
            gw_layout: vec![Layout::RowMajor; net.depth()],
            gb: per(&out),
            row_loss: vec![0.0; cap],
            ones: vec![T::one(); cap],
        }
    }
}

impl<T: Real> Base<T> {
    /// Adds another part's gradient accumulators into these.
    pub fn add_gradient(&mut self, other: &Base<T>) {
        add_into(&mut self.gw, &other.gw);
        add_into(&mut self.gb, &other.gb);
    }
}

/// dst\[l\] += src\[l\], entry by entry, for every layer.
pub fn add_into<T: Real>(dst: &mut [Vec<T>], src: &[Vec<T>]) {
    for (d, s) in dst.iter_mut().zip(src) {
        add_assign(d, s);
    }
}

/// dst += src entry by entry, over the shorter of the two.
pub fn add_assign<T: Real>(dst: &mut [T], src: &[T]) {
    for (a, b) in dst.iter_mut().zip(src) {
        *a += *b;
    }
}

/// z\[l\] of the chunk: X for l = 0, else the stored z.
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
        let act = net.act(l);
        let z = &mut z_rest[0][..c * fout];
        let a = &mut a[..c * fout];
        let add_bias = |rows: &mut [T]| {
            for row in rows.chunks_exact_mut(fout) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += *b;
                }
            }
        };
        if l + 1 < depth {
            let (dh, d2h) = (&mut base.dh[l][..c * fout], &mut base.d2h[l][..c * fout]);
            par::rows4(
                [a, z, dh, d2h],
                fout,
                rows_per_task(fout),
                |_, a, z, dh, d2h| {
                    add_bias(a);
                    T::hidden_values(act, a, z, dh, d2h, keep as u8);
                },
            );
        } else {
            // The outputs y: softmax rows for ce, h(a) otherwise (cpu::outputs).
            let work = fout * 8; // exp and the f64 round trip per entry
            par::rows2(a, z, fout, rows_per_task(work), |_, a, z| {
                add_bias(a);
                output_values(act, a, z, fout);
            });
        }
    }
}

/// y = softmax(a) (`Real::softmax_rows`) or h(a) by the f64 formulas, row by row.
fn output_values<T: Real>(act: Activation, a: &[T], z: &mut [T], k: usize) {
    if act == Activation::Softmax {
        T::softmax_rows(a, z, k);
        return;
    }
    for (zv, av) in z[..a.len()].iter_mut().zip(a) {
        *zv = T::from_f64(act.h(av.to_f64()));
    }
}

/// Softmax rows by the f64 formula of `loss.rs`, rounded to T.
pub fn spec_softmax_rows<T: Real>(a: &[T], p: &mut [T], k: usize) {
    with_scratch(k, |s_a, s_o, _| {
        for (prow, arow) in p.chunks_exact_mut(k).zip(a.chunks_exact(k)) {
            for (s, v) in s_a.iter_mut().zip(arow) {
                *s = v.to_f64();
            }
            crate::loss::softmax(s_a, s_o);
            for (pv, o) in prow.iter_mut().zip(s_o.iter()) {
                *pv = T::from_f64(*o);
            }
        }
    })
}

/// Σ_n E_n over the chunk (f64, from the output pre-activations; no mean, no
/// L2): E_n per row in parallel, then added in row order.
pub fn loss_sum<T: Real>(net: &Net<T>, t: &[f64], c: usize, base: &mut Base<T>) -> f64 {
    let k = net.k_out();
    let last = net.depth() - 1;
    let act = net.mlp.output_activation();
    let loss = net.mlp.loss();
    let a_out = &base.a[last];
    par::rows1(
        &mut base.row_loss[..c],
        1,
        rows_per_task(8 * k),
        |first, out| {
            with_scratch(k, |s_a, _, _| {
                for (i, e) in out.iter_mut().enumerate() {
                    let s = first + i;
                    for (d, v) in s_a.iter_mut().zip(&a_out[s * k..(s + 1) * k]) {
                        *d = v.to_f64();
                    }
                    *e = loss.value(act, s_a, &t[s * k..(s + 1) * k]);
                }
            })
        },
    );
    base.row_loss[..c].iter().sum()
}

/// The backward pass: δ\[l\] (c, out_l) of the batch mean (`inv_n` = 1/N) and
/// back\[l\] = δ[l+1] W_{l+1}. Needs a forward pass with h′.
pub fn backward<T: Real>(
    net: &Net<T>,
    t: &[f64],
    c: usize,
    base: &mut Base<T>,
    inv_n: f64,
    deltas: Deltas,
) {
    let k = net.k_out();
    let last = net.depth() - 1;
    let act = net.mlp.output_activation();
    let loss = net.mlp.loss();
    let a_out = &base.a[last];
    if softmax_output(net.mlp) {
        // δ = s·p − t (Loss::delta for ce, s = Σ_k t_k) from the forward
        // pass's p = z[L]: no second softmax. Exactly Loss::delta's values in
        // f64; in f32, p was rounded once more.
        let p_out = &base.z[last];
        par::rows1(
            &mut base.delta[last][..c * k],
            k,
            rows_per_task(2 * k),
            |first, delta| {
                for (i, d_row) in delta.chunks_exact_mut(k).enumerate() {
                    let s = first + i;
                    let t_s = &t[s * k..(s + 1) * k];
                    let sum_t: f64 = t_s.iter().sum();
                    for ((d, p), tv) in d_row.iter_mut().zip(&p_out[s * k..]).zip(t_s) {
                        *d = T::from_f64((sum_t * p.to_f64() - tv) * inv_n);
                    }
                }
            },
        );
    } else {
        par::rows1(
            &mut base.delta[last][..c * k],
            k,
            rows_per_task(8 * k),
            |first, delta| {
                with_scratch(k, |s_a, s_o, _| {
                    for (i, d_row) in delta.chunks_exact_mut(k).enumerate() {
                        let s = first + i;
                        for (d, v) in s_a.iter_mut().zip(&a_out[s * k..(s + 1) * k]) {
                            *d = v.to_f64();
                        }
                        loss.delta(act, s_a, &t[s * k..(s + 1) * k], s_o);
                        for (d, v) in d_row.iter_mut().zip(s_o.iter()) {
                            *d = T::from_f64(v * inv_n);
                        }
                    }
                })
            },
        );
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
        if l == 0 && deltas == Deltas::AboveInput {
            break;
        }
        let (back, dh) = (&back[..c * out_l], &base.dh[l][..c * out_l]);
        par::rows1(
            &mut d_lo[l][..c * out_l],
            out_l,
            rows_per_task(out_l),
            |first, d| {
                let span = first * out_l..first * out_l + d.len();
                for ((d, b), h) in d.iter_mut().zip(&back[span.clone()]).zip(&dh[span]) {
                    *d = *h * *b;
                }
            },
        );
    }
}

/// dst (m, in_l) (+)= aᵀ z\[l\] for `a` (c, m) row-major: a sum over the
/// chunk's samples with layer l's input (X for l = 0, from `x` or from its
/// column-major copy `x_cols`, both (c, D)), stored as `sum_plan` says for
/// this shape. Returns the layout used.
#[allow(clippy::too_many_arguments)]
pub fn sum_over_samples<T: Real>(
    dst: &mut [T],
    a: &[T],
    m: usize,
    base: &Base<T>,
    x: &[T],
    x_cols: Operand<T>,
    l: usize,
    c: usize,
    fin: usize,
    accumulate: bool,
) -> Layout {
    let (layout, from_columns) = sum_plan(m, fin, c, l == 0);
    let z = match (l, from_columns) {
        (0, true) => x_cols,
        (0, false) => mat(x, c, fin),
        _ => mat(&base.z[l - 1], c, fin),
    };
    gemm_into(dst, layout, mat(a, c, m).t(), z, T::one(), accumulate);
    layout
}

/// Adds (or, on the first chunk, writes) ∂E/∂W_l = δ\[l\]ᵀ z\[l\] and
/// ∂E/∂b_l = Σ_n δ\[l\] for every layer into the accumulators. `x` is the
/// chunk's X (c, D), `x_cols` the same read from the engine's column-major
/// copy (see `sum_over_samples`).
pub fn accumulate_gradient<T: Real>(
    net: &Net<T>,
    x: &[T],
    x_cols: Operand<T>,
    c: usize,
    base: &mut Base<T>,
    first: bool,
) {
    for l in 0..net.depth() {
        let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
        // δ[l]ᵀ z[l]: (out, c)·(c, in).
        let mut gw = std::mem::take(&mut base.gw[l]);
        let layout = sum_over_samples(
            &mut gw,
            &base.delta[l],
            fout,
            base,
            x,
            x_cols,
            l,
            c,
            fin,
            !first,
        );
        base.gw[l] = gw;
        base.gw_layout[l] = layout;
        // Σ_n δ[l]: (1, c)·(c, out).
        gemm(
            &mut base.gb[l],
            mat(&base.ones, 1, c),
            mat(&base.delta[l], c, fout),
            T::one(),
            !first,
        );
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
    kind: Kind,
) {
    let k = net.k_out();
    let last = net.depth() - 1;
    if softmax_output(net.mlp) {
        // p is the forward pass's output z[L] (softmax rows); s = Σ_k t_k.
        base.out_p[..c * k].copy_from_slice(&base.z[last][..c * k]);
        for (s, o) in base.out_s[..c].iter_mut().enumerate() {
            *o = T::from_f64(t[s * k..(s + 1) * k].iter().sum());
        }
        return;
    }
    let (loss, act) = (net.mlp.loss(), net.mlp.output_activation());
    let a_out = &base.a[last];
    par::rows1(
        &mut base.out_p[..c * k],
        k,
        rows_per_task(8 * k),
        |first, out| {
            with_scratch(k, |s_a, s_o, _| {
                for (i, o_row) in out.chunks_exact_mut(k).enumerate() {
                    let s = first + i;
                    for (d, v) in s_a.iter_mut().zip(&a_out[s * k..(s + 1) * k]) {
                        *d = v.to_f64();
                    }
                    let t_s = &t[s * k..(s + 1) * k];
                    loss.diagonal_hessian(act, s_a, t_s, kind, s_o);
                    for (d, v) in o_row.iter_mut().zip(s_o.iter()) {
                        *d = T::from_f64(*v);
                    }
                }
            })
        },
    );
}

/// z = h(a), and h′(a) (`keep` ≥ 1), h″(a) (`keep` ≥ 2), elementwise, by the
/// f64 formulas of `activation.rs` (the f64 engine's path). For sigmoid and tanh
/// h is evaluated once per entry and h′, h″ follow from it by the very
/// expressions of `activation.rs` (s(1 − s), s(1 − s)(1 − 2s); 1 − t², −2t(1 − t²)),
/// so the values are identical to calling h, h′, h″ separately.
pub fn spec_hidden_values<T: Real>(
    act: Activation,
    a: &[T],
    z: &mut [T],
    dh: &mut [T],
    d2h: &mut [T],
    keep: u8,
) {
    use crate::activation::sigmoid;
    let n = a.len();
    let first = keep >= Keep::FirstDerivative as u8;
    let second = keep >= Keep::SecondDerivative as u8;
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
