//! The uniform parameters of every kernel family: one `#[repr(C)]` [`bytemuck::Pod`]
//! struct per WGSL params struct, field for field and in order, uploaded as its bytes
//! (`bytemuck::bytes_of`) into the dispatch's uniform slot. The tests below parse each
//! struct out of `shaders/*.wgsl` and compare its fields and size with the Rust one.
//!
//! Every field is a u32 or an f32 (4 bytes, WGSL alignment 4), so the fields follow each
//! other without gaps on both sides; `_pad` rounds the struct up to a multiple of 16
//! bytes, the alignment WGSL's uniform layout gives a struct (so the bytes are the same
//! whether the struct stands alone or is nested in another uniform).

use super::context::PARAM_BYTES;
use super::kernels::Family;

/// A kernel family's uniform parameters, as its WGSL file declares them.
pub trait KernelParams: bytemuck::Pod {
    /// The family whose kernels take these parameters (`Op::dispatch` checks it).
    const FAMILY: Family;
    /// The WGSL struct's name (the Rust struct has the same).
    const WGSL_NAME: &'static str;
    /// (name, WGSL type) of every field, in order, padding left out.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// u32 words of padding after `fields` fields of 4 bytes, up to a multiple of 16 bytes.
const fn pad_words(fields: usize) -> usize {
    (4 - fields % 4) % 4
}

/// A count or an offset (in f32 elements) as the u32 a WGSL field holds. Every value
/// fits: buffers are at most one storage binding, which is checked when they are made.
pub fn u(x: usize) -> u32 {
    debug_assert!(u32::try_from(x).is_ok(), "{x} does not fit a u32 field");
    x as u32
}

/// A WGSL flag field: 1 for true, 0 for false.
pub fn flag(on: bool) -> u32 {
    on as u32
}

/// Declares one params struct: the struct with its padding, its [`KernelParams`] (the
/// field list from the same tokens, so it cannot drift from the struct), and a
/// compile-time check that it fits one uniform slot.
macro_rules! kernel_params {
    ($(#[$doc:meta])* $name:ident for $family:expr, { $($field:ident: $ty:ident),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $(pub $field: $ty,)*
            /// Up to a multiple of 16 bytes (not in the WGSL struct).
            pub _pad: [u32; pad_words([$(stringify!($field)),*].len())],
        }

        impl KernelParams for $name {
            const FAMILY: Family = $family;
            const WGSL_NAME: &'static str = stringify!($name);
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }

        const _: () = assert!(std::mem::size_of::<$name>() as u64 <= PARAM_BYTES);
        const _: () = assert!(std::mem::size_of::<$name>() % 16 == 0);
    };
}

kernel_params! {
    /// `MatmulParams` of matmul.wgsl: C (m, n) [+]= α·A (m, k)·B (k, n), `batch` times,
    /// each operand at `off + b·bs + row·rs + col·cs` (C's column stride is 1), the K
    /// range cut in `splits` (1: no split-K).
    MatmulParams for Family::Matmul, {
        m: u32, n: u32, k: u32, batch: u32,
        a_off: u32, a_rs: u32, a_cs: u32, a_bs: u32,
        b_off: u32, b_rs: u32, b_cs: u32, b_bs: u32,
        c_off: u32, c_rs: u32, c_bs: u32,
        alpha: f32, beta: f32, splits: u32,
    }
}

kernel_params! {
    /// `ActParams` of activation.wgsl: bias and activation `code` of one layer of width
    /// `out` over `count` entries; `store` = 0 adds the bias only (the output layer).
    ActParams for Family::Activation, {
        count: u32, out: u32, code: u32, store: u32,
        bias_off: u32, a_off: u32, z_off: u32, d_off: u32,
    }
}

kernel_params! {
    /// `LossParams` of loss.wgsl: `n` rows of `k` outputs, `loss` and output `act` codes,
    /// `batch` vectors or factor columns from `k0`, `gn` the output Hessian
    /// (`OutputHessian`), every derivative output times `scale`.
    LossParams for Family::Loss, {
        n: u32, k: u32, loss: u32, act: u32,
        a_off: u32, t_off: u32, r_off: u32, rl_off: u32,
        d_off: u32, y_off: u32, batch: u32, k0: u32,
        gn: u32, scale: f32,
    }
}

kernel_params! {
    /// `ReduceParams` of reduce.wgsl: column sums of (batch, rows, cols) blocks.
    ReduceParams for Family::Reduce, {
        rows: u32, cols: u32, src_off: u32, src_rs: u32,
        src_bs: u32, dst_off: u32, dst_bs: u32, accumulate: u32,
        scale: f32,
    }
}

kernel_params! {
    /// `RopParams` of rop.wgsl: `count` = batch·nw entries of a layer of width `w`
    /// (nw = n·w per vector), the offsets of each binding, V's batch stride `v_bs`.
    RopParams for Family::Rop, {
        count: u32, nw: u32, w: u32, store: u32,
        d_off: u32, ew_off: u32, prod_off: u32, ra_off: u32,
        rz_off: u32, rd_off: u32, v_off: u32, v_bs: u32,
    }
}

kernel_params! {
    /// `DiagParams` of diag_hessian.wgsl (offsets in floats); the fields a kernel does
    /// not read stay at their defaults.
    DiagParams for Family::DiagHessian, {
        count: u32, batch: u32, d_off: u32, ew_off: u32,
        prod_off: u32, src_off: u32, dst_off: u32, sign: f32,
        acc: u32, n: u32, w: u32, fan_out: u32,
        j0: u32,
    }
}

kernel_params! {
    /// `OuterParams` of outer_product.wgsl: factor rows B of one layer.
    OuterParams for Family::OuterProduct, {
        count: u32, n: u32, out: u32, fan_in: u32,
        s_off: u32, z_off: u32, z_rs: u32, w_total: u32,
        w_off: u32, b_off: u32,
    }
}

kernel_params! {
    /// `UpdateParams` of update.wgsl: θ-shaped (W = `w`) rows, or a layer's unit
    /// products (`nw`, `w_off`, `fan_in`, `fan_out`, `mode`), or an optimizer's step
    /// (`rate` … `flags`: its constants for one update, update.wgsl's header names them
    /// per kernel).
    UpdateParams for Family::Update, {
        count: u32, w: u32, d_off: u32, s_off: u32,
        s_bs: u32, col0: u32, alpha: f32, nw: u32,
        w_off: u32, fan_in: u32, fan_out: u32, mode: u32,
        rate: f32, k1: f32, k1c: f32, k2: f32,
        k2c: f32, bias2: f32, shrink: f32, eps: f32,
        l2: f32, flags: u32,
    }
}

kernel_params! {
    /// `KfacParams` of kfac.wgsl: Monte-Carlo output columns (`n` rows of `k` outputs,
    /// `samples` draws per row from `g0`, `row0` the slice's first row in the draws,
    /// times `scale`) and the per-sample vectors of one layer (`per` rows per sample).
    KfacParams for Family::Kfac, {
        count: u32, n: u32, k: u32, loss: u32,
        act: u32, a_off: u32, t_off: u32, samples: u32,
        g0: u32, d_off: u32, scale: f32, fan_out: u32,
        fan_in: u32, s_off: u32, z_off: u32, z_rs: u32,
        w_total: u32, w_off: u32, b_off: u32, per: u32,
        row0: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, type) of every field of `struct name { … }` in `wgsl`, or None without one.
    fn wgsl_struct_fields(wgsl: &str, name: &str) -> Option<Vec<(String, String)>> {
        let start = wgsl.find(&format!("struct {name} {{"))?;
        let body = &wgsl[start..];
        let body = &body[body.find('{')? + 1..body.find('}')?];
        let fields = body
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (field, ty) = f.split_once(':').unwrap_or((f, ""));
                (field.trim().to_string(), ty.trim().to_string())
            })
            .collect();
        Some(fields)
    }

    /// The struct type of the family's `var<uniform> p`.
    fn uniform_struct_name(wgsl: &str) -> Option<&str> {
        let at = wgsl.find("var<uniform> p:")? + "var<uniform> p:".len();
        let rest = wgsl[at..].trim_start();
        rest.split(|c: char| c == ';' || c.is_whitespace()).next()
    }

    /// P mirrors the struct its family's WGSL file binds as `p`: same name, the same
    /// fields in the same order with the same types, and the size WGSL gives it rounded
    /// up to 16 bytes. Returns the family checked.
    fn check<P: KernelParams>() -> Family {
        let wgsl = P::FAMILY.file();
        let file = P::FAMILY.name();
        assert_eq!(
            uniform_struct_name(wgsl),
            Some(P::WGSL_NAME),
            "{file}.wgsl binds another struct as its uniform parameters"
        );
        let fields = wgsl_struct_fields(wgsl, P::WGSL_NAME)
            .unwrap_or_else(|| panic!("{file}.wgsl declares no struct {}", P::WGSL_NAME));
        let rust: Vec<(String, String)> = P::FIELDS
            .iter()
            .map(|&(f, t)| (f.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            fields,
            rust,
            "{} of {file}.wgsl and of src/gpu/params.rs differ",
            P::WGSL_NAME
        );
        let wgsl_bytes = 4 * fields.len();
        assert_eq!(
            std::mem::size_of::<P>(),
            wgsl_bytes.next_multiple_of(16),
            "{}: {} WGSL fields ({wgsl_bytes} bytes) but {} Rust bytes",
            P::WGSL_NAME,
            fields.len(),
            std::mem::size_of::<P>()
        );
        P::FAMILY
    }

    #[test]
    fn every_params_struct_mirrors_its_wgsl_struct() {
        let checked = [
            check::<MatmulParams>(),
            check::<ActParams>(),
            check::<LossParams>(),
            check::<ReduceParams>(),
            check::<RopParams>(),
            check::<DiagParams>(),
            check::<OuterParams>(),
            check::<UpdateParams>(),
            check::<KfacParams>(),
        ];
        for family in Family::ALL {
            assert!(
                checked.contains(&family),
                "{}.wgsl has no params struct checked here",
                family.name()
            );
        }
    }

    /// The parser and the comparison catch a drifted struct (a renamed, moved or
    /// missing field), not only a missing one.
    #[test]
    fn a_drifted_struct_is_told_apart() {
        let wgsl = "struct ReduceParams {\n    rows: u32, cols: u32,\n    scale: f32,\n}";
        let fields = wgsl_struct_fields(wgsl, "ReduceParams").unwrap();
        assert_eq!(
            fields,
            [("rows", "u32"), ("cols", "u32"), ("scale", "f32")]
                .map(|(f, t)| (f.to_string(), t.to_string()))
        );
        let rust: Vec<_> = ReduceParams::FIELDS.iter().map(|&(f, _)| f).collect();
        let parsed: Vec<_> = fields.iter().map(|(f, _)| f.as_str()).collect();
        assert_ne!(rust, parsed);
        assert_eq!(
            uniform_struct_name("@group(1) @binding(0) var<uniform> p: ActParams;"),
            Some("ActParams")
        );
    }

    #[test]
    fn params_upload_as_their_fields_in_order() {
        let p = ReduceParams {
            rows: 3,
            cols: 5,
            scale: 0.5,
            ..Default::default()
        };
        let words: &[u32] = bytemuck::cast_slice(bytemuck::bytes_of(&p));
        assert_eq!(words.len(), 12);
        assert_eq!(&words[..3], &[3, 5, 0]);
        assert_eq!(words[8], 0.5f32.to_bits());
        assert!(words[9..].iter().all(|&w| w == 0));
    }
}
