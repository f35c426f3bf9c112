//! The compute kernels: which WGSL file and entry point each one is, which bindings of
//! its file it uses, and the source each file is compiled from (with the activation and
//! loss codes generated from the Rust enums). Nothing here calls wgpu;
//! `context/pipelines.rs` compiles every kernel at start-up from this table, and
//! `params.rs` holds each family's uniform parameters.

use super::context::{GpuBuffer, Op};
use super::params::{u, MatmulParams};
use crate::activation::Activation;
use crate::loss::Loss;

/// A WGSL file (one per kernel family). Elementwise families get the generated code
/// constants ([`code_constants`]) and `shaders/common.wgsl` (activation and loss
/// formulas, the flat-index helper) prepended.
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
    Kfac,
}

/// `shaders/common.wgsl`: the functions shared by the elementwise families.
pub const COMMON_WGSL: &str = include_str!("../../shaders/common.wgsl");

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Matmul,
        Family::Activation,
        Family::Loss,
        Family::Reduce,
        Family::Rop,
        Family::DiagHessian,
        Family::OuterProduct,
        Family::Update,
        Family::Kfac,
    ];

    /// The family's own WGSL file, as written (`shaders/{name}.wgsl`).
    pub fn file(self) -> &'static str {
        match self {
            Family::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Family::Activation => include_str!("../../shaders/activation.wgsl"),
            Family::Loss => include_str!("../../shaders/loss.wgsl"),
            Family::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Family::Rop => include_str!("../../shaders/rop.wgsl"),
            Family::DiagHessian => include_str!("../../shaders/diag_hessian.wgsl"),
            Family::OuterProduct => include_str!("../../shaders/outer_product.wgsl"),
            Family::Update => include_str!("../../shaders/update.wgsl"),
            Family::Kfac => include_str!("../../shaders/kfac.wgsl"),
        }
    }

    /// The WGSL source of this family, ready to compile: the matmul file alone; any
    /// other file after the code constants and `common.wgsl`.
    pub fn source(self) -> String {
        match self {
            Family::Matmul => self.file().to_string(),
            _ => format!("{}\n{COMMON_WGSL}\n{}", code_constants(), self.file()),
        }
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
            Family::Kfac => "kfac",
        }
    }
}

/// The WGSL name of an activation's code, `ACT_` and its name in capitals (`ACT_LEAKY_RELU`).
pub fn activation_constant(act: Activation) -> String {
    format!("ACT_{}", act.name().to_uppercase())
}

/// The WGSL name of a loss's code, `LOSS_` and its name in capitals (`LOSS_CE`).
pub fn loss_constant(loss: Loss) -> String {
    format!("LOSS_{}", loss.name().to_uppercase())
}

/// WGSL constants for every activation code ([`Activation::code`]) and loss code
/// ([`Loss::code`]), generated from the Rust enums so that the shaders switch on names
/// (`case ACT_SIGMOID`) whose values cannot drift from the codes the engine uploads.
pub fn code_constants() -> String {
    let mut wgsl = String::from(
        "// Generated from Activation::code() and Loss::code() (src/gpu/kernels.rs).\n",
    );
    for act in Activation::ALL {
        let name = activation_constant(act);
        wgsl += &format!("const {name}: u32 = {}u;\n", act.code());
    }
    for loss in Loss::ALL {
        let name = loss_constant(loss);
        wgsl += &format!("const {name}: u32 = {}u;\n", loss.code());
    }
    wgsl
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
    McColumns,
    GradientRows,
    Lookahead,
    SgdStep,
    NesterovStep,
    AdamStep,
    RmspropStep,
    AdagradStep,
}

impl Kernel {
    pub const ALL: [Kernel; 28] = [
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
        Kernel::McColumns,
        Kernel::GradientRows,
        Kernel::Lookahead,
        Kernel::SgdStep,
        Kernel::NesterovStep,
        Kernel::AdamStep,
        Kernel::RmspropStep,
        Kernel::AdagradStep,
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
            Kernel::McColumns => (F::Kfac, "mc_columns", &[R0, R1, R2, W5]),
            Kernel::GradientRows => (F::Kfac, "gradient_rows", &[R3, R4, W5]),
            Kernel::Lookahead => (F::Update, "lookahead", &[W2, W3, W6]),
            Kernel::SgdStep => (F::Update, "sgd_step", &[R0, R1, W2, W3]),
            Kernel::NesterovStep => (F::Update, "nesterov_step", &[R0, R1, W2, W3, W6]),
            Kernel::AdamStep => (F::Update, "adam_step", &[R0, R1, W2, W3, W4, W5]),
            Kernel::RmspropStep => (F::Update, "rmsprop_step", &[R0, R1, W2, W3, W4, W5]),
            Kernel::AdagradStep => (F::Update, "adagrad_step", &[R0, R1, W2, W3]),
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

/// `MatmulParams` (matmul.wgsl) for C (m, n) [+]= α·A (m, k)·B (k, n), `batch` times,
/// the K range cut in `splits` (1: no split-K); C is row-major with row stride `c.rs`
/// (its `cs` must be 1).
#[allow(clippy::too_many_arguments)]
pub fn matmul_params(
    (m, n, k, batch): (usize, usize, usize, usize),
    a: Strided,
    b: Strided,
    c: Strided,
    alpha: f32,
    beta: f32,
    splits: usize,
) -> MatmulParams {
    MatmulParams {
        m: u(m),
        n: u(n),
        k: u(k),
        batch: u(batch),
        a_off: u(a.off),
        a_rs: u(a.rs),
        a_cs: u(a.cs),
        a_bs: u(a.bs),
        b_off: u(b.off),
        b_rs: u(b.rs),
        b_cs: u(b.cs),
        b_bs: u(b.bs),
        c_off: u(c.off),
        c_rs: u(c.rs),
        c_bs: u(c.bs),
        alpha,
        beta,
        splits: u(splits.max(1)),
        ..MatmulParams::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The case labels of every `switch` in `wgsl`, one list per switch (`default`
    /// included), nested switches as lists of their own.
    fn switch_arms(wgsl: &str) -> Vec<Vec<String>> {
        let code: Vec<&str> = wgsl
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect();
        let code = code.join("\n");
        let mut switches = Vec::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("switch ") {
            let after = &rest[at..];
            let Some(open) = after.find('{') else { break };
            // Between the arms' bodies, at the switch's own depth, stand their headers:
            // `case A, B:` or `default:`.
            let mut labels = Vec::new();
            let mut header = String::new();
            let mut depth = 0;
            for c in after[open + 1..].chars() {
                match (c, depth) {
                    ('}', 0) => break,
                    ('{', 0) => {
                        labels.extend(arm_labels(&header));
                        header.clear();
                        depth = 1;
                    }
                    ('{', _) => depth += 1,
                    ('}', _) => depth -= 1,
                    (_, 0) => header.push(c),
                    _ => {}
                }
            }
            switches.push(labels);
            rest = &after[open + 1..];
        }
        switches
    }

    /// The labels of one arm's header (`case A, B:`, `default:`).
    fn arm_labels(header: &str) -> Vec<String> {
        let header = header.trim().trim_end_matches(':');
        let header = header.strip_prefix("case").unwrap_or(header);
        header
            .split(',')
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every WGSL text the kernels are compiled from, with its file name.
    fn shader_files() -> Vec<(String, &'static str)> {
        let mut files = vec![("common.wgsl".to_string(), COMMON_WGSL)];
        files.extend(
            Family::ALL
                .iter()
                .map(|f| (format!("{}.wgsl", f.name()), f.file())),
        );
        files
    }

    /// A switch on activation codes (one that names any ACT_ constant) has an arm naming
    /// every activation, and a switch on loss codes one naming every loss: a variant
    /// added in Rust without its WGSL arm fails here (instead of running the default).
    #[test]
    fn every_code_switch_names_every_variant() {
        let acts: Vec<String> = Activation::ALL
            .into_iter()
            .map(activation_constant)
            .collect();
        let losses: Vec<String> = Loss::ALL.into_iter().map(loss_constant).collect();
        let (mut act_switches, mut loss_switches) = (0, 0);
        for (file, wgsl) in shader_files() {
            for labels in switch_arms(wgsl) {
                for (prefix, names, count) in [
                    ("ACT_", &acts, &mut act_switches),
                    ("LOSS_", &losses, &mut loss_switches),
                ] {
                    if !labels.iter().any(|l| l.starts_with(prefix)) {
                        continue;
                    }
                    *count += 1;
                    for name in names {
                        assert!(
                            labels.contains(name),
                            "a switch in {file} has no arm for {name}: {labels:?}"
                        );
                    }
                    for label in &labels {
                        assert!(
                            label == "default" || names.contains(label),
                            "a switch on {prefix}* codes in {file} has the arm `{label}`, \
                             which is no generated code"
                        );
                    }
                }
            }
        }
        // act_h, act_dh, act_d2h; loss_delta, loss_hess, loss_factor, loss_diag, mc_columns.
        assert_eq!(act_switches, 3, "switches on activation codes");
        assert_eq!(loss_switches, 5, "switches on loss codes");
    }

    /// The parser finds a missing arm, so the test above can fail.
    #[test]
    fn a_switch_without_an_arm_is_found() {
        let wgsl = "fn f(code: u32) -> f32 {\n    switch code {\n        \
                    case ACT_SIGMOID: { return 1.0; }\n        \
                    case ACT_TANH, default: { if (true) { return 2.0; } return 3.0; }\n    }\n}";
        assert_eq!(switch_arms(wgsl), [["ACT_SIGMOID", "ACT_TANH", "default"]]);
        let wgsl = "switch x {\n case 1u: { }\n default: { }\n}";
        assert_eq!(switch_arms(wgsl), [["1u", "default"]]);
    }

    /// The generated constants carry the enums' codes, one per variant, and no shader
    /// file defines its own (they are prepended to the elementwise families only).
    #[test]
    fn code_constants_come_from_the_enums() {
        let wgsl = code_constants();
        for act in Activation::ALL {
            let line = format!("const {}: u32 = {}u;", activation_constant(act), act.code());
            assert!(wgsl.contains(&line), "{line} missing from\n{wgsl}");
        }
        for loss in Loss::ALL {
            let line = format!("const {}: u32 = {}u;", loss_constant(loss), loss.code());
            assert!(wgsl.contains(&line), "{line} missing from\n{wgsl}");
        }
        for (file, text) in shader_files() {
            assert!(
                !text.contains("const ACT_") && !text.contains("const LOSS_"),
                "{file} defines a code constant itself"
            );
        }
        assert!(Family::Loss.source().starts_with(&wgsl));
        assert!(!Family::Matmul.source().contains("ACT_"));
    }
}
