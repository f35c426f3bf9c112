//! The four passes of the CPU reference, side by side: forward, backward
//! (backpropagation), R-forward and R-backward (Pearlmutter's R-propagation,
//! PRML 5.96–5.111), generalised to any number of layers, biases, every
//! activation and every loss. f64, batched over N samples, no tape.
//!
//! ## Indexing (0-based, one index per layer of weights)
//! Layer l = 0..L−1 maps z\[l\] → a\[l\] → z[l+1]:
//! ```text
//!   a[l]   = z[l] W_lᵀ + b_l        (N, out_l)     PRML 5.98 (batched)
//!   z[l+1] = h_l(a[l])              (N, out_l)     PRML 5.99 (5.100 at the output)
//!   z[0]   = X                      (N, D)
//! ```
//! The output pre-activations are a[L−1] (N, K). The loss is written in them
//! (`Loss::delta`, `Loss::hessian_times`), so the output activation's h′ is part
//! of δ[L−1] and never applied separately.
//!
//! δ\[l\] = ∂E/∂a\[l\] (N, out_l), the errors of PRML 5.56, of the batch MEAN: the
//! output δ of every sample is divided by N, so every sum over n below is the
//! mean of E. The L2 term (λ/2)‖W‖² adds λW to the gradient and λ·V_w to Hv and
//! Gv (weights only, not biases), through `engine::penalty`, the one place λ is
//! applied: these functions are the specification of the whole E.
//!
//! Shapes are the caller's responsibility (this is the internal reference):
//! θ and v have len `mlp.num_params()`, X is (N, D), T is (N, K); they are
//! checked only by `debug_assert!` (a θ of the wrong length panics on slicing).

use crate::activation::Activation;
use crate::engine::penalty::L2;
use crate::engine::Kind;
use crate::loss::softmax;
use crate::model::{LayerLayout, Mlp};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// The quantities of a forward pass that the backward passes need.
#[derive(Clone, Debug)]
pub struct Forward {
    /// a\[l\]: (N, out_l) pre-activations of layer l, l = 0..L−1.
    pub a: Vec<Array2<f64>>,
    /// z\[0\] = X (N, D); z[l+1] = h_l(a\[l\]) (N, out_l). The last, z\[L\], holds
    /// the network outputs y (softmax probabilities for ce, see [`outputs`]).
    pub z: Vec<Array2<f64>>,
}

/// W_l as an (out_l, in_l) view into θ (or into a direction v of the same layout).
pub(crate) fn weights<'a>(layer: &LayerLayout, theta: &'a [f64]) -> ArrayView2<'a, f64> {
    // θ[layer.weights] has exactly out_l·in_l entries by construction of the layout.
    ArrayView2::from_shape((layer.fan_out, layer.fan_in), &theta[layer.weights.clone()])
        .expect("the layer layout gives W_l exactly out_l·in_l entries")
}

/// b_l as an (out_l) view into θ (or v).
fn bias<'a>(layer: &LayerLayout, theta: &'a [f64]) -> ArrayView1<'a, f64> {
    ArrayView1::from(&theta[layer.bias.clone()])
}

/// Applies `f` to every element of `a`: h(a), h′(a) or h″(a) of one layer.
fn elementwise(a: &Array2<f64>, f: impl Fn(f64) -> f64) -> Array2<f64> {
    a.mapv(f)
}

/// δ at the output, one row per sample: ∂E_n/∂a (`Loss::delta`), (N, K).
/// Not yet divided by N.
fn output_delta(mlp: &Mlp, a_out: &Array2<f64>, t: ArrayView2<f64>) -> Array2<f64> {
    let (loss, act) = (mlp.loss(), mlp.output_activation());
    let mut delta = Array2::zeros(a_out.dim());
    for ((a_n, t_n), mut d_n) in a_out.rows().into_iter().zip(t.rows()).zip(delta.rows_mut()) {
        let mut out = vec![0.0; a_n.len()];
        loss.delta(act, &a_n.to_vec(), &t_n.to_vec(), &mut out);
        d_n.assign(&ArrayView1::from(&out));
    }
    delta
}

/// R{δ} at the output, one row per sample: (∂²E_n/∂a²) r_n (`Loss::hessian_times`,
/// exact or its Gauss-Newton part), (N, K). Not yet divided by N.
fn output_hessian_times(
    mlp: &Mlp,
    a_out: &Array2<f64>,
    t: ArrayView2<f64>,
    r: &Array2<f64>,
    kind: Kind,
) -> Array2<f64> {
    let (loss, act) = (mlp.loss(), mlp.output_activation());
    let mut out = Array2::zeros(a_out.dim());
    for (n, mut o_n) in out.rows_mut().into_iter().enumerate() {
        let mut row = vec![0.0; a_out.ncols()];
        let (a_n, t_n, r_n) = (a_out.row(n).to_vec(), t.row(n).to_vec(), r.row(n).to_vec());
        loss.hessian_times(act, &a_n, &t_n, &r_n, kind, &mut row);
        o_n.assign(&ArrayView1::from(&row));
    }
    out
}

/// The forward pass (PRML 5.98–5.100 batched): a\[l\] = z\[l\] W_lᵀ + b_l,
/// z[l+1] = h_l(a\[l\]), for θ (W) and X (N, D). The last z is the network
/// output y as [`outputs`] defines it.
pub fn forward(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>) -> Forward {
    debug_assert_eq!(theta.len(), mlp.num_params());
    debug_assert_eq!(x.ncols(), mlp.num_inputs());
    let layers = mlp.layout();
    let mut a = Vec::with_capacity(layers.len());
    let mut z = vec![x.to_owned()];
    for (l, layer) in layers.iter().enumerate() {
        let act = mlp.activations()[l];
        let a_l = z[l].dot(&weights(layer, theta).t()) + bias(layer, theta); // (N, out_l)
        let z_next = if act == Activation::Softmax {
            softmax_rows(&a_l)
        } else {
            elementwise(&a_l, |v| act.h(v))
        };
        a.push(a_l);
        z.push(z_next);
    }
    Forward { a, z }
}

/// softmax of every row of `a` (N, K).
fn softmax_rows(a: &Array2<f64>) -> Array2<f64> {
    let mut p = Array2::zeros(a.dim());
    for (a_n, mut p_n) in a.rows().into_iter().zip(p.rows_mut()) {
        let mut out = vec![0.0; a_n.len()];
        softmax(&a_n.to_vec(), &mut out);
        p_n.assign(&ArrayView1::from(&out));
    }
    p
}

/// The network outputs y (N, K) for X (N, D): softmax probabilities for ce,
/// sigmoid for bce, h(a) of the output activation otherwise.
pub fn outputs(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>) -> Array2<f64> {
    let mut fw = forward(mlp, theta, x);
    fw.z.pop().unwrap_or_default()
}

/// E_n for every sample from the output pre-activations (N, K) and targets (N, K).
fn per_sample_loss(mlp: &Mlp, a_out: &Array2<f64>, t: ArrayView2<f64>) -> Array1<f64> {
    let act = mlp.output_activation();
    a_out
        .rows()
        .into_iter()
        .zip(t.rows())
        .map(|(a_n, t_n)| mlp.loss().value(act, &a_n.to_vec(), &t_n.to_vec()))
        .collect()
}

/// E(θ) = (1/N) Σ_n E_n + (λ/2) Σ_l ‖W_l‖² for X (N, D), T (N, K).
pub fn loss(mlp: &Mlp, theta: &[f64], x: ArrayView2<f64>, t: ArrayView2<f64>) -> f64 {
    let fw = forward(mlp, theta, x);
    loss_from_forward(mlp, theta, &fw, t)
}

fn loss_from_forward(mlp: &Mlp, theta: &[f64], fw: &Forward, t: ArrayView2<f64>) -> f64 {
    let a_out = &fw.a[fw.a.len() - 1];
    debug_assert_eq!(t.dim(), a_out.dim(), "T must be (N, K)");
    per_sample_loss(mlp, a_out, t).mean().unwrap_or(0.0) + L2::of(mlp).value(theta)
}

/// The backward pass (PRML 5.56, batched): δ[L−1] = ∂E_n/∂a (`Loss::delta`)
/// / N, δ\[l\] = h_l′(a\[l\]) ⊙ (δ[l+1] W_{l+1}). Returns δ\[l\] (N, out_l) for
/// every layer.
pub fn backward(mlp: &Mlp, theta: &[f64], fw: &Forward, t: ArrayView2<f64>) -> Vec<Array2<f64>> {
    let layers = mlp.layout();
    let last = layers.len() - 1;
    debug_assert_eq!(t.dim(), fw.a[last].dim(), "T must be (N, K)");
    let n = fw.a[last].nrows() as f64;
    let mut delta = vec![Array2::zeros((0, 0)); layers.len()];
    delta[last] = output_delta(mlp, &fw.a[last], t) / n;
    for l in (0..last).rev() {
        let act = mlp.activations()[l];
        let back = delta[l + 1].dot(&weights(&layers[l + 1], theta)); // (N, out_l)
        delta[l] = elementwise(&fw.a[l], |v| act.dh(v)) * back;
    }
    delta
}

/// Writes ∂E/∂W_l = δ[l]ᵀ z[l] and ∂E/∂b_l = Σ_n δ[l] (PRML 5.53, summed
/// over the batch) into `grad` (W) at the positions of θ, for every layer.
fn weight_gradient(mlp: &Mlp, delta: &[Array2<f64>], z: &[Array2<f64>], grad: &mut [f64]) {
    for (l, layer) in mlp.layout().iter().enumerate() {
        let g_w = delta[l].t().dot(&z[l]); // (out_l, in_l)
        let g_b = delta[l].sum_axis(Axis(0)); // (out_l)
        for (dst, src) in grad[layer.weights.clone()].iter_mut().zip(g_w.iter()) {
            *dst += src;
        }
        for (dst, src) in grad[layer.bias.clone()].iter_mut().zip(g_b.iter()) {
            *dst += src;
        }
    }
}

/// (E, ∇E): the objective and its gradient (W) by backpropagation
/// (PRML 5.53–5.56), including λW from the L2 term.
pub fn gradient(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
) -> (f64, Vec<f64>) {
    let fw = forward(mlp, theta, x);
    let delta = backward(mlp, theta, &fw, t);
    let mut grad = vec![0.0; theta.len()];
    weight_gradient(mlp, &delta, &fw.z, &mut grad);
    L2::of(mlp).add_times(theta, &mut grad);
    (loss_from_forward(mlp, theta, &fw, t), grad)
}

/// One R-pass for direction v (W): R-forward, then R-backward, then R{∇E}.
///
/// R-forward (PRML 5.101–5.103, generalised): R{z[0]} = 0,
///   R{a[l]}   = R{z[l]} W_lᵀ + z[l] V_lᵀ + Vb_l      (N, out_l)
///   R{z[l+1]} = h_l′(a[l]) ⊙ R{a[l]}
/// Output (PRML 5.106, generalised):
///   R{δ[L−1]} = (∂²E_n/∂a²) R{a[L−1]} / N
///   (`Loss::hessian_times`; its Gauss-Newton part for `Kind::GaussNewton`).
/// R-backward (PRML 5.107, generalised):
///   R{δ[l]} = h_l″(a[l]) ⊙ R{a[l]} ⊙ (δ[l+1] W_{l+1})
///           + h_l′(a[l]) ⊙ (R{δ[l+1]} W_{l+1} + δ[l+1] V_{l+1})
/// Gradient (PRML 5.110–5.111; a bias is a weight on a constant input 1):
///   R{∂E/∂W_l} = R{δ[l]}ᵀ z[l] + δ[l]ᵀ R{z[l]},
///   R{∂E/∂b_l} = Σ_n R{δ[l]};   plus λ V_w.
/// For G (`Kind::GaussNewton`) the second-order terms (the h″ term, δ·V and δᵀR{z})
/// are dropped: what remains is Jᵀ H_out,GN J v, the Gauss-Newton product.
fn r_pass(
    mlp: &Mlp,
    theta: &[f64],
    fw: &Forward,
    delta: &[Array2<f64>],
    t: ArrayView2<f64>,
    v: &[f64],
    kind: Kind,
) -> Vec<f64> {
    debug_assert_eq!(v.len(), theta.len());
    let layers = mlp.layout();
    let last = layers.len() - 1;
    let n = fw.a[last].nrows() as f64;

    // R-forward (5.101–5.103).
    let mut r_a: Vec<Array2<f64>> = Vec::with_capacity(layers.len()); // R{a[l]} (N, out_l)
    let mut r_z: Vec<Array2<f64>> = vec![Array2::zeros(fw.z[0].dim())]; // R{z[l]} (N, in_l)
    for (l, layer) in layers.iter().enumerate() {
        let act = mlp.activations()[l];
        // R{a[l]} = R{z[l]} W_lᵀ + z[l] V_lᵀ + Vb_l
        let r_a_l = r_z[l].dot(&weights(layer, theta).t())
            + fw.z[l].dot(&weights(layer, v).t())
            + bias(layer, v);
        r_z.push(elementwise(&fw.a[l], |a| act.dh(a)) * &r_a_l); // R{z[l+1]} = h′(a[l]) ⊙ R{a[l]}
        r_a.push(r_a_l);
    }

    // Output (5.106): R{δ} = H_out R{a} / N.
    let mut r_delta = vec![Array2::zeros((0, 0)); layers.len()];
    r_delta[last] = output_hessian_times(mlp, &fw.a[last], t, &r_a[last], kind) / n;

    // R-backward (5.107): R{δ[l]} = h″ ⊙ R{a} ⊙ (δ W) + h′ ⊙ (R{δ} W + δ V).
    for l in (0..last).rev() {
        let act = mlp.activations()[l];
        let w_next = weights(&layers[l + 1], theta);
        let dh = elementwise(&fw.a[l], |a| act.dh(a));
        let r_back = r_delta[l + 1].dot(&w_next); // R{δ[l+1]} W_{l+1}  (N, out_l)
        r_delta[l] = if kind == Kind::GaussNewton {
            dh * r_back
        } else {
            let back = delta[l + 1].dot(&w_next); // δ[l+1] W_{l+1}
            let back_v = delta[l + 1].dot(&weights(&layers[l + 1], v)); // δ[l+1] V_{l+1}
            let d2h = elementwise(&fw.a[l], |a| act.d2h(a));
            d2h * &r_a[l] * back + dh * (r_back + back_v)
        };
    }

    // R{∇E} (5.110–5.111): R{δ[l]}ᵀ z[l] (+ δ[l]ᵀ R{z[l]} below).
    let mut out = vec![0.0; theta.len()];
    weight_gradient(mlp, &r_delta, &fw.z, &mut out);
    if kind == Kind::Hessian {
        // δ[l]ᵀ R{z[l]}: the weights' gradient also moves with the inputs z[l].
        weight_only_term(mlp, delta, &r_z, &mut out);
    }
    L2::of(mlp).add_times(v, &mut out);
    out
}

/// Adds δ[l]ᵀ u[l] (out_l, in_l) on the weight entries of every layer (no bias term).
fn weight_only_term(mlp: &Mlp, delta: &[Array2<f64>], u: &[Array2<f64>], out: &mut [f64]) {
    for (l, layer) in mlp.layout().iter().enumerate() {
        let g = delta[l].t().dot(&u[l]);
        for (dst, src) in out[layer.weights.clone()].iter_mut().zip(g.iter()) {
            *dst += src;
        }
    }
}

/// Runs `r_pass` for every row of V (k, W), sharing one forward and one backward pass.
fn r_pass_block(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    v: ArrayView2<f64>,
    kind: Kind,
) -> Array2<f64> {
    debug_assert_eq!(v.ncols(), theta.len());
    let fw = forward(mlp, theta, x);
    let delta = backward(mlp, theta, &fw, t);
    let mut out = Array2::zeros(v.dim());
    for (v_i, mut out_i) in v.rows().into_iter().zip(out.rows_mut()) {
        let r = r_pass(mlp, theta, &fw, &delta, t, &v_i.to_vec(), kind);
        out_i.assign(&ArrayView1::from(&r));
    }
    out
}

/// H v (W) by Pearlmutter's R-propagation (PRML 5.96–5.111), exact, for X (N, D),
/// T (N, K) and a direction v (W); includes λ·v on weights.
pub fn hvp(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    v: &[f64],
) -> Vec<f64> {
    let fw = forward(mlp, theta, x);
    let delta = backward(mlp, theta, &fw, t);
    r_pass(mlp, theta, &fw, &delta, t, v, Kind::Hessian)
}

/// H V for a block V (k, W): row i of the result (k, W) is H v_i. One forward
/// and one backward pass are shared by the k R-passes.
pub fn hvp_block(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    v: ArrayView2<f64>,
) -> Array2<f64> {
    r_pass_block(mlp, theta, x, t, v, Kind::Hessian)
}

/// G v (W), the Gauss-Newton product (1/N) Σ_n J_nᵀ H_out,GN,n J_n v + λ v_w
/// (PRML 5.84/5.85 as a product): R-forward for J v, the Gauss-Newton output
/// Hessian, then a linear backward pass for Jᵀ.
pub fn gvp(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    v: &[f64],
) -> Vec<f64> {
    let fw = forward(mlp, theta, x);
    let delta = backward(mlp, theta, &fw, t);
    r_pass(mlp, theta, &fw, &delta, t, v, Kind::GaussNewton)
}

/// G V for a block V (k, W): row i of the result (k, W) is G v_i, in one pass.
pub fn gvp_block(
    mlp: &Mlp,
    theta: &[f64],
    x: ArrayView2<f64>,
    t: ArrayView2<f64>,
    v: ArrayView2<f64>,
) -> Array2<f64> {
    r_pass_block(mlp, theta, x, t, v, Kind::GaussNewton)
}

/// The fraction of samples whose prediction matches the target, for outputs
/// y (N, K) and targets t (N, K): argmax equality for K > 1; for K = 1 (a
/// single bce output), y ≥ 0.5 against t ≥ 0.5. 0 for an empty batch.
pub fn accuracy(y: ArrayView2<f64>, t: ArrayView2<f64>) -> f64 {
    debug_assert_eq!(y.dim(), t.dim());
    let n = y.nrows();
    if n == 0 {
        return 0.0;
    }
    let hits = y
        .rows()
        .into_iter()
        .zip(t.rows())
        .filter(|(y_n, t_n)| {
            if y_n.len() == 1 {
                (y_n[0] >= 0.5) == (t_n[0] >= 0.5)
            } else {
                argmax(*y_n) == argmax(*t_n)
            }
        })
        .count();
    hits as f64 / n as f64
}

/// The index of the largest entry (the first one on ties).
fn argmax(v: ArrayView1<f64>) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
