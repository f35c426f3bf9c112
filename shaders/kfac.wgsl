// K-FAC and the Fisher vectors (src/cpu/kfac.rs, src/cpu/fisher.rs): the Monte-Carlo
// output columns from draws sampled on the host with the reference's stream
// (src/engine/sampling.rs), and the per-sample vectors g_{n,r} written into θ's layout.
// The factors themselves are matmuls (Z̃ᵀZ̃, SᵀS) and column sums; the exact columns are
// loss.wgsl's loss_factor and the empirical ones the backward pass's δ.
//
// | group | binding | name    | access     | contents                                          |
// |-------|---------|---------|------------|---------------------------------------------------|
// | 0     | 0       | pre     | read       | a_out (n, K) at a_off                             |
// | 0     | 1       | targets | read       | T (n, K) at t_off (ce: the mass √Σ_k t_k)         |
// | 0     | 2       | draws   | read       | draws (rows·S, K): row (row0 + n)·S + s           |
// | 0     | 3       | cols    | read       | columns S_l (batch·n, out) at s_off, row b·n + n  |
// | 0     | 4       | z       | read       | z_l (n, fan_in) at z_off, row stride z_rs         |
// | 0     | 5       | out     | read_write | mc columns (batch, n, K) at d_off; or the vectors (rows·per, W) |
// | 1     | 0       | p       | uniform    | KfacParams                                        |
//
// Entry points:
// - mc_columns    (one thread per (draw b, row)): out = scale·δ(a, ỹ) for the draw g0 + b of
//                 row0 + row — ce: ỹ = e_y, y the first k with p_0 + … + p_k > u (K−1 if
//                 none), times the mass √Σ_k t_k; bce: ỹ_k = [u_k < σ(a_k)]; sse/mse:
//                 ỹ = h(a) + std·ε, so δ = −c·std·ε·h′(a) (std 1 for sse, √(K/2) for mse,
//                 c = 1 or 2/K); scale = 1/√S.
// - gradient_rows (one thread per (column row, j, i), i = fan_in the bias): row
//                 (row0 + n)·per + g0 + b of out holds S_l[b·n + n, j]·z_l[n, i] on W_l[j][i]
//                 and S_l[b·n + n, j] on b_l[j].

struct KfacParams {
    count: u32, n: u32, k: u32, loss: u32,
    act: u32, a_off: u32, t_off: u32, samples: u32,
    g0: u32, d_off: u32, scale: f32, fan_out: u32,
    fan_in: u32, s_off: u32, z_off: u32, z_rs: u32,
    w_total: u32, w_off: u32, b_off: u32, per: u32,
    row0: u32,
}

@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<f32>;
@group(0) @binding(2) var<storage, read> draws: array<f32>;
@group(0) @binding(3) var<storage, read> cols: array<f32>;
@group(0) @binding(4) var<storage, read> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: KfacParams;

fn a_at(row: u32, k: u32) -> f32 {
    return pre[p.a_off + row * p.k + k];
}

@compute @workgroup_size(256, 1, 1)
fn mc_columns(inv: Invocation) {
    let i = flat_index(inv);
    if (i >= p.count) {
        return;
    }
    let row = i % p.n;
    let b = i / p.n;
    let draw = ((p.row0 + row) * p.samples + p.g0 + b) * p.k;
    let dst = p.d_off + i * p.k;
    switch p.loss {
        case LOSS_CE: {
            var m = a_at(row, 0u);
            for (var k = 1u; k < p.k; k++) {
                m = max(m, a_at(row, k));
            }
            var sum = 0.0;
            var mass = 0.0;
            for (var k = 0u; k < p.k; k++) {
                sum += exp(a_at(row, k) - m);
                mass += targets[p.t_off + row * p.k + k];
            }
            let u = draws[draw];
            var chosen = p.k - 1u;
            var cumulative = 0.0;
            for (var k = 0u; k < p.k; k++) {
                cumulative += exp(a_at(row, k) - m) / sum;
                if (cumulative > u) {
                    chosen = k;
                    break;
                }
            }
            let factor = p.scale * sqrt(max(mass, 0.0));
            for (var k = 0u; k < p.k; k++) {
                let prob = exp(a_at(row, k) - m) / sum;
                out[dst + k] = factor * (prob - select(0.0, 1.0, k == chosen));
            }
        }
        case LOSS_BCE: {
            for (var k = 0u; k < p.k; k++) {
                let s = sigmoid(a_at(row, k));
                let y = select(0.0, 1.0, draws[draw + k] < s);
                out[dst + k] = p.scale * (s - y);
            }
        }
        case LOSS_SSE, LOSS_MSE, default: {
            // c·(h − ỹ)·h′ with ỹ = h + std·ε, i.e. −c·std·ε·h′.
            var c = 1.0;
            var sd = 1.0;
            if (p.loss == LOSS_MSE) {
                c = 2.0 / f32(p.k);
                sd = sqrt(f32(p.k) / 2.0);
            }
            for (var k = 0u; k < p.k; k++) {
                let dh = act_dh(p.act, a_at(row, k));
                out[dst + k] = -p.scale * c * sd * draws[draw + k] * dh;
            }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn gradient_rows(inv: Invocation) {
    let t = flat_index(inv);
    if (t >= p.count) {
        return;
    }
    let per_row = p.fan_out * (p.fan_in + 1u);
    let src_row = t / per_row;
    let rest = t % per_row;
    let j = rest / (p.fan_in + 1u);
    let i = rest % (p.fan_in + 1u);
    let sample = src_row % p.n;
    let b = src_row / p.n;
    let dst_row = (p.row0 + sample) * p.per + p.g0 + b;
    let sj = cols[p.s_off + src_row * p.fan_out + j];
    if (i == p.fan_in) {
        out[dst_row * p.w_total + p.b_off + j] = sj;
    } else {
        out[dst_row * p.w_total + p.w_off + j * p.fan_in + i] = sj * z[p.z_off + sample * p.z_rs + i];
    }
}
