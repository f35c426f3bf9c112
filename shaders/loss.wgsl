// Per-sample losses in the output pre-activations a (K per row), mirroring src/loss.rs:
// value E_n, delta ∂E_n/∂a, the output-Hessian product (exact or Gauss-Newton) for
// R-backpropagation, a square-root factor of the Gauss-Newton output Hessian, and the
// exact output-Hessian diagonal. Softmax and log-sum-exp are shifted by the row maximum.
// Every derivative output is multiplied by `scale` (1/N, or 1/√N for the factor), so the
// backward passes that follow directly give derivatives of the batch mean.
//
// | group | binding | name     | access     | contents                                      |
// |-------|---------|----------|------------|-----------------------------------------------|
// | 0     | 0       | pre      | read       | a_out (n, K) at a_off                         |
// | 0     | 1       | targets  | read       | T (n, K) at t_off                             |
// | 0     | 2       | rvec     | read       | R{a_out} (batch, n, K) at r_off               |
// | 0     | 3       | row_loss | read_write | E_n (n) at rl_off                             |
// | 0     | 4       | out      | read_write | δ, R{δ}, factor S or diag, (batch,) n, K at d_off |
// | 0     | 5       | y        | read_write | outputs y (n, K) at y_off                     |
// | 1     | 0       | p        | uniform    | LossParams                                    |
//
// Entry points (codes: `loss` is a LOSS_* constant = Loss::code(), `act` an ACT_* constant =
// Activation::code() of the output layer; both generated from the Rust enums):
// - loss_delta  (one thread per row):       row_loss, out = scale·δ, y
// - loss_hess   (one per (vector b, row)):  out = scale·H_n·R{a} (gn = 1: Gauss-Newton part)
// - loss_factor (one per (column b, row)):  out = scale·C_n[:, k0 + b], C_n C_nᵀ = Gauss-Newton H_n
//                                           (ce: √(s p_k)(e_k − p); diagonal losses √h_kk e_k);
//                                           gn = 0 / 2: the diagonal losses' exact h_kk, its
//                                           positive / negative part (C₊C₊ᵀ − C₋C₋ᵀ = exact H_n)
// - loss_diag   (one thread per row):       out = scale·diag(exact H_n)

struct LossParams {
    n: u32, k: u32, loss: u32, act: u32,
    a_off: u32, t_off: u32, r_off: u32, rl_off: u32,
    d_off: u32, y_off: u32, batch: u32, k0: u32,
    gn: u32, scale: f32,
}

@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<f32>;
@group(0) @binding(2) var<storage, read> rvec: array<f32>;
@group(0) @binding(3) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(1) @binding(0) var<uniform> p: LossParams;

fn a_at(row: u32, k: u32) -> f32 {
    return pre[p.a_off + row * p.k + k];
}

fn t_at(row: u32, k: u32) -> f32 {
    return targets[p.t_off + row * p.k + k];
}

// c of E_n = (c/2)‖y − t‖²: 1 for sse, 2/K for mse.
fn squared_error_scale() -> f32 {
    return select(1.0, 2.0 / f32(p.k), p.loss == LOSS_MSE);
}

fn row_max(row: u32) -> f32 {
    var m = a_at(row, 0u);
    for (var k = 1u; k < p.k; k++) {
        m = max(m, a_at(row, k));
    }
    return m;
}

// Σ_k exp(a_k − m).
fn row_exp_sum(row: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += exp(a_at(row, k) - m);
    }
    return s;
}

fn target_sum(row: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += t_at(row, k);
    }
    return s;
}

// The diagonal output-Hessian entry h_kk of the diagonal losses (sse, mse, bce);
// `exact` adds the residual term (y − t)·h″ of sse/mse.
fn diagonal_hessian(row: u32, k: u32, exact: bool) -> f32 {
    let a = a_at(row, k);
    if (p.loss == LOSS_BCE) {
        let s = sigmoid(a);
        return s * (1.0 - s);
    }
    let d = act_dh(p.act, a);
    var h = d * d;
    if (exact) {
        h += (act_h(p.act, a) - t_at(row, k)) * act_d2h(p.act, a);
    }
    return squared_error_scale() * h;
}

@compute @workgroup_size(256, 1, 1)
fn loss_delta(inv: Invocation) {
    let row = flat_index(inv);
    if (row >= p.n) {
        return;
    }
    let base = row * p.k;
    var value = 0.0;
    switch p.loss {
        case LOSS_CE: {
            let m = row_max(row);
            let sum = row_exp_sum(row, m);
            let lse = m + log(sum);
            let s = target_sum(row);
            for (var k = 0u; k < p.k; k++) {
                let a = a_at(row, k);
                let t = t_at(row, k);
                let prob = exp(a - m) / sum;
                value += t * (lse - a);
                out[p.d_off + base + k] = p.scale * (s * prob - t);
                y[p.y_off + base + k] = prob;
            }
        }
        case LOSS_BCE: {
            for (var k = 0u; k < p.k; k++) {
                let a = a_at(row, k);
                let t = t_at(row, k);
                let s = sigmoid(a);
                value += softplus(a) - t * a;
                out[p.d_off + base + k] = p.scale * (s - t);
                y[p.y_off + base + k] = s;
            }
        }
        case LOSS_SSE, LOSS_MSE, default: {
            let c = squared_error_scale();
            for (var k = 0u; k < p.k; k++) {
                let a = a_at(row, k);
                let h = act_h(p.act, a);
                let r = h - t_at(row, k);
                value += r * r;
                out[p.d_off + base + k] = p.scale * c * r * act_dh(p.act, a);
                y[p.y_off + base + k] = h;
            }
            value *= 0.5 * c;
        }
    }
    row_loss[p.rl_off + row] = value;
}

@compute @workgroup_size(256, 1, 1)
fn loss_hess(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.n * p.batch) {
        return;
    }
    let row = i % p.n;
    let vec_base = i * p.k; // (b, row) of the (batch, n, K) blocks
    switch p.loss {
        case LOSS_CE: {
            // s·(diag(p) − ppᵀ)·r = s·p ⊙ (r − pᵀr), written as s·p_k·Σ_j p_j (r_k − r_j)
            // (equal since Σ_j p_j = 1): near a confident fit p is almost one-hot and
            // r_k − pᵀr cancels in f32 to an error of ε·|r_k| on a result of order
            // (1 − p_k)·|r|; in the sum each term is small and kept to f32's relative
            // accuracy. O(K²) per row, K the classes.
            let m = row_max(row);
            let sum = row_exp_sum(row, m);
            let s = target_sum(row);
            for (var k = 0u; k < p.k; k++) {
                let rk = rvec[p.r_off + vec_base + k];
                var spread = 0.0;
                for (var j = 0u; j < p.k; j++) {
                    spread += exp(a_at(row, j) - m) / sum * (rk - rvec[p.r_off + vec_base + j]);
                }
                let prob = exp(a_at(row, k) - m) / sum;
                out[p.d_off + vec_base + k] = p.scale * s * prob * spread;
            }
        }
        case LOSS_SSE, LOSS_MSE, LOSS_BCE, default: {
            for (var k = 0u; k < p.k; k++) {
                let h = diagonal_hessian(row, k, p.gn == 0u);
                out[p.d_off + vec_base + k] = p.scale * h * rvec[p.r_off + vec_base + k];
            }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn loss_factor(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.n * p.batch) {
        return;
    }
    let row = i % p.n;
    let col = p.k0 + i / p.n;
    let vec_base = i * p.k;
    switch p.loss {
        case LOSS_CE: {
            let m = row_max(row);
            let sum = row_exp_sum(row, m);
            let s = target_sum(row);
            let pc = exp(a_at(row, col) - m) / sum;
            let root = sqrt(max(s * pc, 0.0));
            for (var j = 0u; j < p.k; j++) {
                let pj = exp(a_at(row, j) - m) / sum;
                out[p.d_off + vec_base + j] = p.scale * root * (select(0.0, 1.0, j == col) - pj);
            }
        }
        case LOSS_SSE, LOSS_MSE, LOSS_BCE, default: {
            for (var j = 0u; j < p.k; j++) {
                out[p.d_off + vec_base + j] = 0.0;
            }
            // gn = 0 / 2: the positive / negative part of the exact h_kk, whose residual
            // term (y − t)·h″ can make it negative.
            let h = diagonal_hessian(row, col, p.gn != 1u);
            let part = select(h, -h, p.gn == 2u);
            out[p.d_off + vec_base + col] = p.scale * sqrt(max(part, 0.0));
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn loss_diag(inv: Invocation) {
    let row = flat_index(inv);
    if (row >= p.n) {
        return;
    }
    let base = row * p.k;
    switch p.loss {
        case LOSS_CE: {
            let m = row_max(row);
            let sum = row_exp_sum(row, m);
            let s = target_sum(row);
            for (var k = 0u; k < p.k; k++) {
                let prob = exp(a_at(row, k) - m) / sum;
                out[p.d_off + base + k] = p.scale * s * prob * (1.0 - prob);
            }
        }
        case LOSS_SSE, LOSS_MSE, LOSS_BCE, default: {
            for (var k = 0u; k < p.k; k++) {
                out[p.d_off + base + k] = p.scale * diagonal_hessian(row, k, true);
            }
        }
    }
}
