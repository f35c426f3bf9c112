//! Row-parallel elementwise work on rayon's pool (the pool faer's GEMM runs on).
//!
//! The elementwise parts of a pass (bias adds, h, h′, h″, the per-sample loss
//! and output curvature, the R-pass products) are split into tasks of whole
//! rows. The split depends on the shape only — never on the number of
//! threads — and no task reads what another writes, so results are the same
//! bits on every run and every machine; sums over rows are formed per row and
//! added in row order by the caller (or by a GEMM with a ones vector).
//!
//! A pass with a single task runs on the calling thread: handing it to the
//! pool would cost more than it saves on S's small chunks.

use super::gemm::clear_upper_vector_state;
use rayon::prelude::*;

/// Elements (or per-row work units) per task: large enough that a task
/// outweighs the pool's hand-off (microseconds), small enough for two or more
/// tasks per core on M and L.
pub const TASK_ELEMENTS: usize = 1 << 15;

/// Rows per task for rows of `width` elements.
pub fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMENTS / width.max(1)).max(1)
}

/// Runs `body(first_row, rows)` on consecutive blocks of `rows_per` rows of
/// `width` elements of `a` (whose length is a multiple of `width`).
pub fn rows1<T: Send>(
    a: &mut [T],
    width: usize,
    rows_per: usize,
    body: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = (rows_per * width).max(1);
    if a.len() <= chunk || in_sequential() {
        body(0, a);
        return;
    }
    a.par_chunks_mut(chunk).enumerate().for_each(|(i, a)| {
        clear_upper_vector_state();
        body(i * rows_per, a)
    });
}

/// [`rows1`] over two buffers of the same shape.
pub fn rows2<T: Send>(
    a: &mut [T],
    b: &mut [T],
    width: usize,
    rows_per: usize,
    body: impl Fn(usize, &mut [T], &mut [T]) + Sync + Send,
) {
    debug_assert_eq!(a.len(), b.len());
    let chunk = (rows_per * width).max(1);
    if a.len() <= chunk || in_sequential() {
        body(0, a, b);
        return;
    }
    a.par_chunks_mut(chunk)
        .zip(b.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(i, (a, b))| {
            clear_upper_vector_state();
            body(i * rows_per, a, b)
        });
}

/// [`rows1`] over four buffers of the same shape.
pub fn rows4<T: Send>(
    bufs: [&mut [T]; 4],
    width: usize,
    rows_per: usize,
    body: impl Fn(usize, &mut [T], &mut [T], &mut [T], &mut [T]) + Sync + Send,
) {
    let [a, b, c, d] = bufs;
    debug_assert!(b.len() == a.len() && c.len() == a.len() && d.len() == a.len());
    let chunk = (rows_per * width).max(1);
    if a.len() <= chunk || in_sequential() {
        body(0, a, b, c, d);
        return;
    }
    a.par_chunks_mut(chunk)
        .zip(b.par_chunks_mut(chunk))
        .zip(c.par_chunks_mut(chunk))
        .zip(d.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(i, (((a, b), c), d))| {
            clear_upper_vector_state();
            body(i * rows_per, a, b, c, d)
        });
}

thread_local! {
    /// Set while this thread runs one part of a data-parallel operation: its
    /// GEMMs and elementwise passes then stay on this thread.
    static SEQUENTIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Per-thread f64 rows for the loss formulas (three rows of K).
    static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with everything it starts kept on the calling thread.
pub fn sequential<R>(f: impl FnOnce() -> R) -> R {
    let before = SEQUENTIAL.with(|s| s.replace(true));
    clear_upper_vector_state();
    let r = f();
    SEQUENTIAL.with(|s| s.set(before));
    r
}

/// Whether the calling thread is inside [`sequential`].
pub fn in_sequential() -> bool {
    SEQUENTIAL.with(|s| s.get())
}

/// Calls `f` with three f64 scratch rows of `len` owned by this thread
/// (allocated on a thread's first use, reused afterwards).
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f64], &mut [f64], &mut [f64]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut v = cell.borrow_mut();
        if v.len() < 3 * len {
            v.resize(3 * len, 0.0);
        }
        let (a, rest) = v.split_at_mut(len);
        let (b, rest) = rest.split_at_mut(len);
        f(a, b, &mut rest[..len])
    })
}
