// Diagonal backpropagation. Becker-LeCun (PRML 5.79–5.81, off-diagonal terms dropped):
//   q_l = h′(a_l)² ⊙ (q_{l+1}·(W_{l+1} ⊙ W_{l+1})) + h″(a_l) ⊙ (δ_{l+1}·W_{l+1}),
// and, for the Gauss-Newton diagonal, the per-unit sum over the K factor columns of S_l².
//
// | group | binding | name | access     | contents                                     |
// |-------|---------|------|------------|----------------------------------------------|
// | 0     | 0       | d1   | read       | h′(a_l) (n, w) at d_off                      |
// | 0     | 1       | d2   | read       | h″(a_l) (n, w) at d_off                      |
// | 0     | 2       | ew   | read       | δ_{l+1}·W_{l+1} (n, w) at ew_off             |
// | 0     | 3       | prod | read       | q_{l+1}·(W_{l+1})² (n, w) at prod_off        |
// | 0     | 4       | src  | read       | S_l (batch, n, w) at src_off                 |
// | 0     | 5       | dst  | read_write | q_l, or Σ_b S_l[b]², (n, w) at dst_off       |
// | 1     | 0       | p    | uniform    | DiagParams                                   |
//
// - bl_backward: dst = d1² ⊙ prod + d2 ⊙ ew
// - sumsq_batch: dst = Σ_{b < batch} src[b]²

struct DiagParams {
    count: u32, batch: u32, d_off: u32, ew_off: u32,
    prod_off: u32, src_off: u32, dst_off: u32,
}

@group(0) @binding(0) var<storage, read> d1: array<f32>;
@group(0) @binding(1) var<storage, read> d2: array<f32>;
@group(0) @binding(2) var<storage, read> ew: array<f32>;
@group(0) @binding(3) var<storage, read> prod: array<f32>;
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> p: DiagParams;

@compute @workgroup_size(256, 1, 1)
fn bl_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.count) {
        return;
    }
    let g = d1[p.d_off + i];
    dst[p.dst_off + i] = g * g * prod[p.prod_off + i] + d2[p.d_off + i] * ew[p.ew_off + i];
}

@compute @workgroup_size(256, 1, 1)
fn sumsq_batch(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.count) {
        return;
    }
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) {
        let v = src[p.src_off + b * p.count + i];
        s = fma(v, v, s);
    }
    dst[p.dst_off + i] = s;
}
