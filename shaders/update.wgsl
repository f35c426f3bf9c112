// Vector updates on θ-shaped (W) data, batched over rows of (batch, W) blocks.
//
// | group | binding | name | access     | contents                                    |
// |-------|---------|------|------------|---------------------------------------------|
// | 0     | 0       | src  | read       | source at s_off, batch stride s_bs          |
// | 0     | 2       | dst  | read_write | destination at d_off                        |
// | 1     | 0       | p    | uniform    | UpdateParams                                |
//
// - square:        dst[i] = src[s_off + i]²                           (θ⊙θ, z⊙z)
// - fill_identity: dst[b·W + i] = 1 if i = col0 + b else 0            (columns of I)
// - unit_product:  a layer's product with the unit vectors e_p, p = col0 + b, as a gather
//                  (the columns of H need no multiplications by zero). With p inside the
//                  layer's weights W (fan_out, fan_in) at w_off, p = w_off + j*·fan_in + m*:
//                  forward:  dst[b, s, j] = [j = j*]·src[s_off + s·s_bs + m*]   (z_l·V_lᵀ)
//                  backward: dst[b, s, m] = [m = m*]·src[s_off + s·s_bs + j*]   (δ_l·V_l)
//                  dst (batch, n, w) at d_off, nw = n·w; mode: 1 backward, 2 add to dst.

struct UpdateParams {
    count: u32, w: u32, d_off: u32, s_off: u32,
    s_bs: u32, col0: u32, alpha: f32, nw: u32,
    w_off: u32, fan_in: u32, fan_out: u32, mode: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
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
