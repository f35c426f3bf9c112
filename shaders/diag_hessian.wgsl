// Diagonal backpropagation. Becker-LeCun (PRML 5.79–5.81, off-diagonal terms dropped):
//   q_l = h′(a_l)² ⊙ (q_{l+1}·(W_{l+1} ⊙ W_{l+1})) + h″(a_l) ⊙ (δ_{l+1}·W_{l+1}),
// and, for the Gauss-Newton and the exact diagonal, the per-unit signed sum over factor
// columns of S_l², the residual h″ ⊙ (δ_{l+1}·W_{l+1}) of the exact per-sample Hessian
// in a_l, and that residual turned into factor columns (the method of
// src/cpu_fast/diagonal.rs; the engine's `diag_hessian` says which runs when).
//
// | group | binding | name | access     | contents                                     |
// |-------|---------|------|------------|----------------------------------------------|
// | 0     | 0       | d1   | read       | h′(a_l) (n, w) at d_off                      |
// | 0     | 1       | d2   | read       | h″(a_l) (n, w) at d_off                      |
// | 0     | 2       | ew   | read       | δ_{l+1}·W_{l+1} (n, w) at ew_off             |
// | 0     | 3       | prod | read       | q_{l+1}·(W_{l+1})² (n, w), or r (n, fan_out), at prod_off |
// | 0     | 4       | src  | read       | S_l (batch, n, w), or θ, at src_off          |
// | 0     | 5       | dst  | read_write | q_l, Σ_b ±S_l[b]², r, or S (batch, n, w) at dst_off |
// | 1     | 0       | p    | uniform    | DiagParams                                   |
//
// - bl_backward:     dst = d1² ⊙ prod + d2 ⊙ ew
// - sumsq_batch:     dst = (acc ? dst : 0) + sign·Σ_{b < batch} src[b]²
// - hess_residual:   dst = d2 ⊙ ew                           (r_l, the residual's diagonal)
// - expand_residual: dst[b, s, i] = √max(sign·r[s, j0 + b], 0)·W[j0 + b, i]·d1[s, i]
//                    (the residual of the layer above, r (n, fan_out) in prod and
//                    W (fan_out, w) in src, as factor columns of this layer)

struct DiagParams {
    count: u32, batch: u32, d_off: u32, ew_off: u32,
    prod_off: u32, src_off: u32, dst_off: u32, sign: f32,
    acc: u32, n: u32, w: u32, fan_out: u32,
    j0: u32,
}

@group(0) @binding(0) var<storage, read> d1: array<f32>;
@group(0) @binding(1) var<storage, read> d2: array<f32>;
@group(0) @binding(2) var<storage, read> ew: array<f32>;
@group(0) @binding(3) var<storage, read> prod: array<f32>;
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> p: DiagParams;

@compute @workgroup_size(256, 1, 1)
fn bl_backward(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let g = d1[p.d_off + i];
    dst[p.dst_off + i] = g * g * prod[p.prod_off + i] + d2[p.d_off + i] * ew[p.ew_off + i];
}

@compute @workgroup_size(256, 1, 1)
fn sumsq_batch(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) {
        let v = src[p.src_off + b * p.count + i];
        s = fma(v, v, s);
    }
    var base = 0.0;
    if (p.acc != 0u) {
        base = dst[p.dst_off + i];
    }
    dst[p.dst_off + i] = fma(p.sign, s, base);
}

@compute @workgroup_size(256, 1, 1)
fn hess_residual(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    dst[p.dst_off + i] = d2[p.d_off + i] * ew[p.ew_off + i];
}

@compute @workgroup_size(256, 1, 1)
fn expand_residual(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let unit = i % p.w;
    let row = (i / p.w) % p.n;
    let j = p.j0 + i / (p.w * p.n);
    let root = sqrt(max(p.sign * prod[p.prod_off + row * p.fan_out + j], 0.0));
    dst[p.dst_off + i] = root * src[p.src_off + j * p.w + unit] * d1[p.d_off + row * p.w + unit];
}
