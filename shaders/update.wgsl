// Vector updates on θ-shaped (W) data, batched over rows of (batch, W) blocks, and the
// first-order optimizers' update kernels (the device path of `train`).
//
// | group | binding | name  | access     | contents                                              |
// |-------|---------|-------|------------|-------------------------------------------------------|
// | 0     | 0       | src   | read       | source at s_off, batch stride s_bs; optimizer steps: ∇E_data (W, the gradient buffer's start) |
// | 0     | 1       | mask  | read       | optimizer steps: 1 on weight entries, 0 on biases (W) |
// | 0     | 2       | dst   | read_write | destination at d_off; optimizer steps: θ (W)          |
// | 0     | 3       | s1    | read_write | optimizer state 1 (W): v (gd), m (adam), v (rmsprop), s (adagrad) |
// | 0     | 4       | s2    | read_write | optimizer state 2 (W): v (adam), ḡ (rmsprop centered) |
// | 0     | 5       | s3    | read_write | optimizer state 3 (W): v̂ (adam amsgrad), b (rmsprop momentum) |
// | 0     | 6       | ahead | read_write | nesterov: the look-ahead θ + μv the passes run at     |
// | 1     | 0       | p     | uniform    | UpdateParams                                          |
//
// - square:        dst[i] = src[s_off + i]²                           (θ⊙θ, z⊙z)
// - fill_identity: dst[b·W + i] = 1 if i = col0 + b else 0            (columns of I)
// - unit_product:  a layer's product with the unit vectors e_p, p = col0 + b, as a gather
//                  (the columns of H need no multiplications by zero). With p inside the
//                  layer's weights W (fan_out, fan_in) at w_off, p = w_off + j*·fan_in + m*:
//                  forward:  dst[b, s, j] = [j = j*]·src[s_off + s·s_bs + m*]   (z_l·V_lᵀ)
//                  backward: dst[b, s, m] = [m = m*]·src[s_off + s·s_bs + j*]   (δ_l·V_l)
//                  dst (batch, n, w) at d_off, nw = n·w; mode: 1 backward, 2 add to dst.
//
// The optimizer steps run over the `count` = W entries of θ, each entry on its own, in
// f32, exactly the formulas of src/optim/{gd,adam,rmsprop,adagrad}.rs; g is the data
// term's gradient plus the L2 term, g = src[i] + l2·mask[i]·θ[i] (θ at the point the
// gradient was taken). Their constants, computed on the host in f64 per update:
// - lookahead:      ahead = θ + k1·v                                  (k1 = μ)
// - sgd_step:       v ← k1·v − rate·g, θ ← θ + v                      (k1 = μ, 0 for gd)
// - nesterov_step:  the same with g (and its L2 term) at `ahead`
// - adam_step:      m ← k1·m + k1c·g, v ← k2·v + k2c·g², v̂ = max(v̂, v) if flags & 1
//                   (amsgrad) else v, θ ← θ·(shrink on weights) − rate·m / (√v̂ / bias2 + eps)
//                   (k1 = β₁, k1c = 1 − β₁, k2 = β₂, k2c = 1 − β₂, rate = η / (1 − β₁ᵗ),
//                   bias2 = √(1 − β₂ᵗ), shrink = 1 − η·wd for adamw, 1 for adam)
// - rmsprop_step:   v ← k1·v + k1c·g², centered (flags & 1): ḡ ← k1·ḡ + k1c·g and
//                   ṽ = max(v − ḡ², 0), else ṽ = v; d = √ṽ + eps; momentum (flags & 2):
//                   b ← k2·b + g/d, θ ← θ − rate·b; else θ ← θ − rate·g/d
//                   (k1 = α, k1c = 1 − α, k2 = μ, rate = η)
// - adagrad_step:   s ← s + g², θ ← θ − rate·g / (√s + eps)      (rate = η / (1 + (t − 1)·lr_decay))

struct UpdateParams {
    count: u32, w: u32, d_off: u32, s_off: u32,
    s_bs: u32, col0: u32, alpha: f32, nw: u32,
    w_off: u32, fan_in: u32, fan_out: u32, mode: u32,
    rate: f32, k1: f32, k1c: f32, k2: f32,
    k2c: f32, bias2: f32, shrink: f32, eps: f32,
    l2: f32, flags: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;
@group(0) @binding(5) var<storage, read_write> s3: array<f32>;
@group(0) @binding(6) var<storage, read_write> ahead: array<f32>;
@group(1) @binding(0) var<uniform> p: UpdateParams;

@compute @workgroup_size(256, 1, 1)
fn square(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let v = src[p.s_off + i];
    dst[p.d_off + i] = v * v;
}

@compute @workgroup_size(256, 1, 1)
fn fill_identity(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let b = i / p.w;
    let e = i % p.w;
    dst[p.d_off + i] = select(0.0, 1.0, e == p.col0 + b);
}

@compute @workgroup_size(256, 1, 1)
fn unit_product(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let b = i / p.nw;
    let s = (i % p.nw) / p.w;
    let c = i % p.w;
    let q = p.col0 + b;
    var v = 0.0;
    if (q >= p.w_off && q < p.w_off + p.fan_out * p.fan_in) {
        let j = (q - p.w_off) / p.fan_in;
        let m = (q - p.w_off) % p.fan_in;
        let backward = (p.mode & 1u) != 0u;
        let at_dst = select(j, m, backward);
        let at_src = select(m, j, backward);
        if (c == at_dst) {
            v = src[p.s_off + s * p.s_bs + at_src];
        }
    }
    if ((p.mode & 2u) != 0u) {
        v += dst[p.d_off + i];
    }
    dst[p.d_off + i] = v;
}

// ---- The first-order optimizers' steps (see the header) ----

// g of entry i: the data term's gradient plus λ·θ on weights, θ at the gradient's point.
fn penalised_gradient(i: u32, at: f32) -> f32 {
    return src[i] + p.l2 * mask[i] * at;
}

@compute @workgroup_size(256, 1, 1)
fn lookahead(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    ahead[i] = dst[i] + p.k1 * s1[i];
}

@compute @workgroup_size(256, 1, 1)
fn sgd_step(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let theta = dst[i];
    let v = p.k1 * s1[i] - p.rate * penalised_gradient(i, theta);
    s1[i] = v;
    dst[i] = theta + v;
}

@compute @workgroup_size(256, 1, 1)
fn nesterov_step(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let v = p.k1 * s1[i] - p.rate * penalised_gradient(i, ahead[i]);
    s1[i] = v;
    dst[i] = dst[i] + v;
}

@compute @workgroup_size(256, 1, 1)
fn adam_step(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let theta = dst[i];
    let g = penalised_gradient(i, theta);
    let m = p.k1 * s1[i] + p.k1c * g;
    let v = p.k2 * s2[i] + p.k2c * g * g;
    s1[i] = m;
    s2[i] = v;
    var second = v;
    if ((p.flags & 1u) != 0u) {
        second = max(s3[i], v);
        s3[i] = second;
    }
    let shrunk = select(theta, theta * p.shrink, mask[i] != 0.0);
    dst[i] = shrunk - p.rate * m / (sqrt(second) / p.bias2 + p.eps);
}

@compute @workgroup_size(256, 1, 1)
fn rmsprop_step(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let theta = dst[i];
    let g = penalised_gradient(i, theta);
    let v = p.k1 * s1[i] + p.k1c * g * g;
    s1[i] = v;
    var centred = v;
    if ((p.flags & 1u) != 0u) {
        let mean = p.k1 * s2[i] + p.k1c * g;
        s2[i] = mean;
        centred = max(v - mean * mean, 0.0);
    }
    let d = sqrt(centred) + p.eps;
    if ((p.flags & 2u) != 0u) {
        let b = p.k2 * s3[i] + g / d;
        s3[i] = b;
        dst[i] = theta - p.rate * b;
    } else {
        dst[i] = theta - p.rate * g / d;
    }
}

@compute @workgroup_size(256, 1, 1)
fn adagrad_step(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let theta = dst[i];
    let g = penalised_gradient(i, theta);
    let s = s1[i] + g * g;
    s1[i] = s;
    dst[i] = theta - p.rate * g / (sqrt(s) + p.eps);
}
