//! The one matrix product of the fast CPU engine: C (+)= α·op(A)·op(B) on
//! row-major (or strided) slices through faer's GEMM, single-threaded inside a
//! part of a data-parallel operation, else multi-threaded when big enough.
//! Transposes are strides (faer views), never copies.

use super::real::Real;
use faer::{Accum, MatMut, MatRef, Par};

/// A row-major (rows, cols) operand whose rows start `row_stride` apart,
/// optionally read transposed.
#[derive(Clone, Copy)]
pub struct Operand<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub transposed: bool,
}

/// `data` as a row-major (rows, cols) matrix.
pub fn mat<T>(data: &[T], rows: usize, cols: usize) -> Operand<'_, T> {
    mat_strided(data, rows, cols, cols)
}

/// `data` as a (rows, cols) matrix whose rows start `row_stride` ≥ cols
/// apart, e.g. a range of columns of a wider row-major matrix.
pub fn mat_strided<T>(data: &[T], rows: usize, cols: usize, row_stride: usize) -> Operand<'_, T> {
    let len = if rows == 0 {
        0
    } else {
        (rows - 1) * row_stride + cols
    };
    Operand {
        data: &data[..len],
        rows,
        cols,
        row_stride,
        transposed: false,
    }
}

impl<'a, T> Operand<'a, T> {
    /// The same storage read as its transpose (cols, rows): a stride swap.
    pub fn t(self) -> Operand<'a, T> {
        Operand {
            transposed: !self.transposed,
            ..self
        }
    }
    fn view(&self) -> MatRef<'a, T> {
        let m = MatRef::from_row_major_slice_with_stride(
            self.data,
            self.rows,
            self.cols,
            self.row_stride,
        );
        if self.transposed {
            m.transpose()
        } else {
            m
        }
    }
}

/// Multiply-adds below which a product runs on one thread: for the small
/// products of S (e.g. (1797, 50)·(50, 10)) waking the other threads costs more
/// than it saves.
pub const PARALLEL_MIN_MACS: usize = 1 << 18;

/// How a product of m·n·k multiply-adds runs: faer's rayon parallelism on
/// every core, or one thread for small products and inside one part of a
/// data-parallel operation (`par::sequential`).
pub fn parallelism(macs: usize) -> Par {
    if macs < PARALLEL_MIN_MACS || super::par::in_sequential() {
        Par::Seq
    } else {
        Par::rayon(0)
    }
}

/// dst (m, n) row-major ← α·A·B (`accumulate` false) or dst += α·A·B (true).
/// A is (m, k) and B is (k, n) after their transposes.
pub fn gemm<T: Real>(dst: &mut [T], a: Operand<T>, b: Operand<T>, alpha: T, accumulate: bool) {
    gemm_into(dst, Layout::RowMajor, a, b, alpha, accumulate)
}

/// How a (m, n) result is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    RowMajor,
    /// Column-major: the slice holds the transpose as a row-major (n, m).
    ColMajor,
}

impl Layout {
    /// The offset of entry (i, j) of an (m, n) matrix in this layout.
    #[inline]
    pub fn at(self, i: usize, j: usize, m: usize, n: usize) -> usize {
        match self {
            Layout::RowMajor => i * n + j,
            Layout::ColMajor => j * m + i,
        }
    }
}

/// A sum over samples Aᵀ B (A = (c, m), B = (c, n), row-major) into a result
/// (m, n): which layout to store it in, and whether B = X should be read from
/// the engine's column-major copy. faer's speed depends on both; measured
/// (AVX-512, f32, GFLOP/s; one thread as inside a part, or both cores):
/// - B = X, from the column-major copy into a column-major result, unless the
///   product is small: one thread (512, 1250)·(1250, 784) 188 against 121
///   from the row-major X, (128, 1250)·(1250, 784) 170 against 119, L's block
///   (8192, 256)·(256, 784) 166 against 145; both cores (128, 10000)·
///   (10000, 784) 284–298 against 230–244. Small (S's (50, 225)·(225, 64)):
///   the row-major X, by the rule below, 175 against 144–153.
/// - Otherwise column-major when m ≥ n, row-major when m < n: (2048, 1024)·
///   (1024, 784) 236–250 against 170; (512, 1024)·(1024, 8192) 168 against
///   214–221; one thread (10, 1250)·(1250, 512) 49 against 80, (50, 225)·
///   (225, 10) 94 against 58.
pub fn sum_plan(m: usize, n: usize, samples: usize, b_is_input: bool) -> (Layout, bool) {
    const SMALL_MACS: usize = 1 << 20;
    let big = m * n * samples >= SMALL_MACS || !super::par::in_sequential();
    let from_columns = b_is_input && big;
    let layout = if from_columns || m >= n {
        Layout::ColMajor
    } else {
        Layout::RowMajor
    };
    (layout, from_columns)
}

/// dst (m, n) in `layout` ← α·A·B (or +=).
pub fn gemm_into<T: Real>(
    dst: &mut [T],
    layout: Layout,
    a: Operand<T>,
    b: Operand<T>,
    alpha: T,
    accumulate: bool,
) {
    let (a, b) = (a.view(), b.view());
    let (m, n, k) = (a.nrows(), b.ncols(), a.ncols());
    debug_assert_eq!(a.ncols(), b.nrows());
    let dst = match layout {
        Layout::RowMajor => MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n),
        Layout::ColMajor => MatMut::from_column_major_slice_mut(&mut dst[..m * n], m, n),
    };
    let beta = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    faer::linalg::matmul::matmul(dst, beta, a, b, alpha, parallelism(m * n * k));
    clear_upper_vector_state();
}

/// The upper triangle (with the diagonal) of dst (n, n) row-major ← α·A·B
/// (or +=), for a product known to be symmetric: half the multiply-adds. The
/// strict lower triangle is left as it was.
pub fn gemm_upper<T: Real>(
    dst: &mut [T],
    a: Operand<T>,
    b: Operand<T>,
    alpha: T,
    accumulate: bool,
) {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let (a, b) = (a.view(), b.view());
    let (n, k) = (a.nrows(), a.ncols());
    debug_assert_eq!(b.ncols(), n);
    let dst = MatMut::from_row_major_slice_mut(&mut dst[..n * n], n, n);
    let beta = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    let structure = (BlockStructure::TriangularUpper, BlockStructure::Rectangular);
    matmul(
        dst,
        structure.0,
        beta,
        a,
        structure.1,
        b,
        structure.1,
        alpha,
        parallelism(n * n * k / 2),
    );
    clear_upper_vector_state();
}

/// faer's AVX-512 kernels can return with the upper halves of the vector
/// registers dirty; every SSE instruction after that (glibc's `exp`, which the
/// elementwise passes call for each sigmoid) then pays a state-transition
/// penalty. Measured here: Hessian-free steps on digits ran 8× slower once a
/// second engine's small products had run in between. `vzeroupper` clears the
/// state; it is what compilers emit after their own AVX code.
#[cfg(target_arch = "x86_64")]
pub(super) fn clear_upper_vector_state() {
    #[target_feature(enable = "avx")]
    unsafe fn zero_upper() {
        std::arch::x86_64::_mm256_zeroupper()
    }
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is available, so `vzeroupper` is a valid instruction.
        unsafe { zero_upper() }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn clear_upper_vector_state() {}
