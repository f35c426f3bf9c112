//! The compute kernels: which WGSL file and entry point each one is, which bindings of
//! its file it uses, and how its uniform parameters are laid out. Nothing here calls
//! wgpu; `context.rs` compiles every kernel at start-up from this table.

use super::context::{GpuBuffer, Op};

/// A WGSL file (one per kernel family). Elementwise families get `shaders/common.wgsl`
/// (activation and loss formulas, the flat-index helper) prepended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Matmul,
    Activation,
    Loss,
    Reduce,
    Rop,
    DiagHessian,
    OuterProduct,
    Update,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Matmul,
        Family::Activation,
        Family::Loss,
        Family::Reduce,
        Family::Rop,
        Family::DiagHessian,
        Family::OuterProduct,
        Family::Update,
    ];

    /// The WGSL source of this family, ready to compile.
    pub fn source(self) -> String {
        const COMMON: &str = include_str!("../../shaders/common.wgsl");
        let own = match self {
            Family::Matmul => return include_str!("../../shaders/matmul.wgsl").to_string(),
            Family::Activation => include_str!("../../shaders/activation.wgsl"),
            Family::Loss => include_str!("../../shaders/loss.wgsl"),
            Family::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Family::Rop => include_str!("../../shaders/rop.wgsl"),
            Family::DiagHessian => include_str!("../../shaders/diag_hessian.wgsl"),
            Family::OuterProduct => include_str!("../../shaders/outer_product.wgsl"),
            Family::Update => include_str!("../../shaders/update.wgsl"),
        };
        format!("{COMMON}\n{own}")
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Activation => "activation",
            Family::Loss => "loss",
            Family::Reduce => "reduce",
            Family::Rop => "rop",
            Family::DiagHessian => "diag_hessian",
            Family::OuterProduct => "outer_product",
            Family::Update => "update",
        }
    }
}

/// One storage binding of group 0: its index in the file's binding table and whether
/// the file declares it `read_write`.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub index: u32,
    pub writable: bool,
}

const fn r(index: u32) -> Binding {
    Binding {
        index,
        writable: false,
    }
}
const fn w(index: u32) -> Binding {
    Binding {
        index,
        writable: true,
    }
}

// Named constants so that the binding lists below are promoted to 'static.
const R0: Binding = r(0);
const R1: Binding = r(1);
const R2: Binding = r(2);
const R3: Binding = r(3);
const R4: Binding = r(4);
const W1: Binding = w(1);
const W2: Binding = w(2);
const W3: Binding = w(3);
const W4: Binding = w(4);
const W5: Binding = w(5);
const W6: Binding = w(6);
const W7: Binding = w(7);

/// Every compute kernel (a WGSL entry point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    MatmulTiled,
    MatmulReg,
    MatmulSumSplits,
    BiasAct,
    LossDelta,
    LossHess,
    LossFactor,
    LossDiag,
    Colsum,
    RopForward,
    MulDeriv,
    RopBackward,
    BlBackward,
    SumSqBatch,
    HessResidual,
    ExpandResidual,
    OuterRows,
    Square,
    FillIdentity,
    UnitProduct,
}

impl Kernel {
    pub const ALL: [Kernel; 20] = [
        Kernel::MatmulTiled,
        Kernel::MatmulReg,
        Kernel::MatmulSumSplits,
        Kernel::BiasAct,
        Kernel::LossDelta,
        Kernel::LossHess,
        Kernel::LossFactor,
        Kernel::LossDiag,
        Kernel::Colsum,
        Kernel::RopForward,
        Kernel::MulDeriv,
        Kernel::RopBackward,
        Kernel::BlBackward,
        Kernel::SumSqBatch,
        Kernel::HessResidual,
        Kernel::ExpandResidual,
        Kernel::OuterRows,
        Kernel::Square,
        Kernel::FillIdentity,
        Kernel::UnitProduct,
    ];

    /// Position in [`Kernel::ALL`] (the context's pipeline table is in that order).
    pub fn index(self) -> usize {
        Kernel::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }

    /// (family, entry point, the bindings it uses — in the order `Op::dispatch` takes buffers).
    pub fn spec(self) -> (Family, &'static str, &'static [Binding]) {
        use Family as F;
        match self {
            Kernel::MatmulTiled => (F::Matmul, "matmul_tiled", &[R0, R1, W2]),
            Kernel::MatmulReg => (F::Matmul, "matmul_reg", &[R0, R1, W2]),
            Kernel::MatmulSumSplits => (F::Matmul, "matmul_sum_splits", &[R0, W2]),
            Kernel::BiasAct => (F::Activation, "bias_act", &[R0, W1, W2, W3, W4]),
            Kernel::LossDelta => (F::Loss, "loss_delta", &[R0, R1, W3, W4, W5]),
            Kernel::LossHess => (F::Loss, "loss_hess", &[R0, R1, R2, W4]),
            Kernel::LossFactor => (F::Loss, "loss_factor", &[R0, R1, W4]),
            Kernel::LossDiag => (F::Loss, "loss_diag", &[R0, R1, W4]),
            Kernel::Colsum => (F::Reduce, "colsum", &[R0, W1]),
            Kernel::RopForward => (F::Rop, "rop_forward", &[R0, R1, W5, W6]),
            Kernel::MulDeriv => (F::Rop, "mul_deriv", &[R1, R4, W7]),
            Kernel::RopBackward => (F::Rop, "rop_backward", &[R1, R2, R3, R4, W5, W7]),
            Kernel::BlBackward => (F::DiagHessian, "bl_backward", &[R0, R1, R2, R3, W5]),
            Kernel::SumSqBatch => (F::DiagHessian, "sumsq_batch", &[R4, W5]),
            Kernel::HessResidual => (F::DiagHessian, "hess_residual", &[R1, R2, W5]),
            Kernel::ExpandResidual => (F::DiagHessian, "expand_residual", &[R0, R3, R4, W5]),
            Kernel::OuterRows => (F::OuterProduct, "outer_rows", &[R0, R1, W2]),
            Kernel::Square => (F::Update, "square", &[R0, W2]),
            Kernel::FillIdentity => (F::Update, "fill_identity", &[W2]),
            Kernel::UnitProduct => (F::Update, "unit_product", &[R0, W2]),
        }
    }
}

/// Threads per workgroup of the elementwise kernels (`WG` in common.wgsl).
pub const ELEMENTWISE_WORKGROUP: u32 = 256;
/// The most workgroups WebGPU guarantees along one dispatch dimension.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// The workgroup grid for `count` elementwise threads: 2-D when more than 65535
/// workgroups are needed (`flat_index` in common.wgsl undoes it).
pub fn elementwise_groups(count: usize) -> [u32; 3] {
    let groups = count.div_ceil(ELEMENTWISE_WORKGROUP as usize).max(1);
    let x = groups.min(MAX_WORKGROUPS_PER_DIM as usize);
    let y = groups.div_ceil(x);
    [x as u32, y as u32, 1]
}

/// The bits of an f32 uniform field (uniform structs are written as u32 words).
pub fn f(x: f32) -> u32 {
    x.to_bits()
}

/// A matrix operand of the matmul kernel: element (row, col) of batch b lives at
/// `off + b·bs + row·rs + col·cs` in its buffer.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
    pub bs: usize,
}

impl Strided {
    /// A row-major (rows, cols) matrix at `off`: (r, c) at off + r·cols + c.
    pub fn rows(off: usize, cols: usize) -> Strided {
        Strided {
            off,
            rs: cols,
            cs: 1,
            bs: 0,
        }
    }
    /// The transpose of a row-major (rows, cols) matrix at `off`: (c, r) at off + r·cols + c.
    pub fn transposed(off: usize, cols: usize) -> Strided {
        Strided {
            off,
            rs: 1,
            cs: cols,
            bs: 0,
        }
    }
    /// The same operand, with batch stride `bs`.
    pub fn batch(self, bs: usize) -> Strided {
        Strided { bs, ..self }
    }
}

/// The words of `MatmulParams` (matmul.wgsl) for C (m, n) [+]= α·A (m, k)·B (k, n),
/// `batch` times, the K range cut in `splits` (1: no split-K); C is row-major with row
/// stride `c.rs` (its `cs` must be 1).
#[allow(clippy::too_many_arguments)]
pub fn matmul_params(
    (m, n, k, batch): (usize, usize, usize, usize),
    a: Strided,
    b: Strided,
    c: Strided,
    alpha: f32,
    beta: f32,
    splits: usize,
) -> Vec<u32> {
    let u = |x: usize| x as u32;
    vec![
        u(m),
        u(n),
        u(k),
        u(batch),
        u(a.off),
        u(a.rs),
        u(a.cs),
        u(a.bs),
        u(b.off),
        u(b.rs),
        u(b.cs),
        u(b.bs),
        u(c.off),
        u(c.rs),
        u(c.bs),
        f(alpha),
        f(beta),
        u(splits.max(1)),
    ]
}

/// `DiagParams` of diag_hessian.wgsl (offsets in floats); the fields a kernel does not
/// read stay at their defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiagParams {
    pub count: usize,
    pub batch: usize,
    pub d_off: usize,
    pub ew_off: usize,
    pub prod_off: usize,
    pub src_off: usize,
    pub dst_off: usize,
    pub sign: f32,
    pub acc: bool,
    pub n: usize,
    pub w: usize,
    pub fan_out: usize,
    pub j0: usize,
}

impl DiagParams {
    pub fn words(&self) -> Vec<u32> {
        let u = |x: usize| x as u32;
        vec![
            u(self.count),
            u(self.batch),
            u(self.d_off),
            u(self.ew_off),
            u(self.prod_off),
            u(self.src_off),
            u(self.dst_off),
            f(self.sign),
            u(self.acc as usize),
            u(self.n),
            u(self.w),
            u(self.fan_out),
            u(self.j0),
        ]
    }
}

/// Split-K only when the output tiles alone give fewer workgroups than this (enough to
/// keep a large GPU's compute units, or every core of a CPU rasteriser, busy).
pub const SPLIT_K_TARGET_WORKGROUPS: usize = 64;
/// The shortest K range one split sums (shorter splits cost more in partial sums than
/// they gain in parallelism).
pub const SPLIT_K_MIN_DEPTH: usize = 256;
/// The most splits of one product.
pub const SPLIT_K_MAX: usize = 32;

/// How many K splits a product gets: 1 unless its output tiles are too few to fill the
/// device and K is long, and never more than `scratch_len` floats of partial sums.
///
/// The count is the same for every matmul variant (`_kernel` is not consulted: tiles are
/// counted in the shared-memory kernel's 64×64 layout): the splits fix the order in
/// which K is summed, so one count for both makes the two variants agree bit for bit,
/// and the variant a context picks by timing cannot change a result from run to run.
pub fn split_k(
    _kernel: Kernel,
    (m, n, k, batch): (usize, usize, usize, usize),
    scratch_len: usize,
) -> usize {
    let g = matmul_groups(Kernel::MatmulTiled, m, n, batch);
    let tiles = (g[0] * g[1] * g[2]) as usize;
    if tiles >= SPLIT_K_TARGET_WORKGROUPS || k < 2 * SPLIT_K_MIN_DEPTH {
        return 1;
    }
    let by_room = scratch_len / (batch * m * n).max(1);
    let by_groups =
        (m * n).div_ceil(ELEMENTWISE_WORKGROUP as usize) <= MAX_WORKGROUPS_PER_DIM as usize;
    if !by_groups {
        return 1;
    }
    SPLIT_K_TARGET_WORKGROUPS
        .div_ceil(tiles)
        .min(k / SPLIT_K_MIN_DEPTH)
        .min(SPLIT_K_MAX)
        .min(by_room)
        .max(1)
}

/// Records C (m, n) = β·C + α·A·B, `batch` times, with `splits` K splits (partial sums in
/// `scratch`, then `matmul_sum_splits`); one dispatch when `splits` is 1.
#[allow(clippy::too_many_arguments)]
pub fn record_matmul(
    op: &mut Op,
    kernel: Kernel,
    dims: (usize, usize, usize, usize),
    a: (&GpuBuffer, Strided),
    b: (&GpuBuffer, Strided),
    c: (&GpuBuffer, Strided),
    (alpha, beta): (f32, f32),
    splits: usize,
    scratch: &GpuBuffer,
) {
    let (m, n, _, batch) = dims;
    if splits <= 1 {
        op.dispatch(
            kernel,
            &[a.0, b.0, c.0],
            matmul_params(dims, a.1, b.1, c.1, alpha, beta, 1),
            matmul_groups(kernel, m, n, batch),
        );
        return;
    }
    let parts = Strided::rows(0, n);
    op.dispatch(
        kernel,
        &[a.0, b.0, scratch],
        matmul_params(dims, a.1, b.1, parts, 1.0, 0.0, splits),
        matmul_groups(kernel, m, n, batch * splits),
    );
    op.dispatch(
        Kernel::MatmulSumSplits,
        &[scratch, c.0],
        matmul_params(dims, parts, parts, c.1, alpha, beta, splits),
        [
            (m * n).div_ceil(ELEMENTWISE_WORKGROUP as usize) as u32,
            batch as u32,
            1,
        ],
    );
}

/// Output tile (rows, columns) of C per workgroup of each matmul variant (matmul.wgsl).
pub fn matmul_tile(kernel: Kernel) -> (usize, usize) {
    match kernel {
        Kernel::MatmulTiled => (64, 64),
        _ => (64, 32),
    }
}

/// The workgroup grid of a matmul variant for C (m, n) × batch.
pub fn matmul_groups(kernel: Kernel, m: usize, n: usize, batch: usize) -> [u32; 3] {
    let (tm, tn) = matmul_tile(kernel);
    [
        n.div_ceil(tn).max(1) as u32,
        m.div_ceil(tm).max(1) as u32,
        batch.max(1) as u32,
    ]
}
