// The elementwise parts of backpropagation and Pearlmutter's R-propagation (PRML 5.98–5.111),
// for a batch of vectors b stored as (batch, n, w) blocks; h′ and h″ of the layer, (n, w),
// are shared by the batch (index i mod n·w).
//
// | group | binding | name | access     | contents                                            |
// |-------|---------|------|------------|-----------------------------------------------------|
// | 0     | 0       | vecs | read       | V (batch, W): the bias part v_b of layer l at v_off |
// | 0     | 1       | d1   | read       | h′(a_l) (n, w) at d_off                             |
// | 0     | 2       | d2   | read       | h″(a_l) (n, w) at d_off                             |
// | 0     | 3       | ew   | read       | δ_{l+1}·W_{l+1} (n, w) at ew_off                    |
// | 0     | 4       | prod | read       | a matmul result (batch, n, w) at prod_off           |
// | 0     | 5       | ra   | read_write | R{a_l} (batch, n, w) at ra_off                      |
// | 0     | 6       | rz   | read_write | R{z_{l+1}} (batch, n, w) at rz_off                  |
// | 0     | 7       | rd   | read_write | δ_l or R{δ_l} (batch, n, w) at rd_off               |
// | 1     | 0       | p    | uniform    | RopParams                                           |
//
// - rop_forward:  R{a} += v_b (broadcast over rows); if store: R{z} = h′ ⊙ R{a}
// - mul_deriv:    rd = prod ⊙ h′                       (δ_l, Gauss-Newton R{δ_l}, factor S_l)
// - rop_backward: rd = h″ ⊙ R{a} ⊙ ew + h′ ⊙ prod      (R{δ_l}, prod = R{δ_{l+1}}W + δ_{l+1}V)

struct RopParams {
    count: u32, nw: u32, w: u32, store: u32,
    d_off: u32, ew_off: u32, prod_off: u32, ra_off: u32,
    rz_off: u32, rd_off: u32, v_off: u32, v_bs: u32,
}

@group(0) @binding(0) var<storage, read> vecs: array<f32>;
@group(0) @binding(1) var<storage, read> d1: array<f32>;
@group(0) @binding(2) var<storage, read> d2: array<f32>;
@group(0) @binding(3) var<storage, read> ew: array<f32>;
@group(0) @binding(4) var<storage, read> prod: array<f32>;
@group(0) @binding(5) var<storage, read_write> ra: array<f32>;
@group(0) @binding(6) var<storage, read_write> rz: array<f32>;
@group(0) @binding(7) var<storage, read_write> rd: array<f32>;
@group(1) @binding(0) var<uniform> p: RopParams;

@compute @workgroup_size(256, 1, 1)
fn rop_forward(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let b = i / p.nw;
    let r = ra[p.ra_off + i] + vecs[p.v_off + b * p.v_bs + i % p.w];
    ra[p.ra_off + i] = r;
    if (p.store != 0u) {
        rz[p.rz_off + i] = d1[p.d_off + i % p.nw] * r;
    }
}

@compute @workgroup_size(256, 1, 1)
fn mul_deriv(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    rd[p.rd_off + i] = prod[p.prod_off + i] * d1[p.d_off + i % p.nw];
}

@compute @workgroup_size(256, 1, 1)
fn rop_backward(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let j = i % p.nw;
    rd[p.rd_off + i] = d2[p.d_off + j] * ra[p.ra_off + i] * ew[p.ew_off + j]
        + d1[p.d_off + j] * prod[p.prod_off + i];
}
