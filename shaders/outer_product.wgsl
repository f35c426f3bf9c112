// Rows of the factored outer product: for sample n and factor column k of the Gauss-Newton
// output Hessian, the row B[(k, n)] = J_nᵀ c_k / √N (W) is, layer by layer, the outer
// product S_l[k, n, :]ᵀ z_l[n, :] on W_l and S_l[k, n, :] on b_l (S already carries 1/√N).
// G += Bᵀ·B is then one matmul (Aᵀ·B layout); PRML 5.84/5.85.
//
// | group | binding | name | access     | contents                                         |
// |-------|---------|------|------------|--------------------------------------------------|
// | 0     | 0       | s    | read       | S_l (rows = batch·n, out) at s_off               |
// | 0     | 1       | z    | read       | z_l (n, in) at z_off, row stride z_rs            |
// | 0     | 2       | bmat | read_write | B (rows, W): W_l block at w_off, b_l at b_off    |
// | 1     | 0       | p    | uniform    | OuterParams                                      |
//
// - outer_rows: one thread per (row, j, i), i = in meaning the bias entry.

struct OuterParams {
    count: u32, n: u32, out: u32, fan_in: u32,
    s_off: u32, z_off: u32, z_rs: u32, w_total: u32,
    w_off: u32, b_off: u32,
}

@group(0) @binding(0) var<storage, read> s: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> bmat: array<f32>;
@group(1) @binding(0) var<uniform> p: OuterParams;

@compute @workgroup_size(256, 1, 1)
fn outer_rows(inv: Invocation) {
    let t = flat_index(inv);
    if (t >= p.count) {
        return;
    }
    let per_row = p.out * (p.fan_in + 1u);
    let row = t / per_row;
    let rest = t % per_row;
    let j = rest / (p.fan_in + 1u);
    let i = rest % (p.fan_in + 1u);
    let sj = s[p.s_off + row * p.out + j];
    if (i == p.fan_in) {
        bmat[row * p.w_total + p.b_off + j] = sj;
    } else {
        let sample = row % p.n;
        bmat[row * p.w_total + p.w_off + j * p.fan_in + i] = sj * z[p.z_off + sample * p.z_rs + i];
    }
}
