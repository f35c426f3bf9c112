// Deterministic column sums: dst[b][c] = β·dst[b][c] + scale·Σ_r src[b][r][c].
// Used for bias gradients (colsum of δ), the per-slice loss sum (one column) and the
// bias entries of the diagonals. One workgroup per (column, batch): each thread sums a
// fixed stride of rows, then a fixed-shape tree in workgroup memory adds the 256 partial
// sums — the same order on every run (no float atomics).
//
// | group | binding | name | access     | contents                                            |
// |-------|---------|------|------------|-----------------------------------------------------|
// | 0     | 0       | src  | read       | (batch, rows, cols): src_off + b·src_bs + r·src_rs + c |
// | 0     | 1       | dst  | read_write | (batch, cols): dst_off + b·dst_bs + c               |
// | 1     | 0       | p    | uniform    | ReduceParams                                        |
// Dispatch: (cols, batch, 1).

struct ReduceParams {
    rows: u32, cols: u32, src_off: u32, src_rs: u32,
    src_bs: u32, dst_off: u32, dst_bs: u32, accumulate: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> p: ReduceParams;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn colsum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x;
    let batch = wid.y;
    var s = 0.0;
    for (var r = lid.x; r < p.rows; r += WG) {
        s += src[p.src_off + batch * p.src_bs + r * p.src_rs + col];
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid.x < half) {
            partial[lid.x] += partial[lid.x + half];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let i = p.dst_off + batch * p.dst_bs + col;
        let total = p.scale * partial[0];
        if (p.accumulate != 0u) {
            dst[i] = dst[i] + total;
        } else {
            dst[i] = total;
        }
    }
}
