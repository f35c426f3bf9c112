//! Diagonals without the W × W matrix, batched over samples (the same
//! recursion as `cpu/diagonal.rs`: ∂²E/∂w_ji² = (1/N) Σ_n z\[l\]_i² \[M_l\]_jj + λ,
//! ∂²E/∂b_j² = (1/N) Σ_n \[M_l\]_jj, with M_l = ∂²E_n/∂a\[l\]² the per-sample
//! Hessian in layer l's pre-activations), but M_l is never formed:
//!
//! ```text
//!   M_l = Σ_r σ_r f_r f_rᵀ + diag(d_l)        (factor rows f_r with signs σ_r = ±1)
//!   M_{L−1} = H_out = Σ_r σ_r c_r c_rᵀ         (ce: c_r = √(s p_r)(e_r − p); diagonal losses √|h_rr| e_r)
//!   M_{l−1} = diag(h′) W_lᵀ M_l W_l diag(h′) + diag(h″ ⊙ (δ[l] W_l))
//!     ⇒ factor rows f_r ↦ (f_r W_l) ⊙ h′       one GEMM (c·R, out_l)·(out_l, in_l) per layer
//!        d_{l−1} = h″ ⊙ (δ[l] W_l)             (the new diagonal residual)
//!        diag(h′) W_lᵀ diag(d_l) W_l diag(h′): its diagonal is h′² ⊙ ((W_l∘W_l)ᵀ d_l),
//!          which is all that is needed when l − 1 = 0 (no layer below);
//!          otherwise d_l becomes out_l explicit factor rows √|d_lj| (W_l[j,:] ⊙ h′).
//!   diag(M_l) = Σ_r σ_r f_r² + d_l;   Σ_n diag(M_l) z∘z by one GEMM per layer.
//! ```
//! Factors carry 1/√N so that every sum is already the batch mean.
//!
//! Cost. With R_l factor rows per sample at layer l: R_{L−1} = K and, for the
//! exact diagonal, R_{l−1} = R_l + out_l when d_l must be expanded (l ≥ 2 and
//! l − 1 ≥ 1, i.e. only for L ≥ 4 layers of weights). For one or two hidden
//! layers (L ≤ 3) R stays K: the exact diag(H) costs about K times a gradient
//! (2·N·K·Σ_{l≥1} out_l·in_l for the factor GEMMs) plus mat-vecs, with no
//! cubic term. Deeper nets pay 2·N·R_l·out_l·in_l per layer with R growing by
//! the width of each expanded layer — still exact, never approximated.
//!
//! The Gauss-Newton diagonal is the same recursion from the Gauss-Newton
//! output factor without any residual (R = K everywhere); Becker-LeCun keeps
//! only diag(M) (PRML 5.81): m_{l−1} = h′² ⊙ ((W_l∘W_l)ᵀ m_l) + h″ ⊙ (δ\[l\] W_l).

use super::gemm::{gemm, mat};
use super::net::{softmax_output, Net};
use super::passes::{input, Base};
use super::real::Real;
use crate::engine::Diagonal;

/// Factor rows per sample at each layer, R_l (see the module header).
pub fn factor_rows(
    net_layers: &[crate::model::LayerLayout],
    k_out: usize,
    kind: Diagonal,
) -> Vec<usize> {
    let depth = net_layers.len();
    let mut r = vec![0; depth];
    if kind == Diagonal::BeckerLeCun {
        return vec![1; depth];
    }
    r[depth - 1] = k_out;
    for l in (1..depth).rev() {
        r[l - 1] = r[l]
            + if expands(kind, depth, l) {
                net_layers[l].fan_out
            } else {
                0
            };
    }
    r
}

/// Whether the residual d_l must become explicit factor rows when moving to l − 1.
fn expands(kind: Diagonal, depth: usize, l: usize) -> bool {
    kind == Diagonal::Hessian && l + 1 < depth && l >= 2
}

/// Buffers of the diagonal recursion for up to `cap` samples.
pub struct DiagBuffers<T> {
    pub rows: Vec<usize>,
    /// Factor rows of layer l (R_l·cap, out_l), row r·c + s (grouped by factor, then sample).
    pub fac: Vec<Vec<T>>,
    /// σ of each factor row (R_l·cap).
    sign: Vec<Vec<T>>,
    /// d_l (cap, out_l), diag(M_l) (cap, out_l), z∘z (cap, in_l), and W∘W (out_l, in_l).
    resid: Vec<Vec<T>>,
    m: Vec<Vec<T>>,
    zsq: Vec<Vec<T>>,
    wsq: Vec<Vec<T>>,
    /// Accumulated diagonals of W_l (out_l, in_l) and b_l (out_l).
    pub dw: Vec<Vec<T>>,
    pub db: Vec<Vec<T>>,
}

impl<T: Real> DiagBuffers<T> {
    pub fn new(net: &Net<T>, cap: usize, kind: Diagonal) -> DiagBuffers<T> {
        let rows = factor_rows(net.layers, net.k_out(), kind);
        let per = |f: &dyn Fn(usize) -> usize| -> Vec<Vec<T>> {
            (0..net.depth()).map(|l| vec![T::zero(); f(l)]).collect()
        };
        let (fi, fo) = (
            |l: usize| net.layers[l].fan_in,
            |l: usize| net.layers[l].fan_out,
        );
        let factored = kind != Diagonal::BeckerLeCun;
        DiagBuffers {
            fac: per(&|l| if factored { rows[l] * cap * fo(l) } else { 0 }),
            sign: per(&|l| if factored { rows[l] * cap } else { 0 }),
            resid: per(&|l| cap * fo(l)),
            m: per(&|l| cap * fo(l)),
            zsq: per(&|l| cap * fi(l)),
            wsq: per(&|l| fo(l) * fi(l)),
            dw: per(&|l| fo(l) * fi(l)),
            db: per(&fo),
            rows,
        }
    }

    /// Largest per-sample footprint of the factors, to size the chunks.
    pub fn per_sample(net: &Net<T>, kind: Diagonal) -> usize {
        let rows = factor_rows(net.layers, net.k_out(), kind);
        (0..net.depth())
            .map(|l| (rows[l] + 3) * net.layers[l].fan_out + net.layers[l].fan_in)
            .max()
            .unwrap_or(1)
    }

    /// W_l ∘ W_l for every layer, once per call.
    pub fn load_weights(&mut self, net: &Net<T>) {
        for l in 0..net.depth() {
            for (d, w) in self.wsq[l].iter_mut().zip(net.w(l)) {
                *d = *w * *w;
            }
        }
    }

    /// One chunk: `base` holds the forward pass (h′, h″), the backward pass
    /// (for Exact and Becker-LeCun) and, for Gauss-Newton/Exact on a diagonal
    /// loss, the prepared output Hessian diagonal; ce uses p and s.
    #[allow(clippy::too_many_arguments)]
    pub fn chunk(
        &mut self,
        net: &Net<T>,
        x: &[T],
        c: usize,
        base: &Base<T>,
        kind: Diagonal,
        inv_n: f64,
        first: bool,
    ) {
        let depth = net.depth();
        let last = depth - 1;
        let kk = net.k_out();
        let ce = softmax_output(net.mlp);
        let root_n = T::from_f64(inv_n.sqrt());
        // M_{L−1}: its factor, or (Becker-LeCun) its diagonal.
        if kind == Diagonal::BeckerLeCun {
            let m = &mut self.m[last];
            for s in 0..c {
                let p = &base.out_p[s * kk..(s + 1) * kk];
                for j in 0..kk {
                    let h = if ce {
                        base.out_s[s] * (p[j] - p[j] * p[j])
                    } else {
                        p[j]
                    };
                    m[s * kk + j] = h * T::from_f64(inv_n);
                }
            }
        } else {
            let (fac, sign) = (&mut self.fac[last], &mut self.sign[last]);
            for r in 0..kk {
                for s in 0..c {
                    let p = &base.out_p[s * kk..(s + 1) * kk];
                    let row = &mut fac[(r * c + s) * kk..(r * c + s + 1) * kk];
                    if ce {
                        let f = (base.out_s[s] * p[r]).to_f64().max(0.0).sqrt();
                        let f = T::from_f64(f) * root_n;
                        for (j, o) in row.iter_mut().enumerate() {
                            let unit = if j == r { T::one() } else { T::zero() };
                            *o = f * (unit - p[j]);
                        }
                        sign[r * c + s] = T::one();
                    } else {
                        let h = p[r].to_f64();
                        row.iter_mut().for_each(|o| *o = T::zero());
                        row[r] = T::from_f64(h.abs().sqrt()) * root_n;
                        sign[r * c + s] = T::from_f64(if h < 0.0 { -1.0 } else { 1.0 });
                    }
                }
            }
        }
        let mut has_extra = false;
        for l in (0..depth).rev() {
            let (fin, fout) = (net.layers[l].fan_in, net.layers[l].fan_out);
            // diag(M_l) (c, out_l).
            if kind != Diagonal::BeckerLeCun {
                let rl = self.rows[l];
                let m = &mut self.m[l];
                if has_extra {
                    // m already holds h′² ⊙ ((W∘W)ᵀ d_{l+1}).
                } else {
                    m[..c * fout].iter_mut().for_each(|v| *v = T::zero());
                }
                if kind == Diagonal::Hessian && l < last {
                    for (v, d) in m[..c * fout].iter_mut().zip(&self.resid[l][..c * fout]) {
                        *v += *d;
                    }
                }
                let (fac, sign) = (&self.fac[l], &self.sign[l]);
                for r in 0..rl {
                    for s in 0..c {
                        let sg = sign[r * c + s];
                        let f = &fac[(r * c + s) * fout..(r * c + s + 1) * fout];
                        for (v, fv) in m[s * fout..(s + 1) * fout].iter_mut().zip(f) {
                            *v += sg * *fv * *fv;
                        }
                    }
                }
            }
            // Σ_n diag(M_l)ᵀ (z∘z) and Σ_n diag(M_l).
            let zin = input(base, x, l);
            for (q, z) in self.zsq[l][..c * fin].iter_mut().zip(&zin[..c * fin]) {
                *q = *z * *z;
            }
            gemm(
                &mut self.dw[l],
                mat(&self.m[l], c, fout).t(),
                mat(&self.zsq[l], c, fin),
                T::one(),
                !first,
            );
            let db = &mut self.db[l];
            if first {
                db.iter_mut().for_each(|v| *v = T::zero());
            }
            for row in self.m[l][..c * fout].chunks_exact(fout) {
                for (d, v) in db.iter_mut().zip(row) {
                    *d += *v;
                }
            }
            if l == 0 {
                break;
            }
            // Move to layer l − 1 (in_l = out_{l−1}).
            let (dh, d2h, back) = (&base.dh[l - 1], &base.d2h[l - 1], &base.back[l - 1]);
            let n_prev = c * fin;
            if kind == Diagonal::BeckerLeCun {
                let (m_lo, m_hi) = self.m.split_at_mut(l);
                let m_prev = &mut m_lo[l - 1];
                gemm(
                    m_prev,
                    mat(&m_hi[0], c, fout),
                    mat(&self.wsq[l], fout, fin),
                    T::one(),
                    false,
                );
                for (((v, d), d2), b) in m_prev[..n_prev]
                    .iter_mut()
                    .zip(&dh[..n_prev])
                    .zip(&d2h[..n_prev])
                    .zip(&back[..n_prev])
                {
                    *v = *d * *d * *v + *d2 * *b;
                }
                continue;
            }
            let rl = self.rows[l];
            {
                let (f_lo, f_hi) = self.fac.split_at_mut(l);
                let f_prev = &mut f_lo[l - 1];
                gemm(
                    f_prev,
                    mat(&f_hi[0], rl * c, fout),
                    mat(net.w(l), fout, fin),
                    T::one(),
                    false,
                );
                for (row_idx, row) in f_prev[..rl * c * fin].chunks_exact_mut(fin).enumerate() {
                    let s = row_idx % c;
                    for (v, d) in row.iter_mut().zip(&dh[s * fin..(s + 1) * fin]) {
                        *v *= *d;
                    }
                }
                let (s_lo, s_hi) = self.sign.split_at_mut(l);
                s_lo[l - 1][..rl * c].copy_from_slice(&s_hi[0][..rl * c]);
            }
            has_extra = false;
            if kind == Diagonal::Hessian && l < last {
                if expands(kind, depth, l) {
                    // d_l as out_l factor rows √|d_lj| (W_l[j,:] ⊙ h′), grouped after the R_l rows.
                    let w = net.w(l);
                    let f_prev = &mut self.fac[l - 1];
                    let resid = &self.resid[l];
                    for j in 0..fout {
                        for s in 0..c {
                            let r = (rl + j) * c + s;
                            let d = resid[s * fout + j].to_f64();
                            let root = T::from_f64(d.abs().sqrt());
                            let row = &mut f_prev[r * fin..(r + 1) * fin];
                            for ((o, wv), hv) in row
                                .iter_mut()
                                .zip(&w[j * fin..(j + 1) * fin])
                                .zip(&dh[s * fin..(s + 1) * fin])
                            {
                                *o = root * *wv * *hv;
                            }
                            self.sign[l - 1][r] = T::from_f64(if d < 0.0 { -1.0 } else { 1.0 });
                        }
                    }
                } else {
                    // diag of diag(h′) W_lᵀ diag(d_l) W_l diag(h′) = h′² ⊙ (d_l (W_l∘W_l)).
                    let (m_lo, _) = self.m.split_at_mut(l);
                    let m_prev = &mut m_lo[l - 1];
                    gemm(
                        m_prev,
                        mat(&self.resid[l], c, fout),
                        mat(&self.wsq[l], fout, fin),
                        T::one(),
                        false,
                    );
                    for (v, d) in m_prev[..n_prev].iter_mut().zip(&dh[..n_prev]) {
                        *v *= *d * *d;
                    }
                    has_extra = true;
                }
            }
            if kind == Diagonal::Hessian {
                // d_{l−1} = h″ ⊙ (δ[l] W_l) (δ of the mean, so already /N).
                for ((v, d2), b) in self.resid[l - 1][..n_prev]
                    .iter_mut()
                    .zip(&d2h[..n_prev])
                    .zip(&back[..n_prev])
                {
                    *v = *d2 * *b;
                }
            }
        }
    }

    /// Adds another part's accumulated diagonals into these.
    pub fn add_accumulators(&mut self, other: &DiagBuffers<T>) {
        super::passes::add_into(&mut self.dw, &other.dw);
        super::passes::add_into(&mut self.db, &other.db);
    }

    /// The diagonal (W) in f64.
    pub fn finish(&self, net: &Net<T>, out: &mut [f64]) {
        for (l, layer) in net.layers.iter().enumerate() {
            for (o, v) in out[layer.weights.clone()].iter_mut().zip(&self.dw[l]) {
                *o = v.to_f64();
            }
            for (o, v) in out[layer.bias.clone()].iter_mut().zip(&self.db[l]) {
                *o = v.to_f64();
            }
        }
    }
}
