//! The one matrix product of the fast CPU engine: C (+)= α·op(A)·op(B) on
//! row-major slices through faer's multi-threaded GEMM. Transposes are strides
//! (faer views), never copies.

use super::real::Real;
use faer::{Accum, MatMut, MatRef, Par};

/// A row-major (rows, cols) operand, optionally read transposed.
#[derive(Clone, Copy)]
pub struct Operand<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

/// `data` as a row-major (rows, cols) matrix.
pub fn mat<T>(data: &[T], rows: usize, cols: usize) -> Operand<'_, T> {
    Operand {
        data: &data[..rows * cols],
        rows,
        cols,
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
        let m = MatRef::from_row_major_slice(self.data, self.rows, self.cols);
        if self.transposed {
            m.transpose()
        } else {
            m
        }
    }
}

/// How products run: faer's rayon parallelism on every core.
pub fn parallelism() -> Par {
    Par::rayon(0)
}

/// dst (m, n) row-major ← α·A·B (`accumulate` false) or dst += α·A·B (true).
/// A is (m, k) and B is (k, n) after their transposes.
pub fn gemm<T: Real>(dst: &mut [T], a: Operand<T>, b: Operand<T>, alpha: T, accumulate: bool) {
    let (a, b) = (a.view(), b.view());
    let (m, n) = (a.nrows(), b.ncols());
    debug_assert_eq!(a.ncols(), b.nrows());
    let dst = MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
    let beta = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    faer::linalg::matmul::matmul(dst, beta, a, b, alpha, parallelism());
}
