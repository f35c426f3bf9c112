// Functions shared by the elementwise shaders; `Family::source` (src/gpu/kernels.rs)
// prepends this file to activation, loss, reduce, rop, diag_hessian, outer_product and
// update. No bindings.
//
// The activation codes `ACT_*` (`Activation::code()`, src/activation.rs) and loss codes
// `LOSS_*` (`Loss::code()`, src/loss.rs) are constants generated from the Rust enums and
// prepended before this file; every switch on a code names each variant in an arm (a
// test in src/gpu/kernels.rs checks it). Every formula mirrors those files, in f32, in
// their overflow-safe forms.

const WG: u32 = 256u;
const LEAKY_RELU_SLOPE: f32 = 0.01;
const ELU_ALPHA: f32 = 1.0;

// The built-in inputs of an elementwise entry point (`fn k(inv: Invocation)`).
struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
}

// The flat invocation index of a 1-D problem dispatched as a 2-D grid of 256-wide
// workgroups (x first), so that more than 65535 workgroups fit (src/gpu/kernels.rs).
fn flat_index(inv: Invocation) -> u32 {
    return (inv.wid.y * inv.nwg.x + inv.wid.x) * WG + inv.lid.x;
}

// log(1 + x) for x ≥ 0 without losing the small-x digits (WGSL has no log1p).
fn log1p_pos(x: f32) -> f32 {
    if (x < 1e-4) {
        return x * (1.0 - x * (0.5 - x / 3.0));
    }
    return log(1.0 + x);
}

// eᵃ − 1 without cancellation for small |a| (WGSL has no expm1).
fn expm1_safe(a: f32) -> f32 {
    if (abs(a) < 1e-3) {
        return a * (1.0 + a * (0.5 + a / 6.0));
    }
    return exp(a) - 1.0;
}

fn sigmoid(a: f32) -> f32 {
    if (a >= 0.0) {
        return 1.0 / (1.0 + exp(-a));
    }
    let e = exp(a);
    return e / (1.0 + e);
}

fn softplus(a: f32) -> f32 {
    return max(a, 0.0) + log1p_pos(exp(-abs(a)));
}

// tanh as 1 − 2/(e^{2|a|} + 1): saturates to ±1 instead of overflowing to NaN.
fn tanh_safe(a: f32) -> f32 {
    let t = 1.0 - 2.0 / (exp(2.0 * abs(a)) + 1.0);
    return select(-t, t, a >= 0.0);
}

fn act_h(code: u32, a: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: { return sigmoid(a); }
        case ACT_TANH: { return tanh_safe(a); }
        case ACT_RELU: { return max(a, 0.0); }
        case ACT_LEAKY_RELU: { return select(LEAKY_RELU_SLOPE * a, a, a > 0.0); }
        case ACT_ELU: { return select(ELU_ALPHA * expm1_safe(a), a, a > 0.0); }
        case ACT_SOFTPLUS: { return softplus(a); }
        // Softmax is applied on whole rows by the loss kernels.
        case ACT_IDENTITY, ACT_SOFTMAX, default: { return a; }
    }
}

fn act_dh(code: u32, a: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: { let s = sigmoid(a); return s * (1.0 - s); }
        case ACT_TANH: { let t = tanh_safe(a); return 1.0 - t * t; }
        case ACT_RELU: { return select(0.0, 1.0, a > 0.0); }
        case ACT_LEAKY_RELU: { return select(LEAKY_RELU_SLOPE, 1.0, a > 0.0); }
        case ACT_ELU: { return select(ELU_ALPHA * exp(a), 1.0, a > 0.0); }
        case ACT_SOFTPLUS: { return sigmoid(a); }
        case ACT_IDENTITY, ACT_SOFTMAX, default: { return 1.0; }
    }
}

fn act_d2h(code: u32, a: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: { let s = sigmoid(a); return s * (1.0 - s) * (1.0 - 2.0 * s); }
        case ACT_TANH: { let t = tanh_safe(a); return -2.0 * t * (1.0 - t * t); }
        case ACT_ELU: { return select(ELU_ALPHA * exp(a), 0.0, a > 0.0); }
        case ACT_SOFTPLUS: { let s = sigmoid(a); return s * (1.0 - s); }
        // Piecewise linear: zero almost everywhere.
        case ACT_IDENTITY, ACT_RELU, ACT_LEAKY_RELU, ACT_SOFTMAX, default: { return 0.0; }
    }
}
