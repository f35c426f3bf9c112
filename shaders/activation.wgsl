// Fused bias + activation of one layer: a = A + b, then h(a), h′(a), h″(a).
// The matmul before it wrote A = z_l·W_lᵀ (n, out) row-major.
//
// | group | binding | name  | access     | contents                                     |
// |-------|---------|-------|------------|----------------------------------------------|
// | 0     | 0       | theta | read       | θ (W): the bias b_l at bias_off (out)        |
// | 0     | 1       | pre   | read_write | A (n, out) at a_off: in z·Wᵀ, out a = z·Wᵀ + b |
// | 0     | 2       | z     | read_write | h(a) (n, out) at z_off                       |
// | 0     | 3       | d1    | read_write | h′(a) (n, out) at d_off                      |
// | 0     | 4       | d2    | read_write | h″(a) (n, out) at d_off                      |
// | 1     | 0       | p     | uniform    | ActParams                                    |
//
// `bias_act`: every entry; with store = 0 (the output layer, whose h the loss kernels
// apply on whole rows) only the bias is added and z, d1, d2 are not touched.

struct ActParams {
    count: u32, out: u32, code: u32, store: u32,
    bias_off: u32, a_off: u32, z_off: u32, d_off: u32,
}

@group(0) @binding(0) var<storage, read> theta: array<f32>;
@group(0) @binding(1) var<storage, read_write> pre: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> d1: array<f32>;
@group(0) @binding(4) var<storage, read_write> d2: array<f32>;
@group(1) @binding(0) var<uniform> p: ActParams;

@compute @workgroup_size(256, 1, 1)
fn bias_act(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let a = pre[p.a_off + i] + theta[p.bias_off + i % p.out];
    pre[p.a_off + i] = a;
    if (p.store != 0u) {
        z[p.z_off + i] = act_h(p.code, a);
        d1[p.d_off + i] = act_dh(p.code, a);
        d2[p.d_off + i] = act_d2h(p.code, a);
    }
}
