// Matrix products C[b] = β·C[b] + α·op(A)[b]·op(B)[b] with arbitrary element strides,
// so A·B, A·Bᵀ and Aᵀ·B (and batches sharing one operand, batch stride 0) are one kernel.
// Correct for every shape: all loads and stores are bounds-checked (tails, M = 1, width 1).
//
// | group | binding | name   | access     | contents                                    |
// |-------|---------|--------|------------|---------------------------------------------|
// | 0     | 0       | a      | read       | A, element (m, k) of batch b at             |
// |       |         |        |            |   a_off + b·a_bs + m·a_rs + k·a_cs          |
// | 0     | 1       | b      | read       | B, element (k, n) at b_off + b·b_bs + k·b_rs + n·b_cs |
// | 0     | 2       | c      | read_write | C, element (m, n) at c_off + b·c_bs + m·c_rs + n |
// | 1     | 0       | p      | uniform    | MatmulParams (dynamic offset)               |
//
// Two variants, chosen per adapter by timing at context creation (src/gpu/context/tuning.rs):
// - `matmul_tiled`: 16×16 threads, a 64×64 tile of C per workgroup, A and B staged through
//   workgroup memory 16 k-steps at a time, 4×4 outputs per thread (what real GPUs want);
// - `matmul_reg`: 8×8 threads, 8×4 outputs per thread held as eight vec4 accumulators,
//   operands read straight from global memory (scalar loads assembled into vec4, so no
//   alignment assumption), no workgroup memory or barriers, edge rows/columns clamped so
//   the inner loop has no branches (what CPU rasterisers such as llvmpipe run fastest:
//   on llvmpipe 8×4-vec4 measured ~4× faster than 4×4 scalar with bounds branches).
// Dispatch: (ceil(N / 64), ceil(M / 64), batch·splits) tiled; (ceil(N / 32), ceil(M / 64),
// batch·splits) reg.
//
// Split-K (splits > 1, for products with few output tiles and a long K, such as the
// gradient δᵀ·z summed over the rows): workgroup z = batch·splits + split sums its own
// range of K (a multiple of 16 long) and writes the raw partial sum to the binding `c`, here
// a scratch buffer laid out (batch, splits, M, N) from c_off; then `matmul_sum_splits`
// (binding a = that scratch at a_off, c = the real C) adds the partial sums in split
// order — a fixed order, so results are deterministic — and applies α and β.
// Dispatch of matmul_sum_splits: (ceil(M·N / 256), batch, 1).

struct MatmulParams {
    m: u32, n: u32, k: u32, batch: u32,
    a_off: u32, a_rs: u32, a_cs: u32, a_bs: u32,
    b_off: u32, b_rs: u32, b_cs: u32, b_bs: u32,
    c_off: u32, c_rs: u32, c_bs: u32,
    alpha: f32, beta: f32, splits: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: MatmulParams;

// [begin, end) of the K range that workgroup z sums (all of K without split-K).
fn k_range(z: u32) -> vec2<u32> {
    let split = z % p.splits;
    let per = ((p.k + p.splits - 1u) / p.splits + 15u) / 16u * 16u;
    let begin = min(split * per, p.k);
    return vec2<u32>(begin, min(begin + per, p.k));
}

fn load_a(batch: u32, m: u32, k: u32, k_end: u32) -> f32 {
    if (m < p.m && k < k_end) {
        return a[p.a_off + batch * p.a_bs + m * p.a_rs + k * p.a_cs];
    }
    return 0.0;
}

fn load_b(batch: u32, k: u32, n: u32, k_end: u32) -> f32 {
    if (k < k_end && n < p.n) {
        return b[p.b_off + batch * p.b_bs + k * p.b_rs + n * p.b_cs];
    }
    return 0.0;
}

fn store_c(batch: u32, m: u32, n: u32, value: f32) {
    if (m < p.m && n < p.n) {
        let i = p.c_off + batch * p.c_bs + m * p.c_rs + n;
        // β = 0 must overwrite whatever is there (even NaN), so it is not β·C.
        if (p.beta == 0.0) {
            c[i] = p.alpha * value;
        } else {
            c[i] = p.beta * c[i] + p.alpha * value;
        }
    }
}

// The result of workgroup z for C (m, n): C itself, or its split's partial sum.
fn store_out(z: u32, m: u32, n: u32, value: f32) {
    if (p.splits == 1u) {
        store_c(z, m, n, value);
    } else if (m < p.m && n < p.n) {
        c[p.c_off + (z * p.m + m) * p.n + n] = value;
    }
}

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [TK][TILE]: tile_a[kk * TILE + mm]
var<workgroup> tile_b: array<f32, 1024>; // [TK][TILE]: tile_b[kk * TILE + nn]

@compute @workgroup_size(16, 16, 1)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let batch = wid.z / p.splits;
    let kr = k_range(wid.z);
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let t = lid.y * 16u + lid.x;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            acc[i][j] = 0.0;
        }
    }
    for (var k0 = kr.x; k0 < kr.y; k0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            let idx = t + 256u * q;
            // Consecutive threads walk the operand's unit-stride direction, so that global
            // loads coalesce for A and Aᵀ, B and Bᵀ alike (the choice is uniform per dispatch).
            var am = idx / TK;
            var ak = idx % TK;
            if (p.a_cs != 1u) {
                am = idx % TILE;
                ak = idx / TILE;
            }
            tile_a[ak * TILE + am] = load_a(batch, m0 + am, k0 + ak, kr.y);
            var bk = idx / TILE;
            var bn = idx % TILE;
            if (p.b_cs != 1u && p.b_rs == 1u) {
                bk = idx % TK;
                bn = idx / TK;
            }
            tile_b[bk * TILE + bn] = load_b(batch, k0 + bk, n0 + bn, kr.y);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = tile_a[kk * TILE + lid.y + 16u * i];
                bv[i] = tile_b[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store_out(wid.z, m0 + lid.y + 16u * i, n0 + lid.x + 16u * j, acc[i][j]);
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn matmul_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let batch = wid.z / p.splits;
    let kr = k_range(wid.z);
    let m0 = wid.y * 64u + lid.y * 8u;
    let n0 = wid.x * 32u + lid.x * 4u;
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    // Rows and columns past the edge are clamped onto the last one: their sums are
    // computed but never stored, and the inner loop needs no bounds branches.
    var a_row: array<u32, 8>;
    var b_col: array<u32, 4>;
    for (var i = 0u; i < 8u; i++) {
        a_row[i] = p.a_off + batch * p.a_bs + min(m0 + i, p.m - 1u) * p.a_rs;
    }
    for (var j = 0u; j < 4u; j++) {
        b_col[j] = p.b_off + batch * p.b_bs + min(n0 + j, p.n - 1u) * p.b_cs;
    }
    // 8×4 outputs per thread as eight vec4 rows: one vector FMA per (row, k).
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k = kr.x; k < kr.y; k++) {
        let ka = k * p.a_cs;
        let kb = k * p.b_rs;
        let bv = vec4<f32>(b[b_col[0] + kb], b[b_col[1] + kb], b[b_col[2] + kb], b[b_col[3] + kb]);
        for (var i = 0u; i < 8u; i++) {
            acc[i] = fma(vec4<f32>(a[a_row[i] + ka]), bv, acc[i]);
        }
    }
    for (var i = 0u; i < 8u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store_out(wid.z, m0 + i, n0 + j, acc[i][j]);
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn matmul_sum_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.x * 256u + lid.x;
    if (i >= p.m * p.n) {
        return;
    }
    let batch = wid.y;
    var s = 0.0;
    for (var split = 0u; split < p.splits; split++) {
        s += a[p.a_off + (batch * p.splits + split) * p.m * p.n + i];
    }
    store_c(batch, i / p.n, i % p.n, s);
}
