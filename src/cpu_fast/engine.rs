//! `FastCpuEngine<T>`: every curvature operation on the CPU in f32 or f64 with
//! faer's multi-threaded GEMM, the same algorithms as the f64 reference
//! (`cpu/`), which stays the specification this engine is parity-tested
//! against (`tests/parity_cpu_fast.rs`).
//!
//! Work is done in chunks of samples so that memory stays bounded; each
//! chunk's buffers live in a workspace allocated once per (engine, kind of
//! operation, block width) and reused by every later call: no allocation
//! inside an operation apart from its result.

use super::block::Block;
use super::diagonal::{DiagBuffers, Kind};
use super::net::Net;
use super::outer;
use super::passes::{
    accumulate_gradient, backward, forward, loss_sum, prepare_output_curvature, Base, Keep,
};
use super::real::Real;
use crate::cpu_engine::check_data_shape;
use crate::curvature::{check_args, Curvature};
use crate::error::Result;
use crate::model::{LayerLayout, Mlp};
use ndarray::{s, Array2, ArrayView2};
use std::ops::Range;

/// Stacked rows (samples × vectors) per chunk of a block pass: big enough for
/// the GEMMs to run near peak, small enough for L's (rows, 512) buffers.
pub const BLOCK_ROWS: usize = 16384;
/// Samples per chunk of the loss and gradient passes.
pub const PLAIN_ROWS: usize = 4096;
/// Elements of factor buffers per chunk of the diagonals and the outer product.
pub const FACTOR_BUDGET: usize = 1 << 22;
/// Columns of H (or G) per block pass of the full matrices: wide blocks make
/// each layer's products large GEMMs (measured on S: see README, Benchmarks).
pub const HESSIAN_BLOCK: usize = 128;

/// What a workspace is for (its buffers differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Plain,
    Block(usize),
    Diag(Kind),
    Outer,
}

struct Workspace<T> {
    key: Key,
    base: Base<T>,
    block: Option<Block<T>>,
    diag: Option<DiagBuffers<T>>,
    /// Outer product: B (cap·K, W) and the (W, W) accumulator.
    b: Vec<T>,
    acc: Vec<T>,
}

/// The fast CPU device bound to one model and data set, in precision T.
pub struct FastCpuEngine<T: Real> {
    mlp: Mlp,
    layers: Vec<LayerLayout>,
    x: Vec<T>,   // (N, D) row-major
    t: Vec<f64>, // (N, K) row-major
    rows: usize,
    theta: Vec<T>, // θ (W) in precision T, converted per call
    spaces: Vec<Workspace<T>>,
    /// Scratch (k_cap, W) for the full matrices' unit vectors and columns.
    units: Array2<f64>,
    columns: Vec<f64>,
    /// An upper bound on samples per chunk (tests force several chunks with it).
    max_chunk: usize,
}

impl<T: Real> FastCpuEngine<T> {
    /// Binds `mlp` to inputs `x` (N, D) and targets `t` (N, K).
    pub fn new(mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<FastCpuEngine<T>> {
        check_data_shape(mlp, x, t)?;
        Ok(FastCpuEngine {
            mlp: mlp.clone(),
            layers: mlp.layout(),
            x: x.iter().map(|&v| T::from_f64(f64::from(v))).collect(),
            t: t.iter().map(|&v| f64::from(v)).collect(),
            rows: x.nrows(),
            theta: vec![T::zero(); mlp.num_params()],
            spaces: Vec::new(),
            units: Array2::zeros((0, 0)),
            columns: Vec::new(),
            max_chunk: usize::MAX,
        })
    }

    /// The same engine processing at most `samples` samples per chunk (≥ 1),
    /// e.g. to exercise the accumulation across chunks on a small data set.
    pub fn with_max_chunk(mut self, samples: usize) -> FastCpuEngine<T> {
        self.max_chunk = samples.max(1);
        self.spaces.clear();
        self
    }

    /// `f32` or `f64`.
    pub fn precision(&self) -> &'static str {
        T::NAME
    }

    /// Samples per chunk for a workspace of this key.
    fn capacity(&self, key: Key) -> usize {
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let cap = match key {
            Key::Plain => PLAIN_ROWS,
            Key::Block(k) => BLOCK_ROWS / k.max(1),
            Key::Diag(kind) => FACTOR_BUDGET / DiagBuffers::per_sample(&net, kind),
            Key::Outer => FACTOR_BUDGET / (self.mlp.num_outputs() * self.mlp.num_params()).max(1),
        };
        cap.clamp(1, self.rows.min(self.max_chunk))
    }

    /// The index of the workspace for `key`, allocating it on first use.
    fn workspace(&mut self, key: Key) -> usize {
        if let Some(i) = self.spaces.iter().position(|w| w.key == key) {
            return i;
        }
        let cap = self.capacity(key);
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let (w, kk) = (self.mlp.num_params(), self.mlp.num_outputs());
        let ws = Workspace {
            key,
            base: Base::new(&net, cap),
            block: match key {
                Key::Block(k) => Some(Block::new(&net, cap, k)),
                _ => None,
            },
            diag: match key {
                Key::Diag(kind) => Some(DiagBuffers::new(&net, cap, kind)),
                Key::Outer => Some(DiagBuffers::new(&net, cap, Kind::GaussNewton)),
                _ => None,
            },
            b: if key == Key::Outer {
                vec![T::zero(); cap * kk * w]
            } else {
                Vec::new()
            },
            acc: if key == Key::Outer {
                vec![T::zero(); w * w]
            } else {
                Vec::new()
            },
        };
        self.spaces.push(ws);
        self.spaces.len() - 1
    }

    /// Checks the arguments and converts θ to T.
    fn begin(&mut self, theta: &[f64], rows: &Range<usize>, cols: Option<usize>) -> Result<()> {
        check_args(&self.mlp, self.rows, theta, rows, cols)?;
        for (d, v) in self.theta.iter_mut().zip(theta) {
            *d = T::from_f64(*v);
        }
        Ok(())
    }

    /// Runs `body` on every chunk of `rows` with the workspace `ws`:
    /// (net, x chunk (c, D), t chunk (c, K), c, workspace, first chunk, 1/|rows|).
    fn chunks(
        &mut self,
        rows: &Range<usize>,
        ws: usize,
        mut body: impl FnMut(&Net<T>, &[T], &[f64], usize, &mut Workspace<T>, bool, f64),
    ) {
        let (d, kk) = (self.mlp.num_inputs(), self.mlp.num_outputs());
        let inv_n = 1.0 / rows.len() as f64;
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        let space = &mut self.spaces[ws];
        let cap = space.base.cap;
        let mut start = rows.start;
        while start < rows.end {
            let c = cap.min(rows.end - start);
            let x = &self.x[start * d..(start + c) * d];
            let t = &self.t[start * kk..(start + c) * kk];
            body(&net, x, t, c, space, start == rows.start, inv_n);
            start += c;
        }
    }

    /// H V or G V for V (k, W) into `out` (k, W), with the block workspace of width `k_cap` ≥ k.
    fn block_into(
        &mut self,
        rows: &Range<usize>,
        v: ArrayView2<f64>,
        gauss_newton: bool,
        k_cap: usize,
        out: &mut [f64],
    ) {
        let k = v.nrows();
        let ws = self.workspace(Key::Block(k_cap));
        {
            let net = Net {
                mlp: &self.mlp,
                layers: &self.layers,
                theta: &self.theta,
            };
            if let Some(block) = self.spaces[ws].block.as_mut() {
                block.load_vectors(&net, v);
            }
        }
        let keep = if gauss_newton {
            Keep::FirstDerivative
        } else {
            Keep::SecondDerivative
        };
        self.chunks(rows, ws, |net, x, t, c, space, first, inv_n| {
            forward(net, x, c, &mut space.base, keep);
            if !gauss_newton {
                backward(net, t, c, &mut space.base, inv_n);
            }
            prepare_output_curvature(net, t, c, &mut space.base, gauss_newton);
            if let Some(block) = space.block.as_mut() {
                block.chunk(net, x, c, k, &space.base, gauss_newton, inv_n, first);
            }
        });
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        if let Some(block) = self.spaces[ws].block.as_ref() {
            block.finish(&net, k, gauss_newton, v, out);
        }
    }

    fn block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
        gauss_newton: bool,
    ) -> Result<Array2<f64>> {
        self.begin(theta, &rows, Some(v.ncols()))?;
        let mut out = Array2::zeros(v.dim());
        if v.nrows() == 0 {
            return Ok(out);
        }
        let slice = out
            .as_slice_mut()
            .ok_or_else(|| crate::error::Error::Shape("result not contiguous".into()))?;
        self.block_into(&rows, v, gauss_newton, v.nrows(), slice);
        Ok(out)
    }

    /// The full H or G (W, W): column j is M e_j, HESSIAN_BLOCK columns per pass.
    fn full(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        gauss_newton: bool,
    ) -> Result<Array2<f64>> {
        self.begin(theta, &rows, None)?;
        let w = self.mlp.num_params();
        let kb = HESSIAN_BLOCK.min(w);
        if self.units.dim() != (kb, w) {
            self.units = Array2::zeros((kb, w));
            self.columns = vec![0.0; kb * w];
        }
        let mut m = Array2::zeros((w, w));
        let mut units = std::mem::take(&mut self.units);
        let mut columns = std::mem::take(&mut self.columns);
        let mut start = 0;
        while start < w {
            let k = kb.min(w - start);
            units.fill(0.0);
            for i in 0..k {
                units[[i, start + i]] = 1.0;
            }
            let v = units.slice(s![..k, ..]);
            self.block_into(&rows, v, gauss_newton, kb, &mut columns[..k * w]);
            for i in 0..k {
                for (r, value) in columns[i * w..(i + 1) * w].iter().enumerate() {
                    m[[r, start + i]] = *value;
                }
            }
            start += k;
        }
        self.units = units;
        self.columns = columns;
        Ok(m)
    }

    fn diagonal(&mut self, theta: &[f64], rows: Range<usize>, kind: Kind) -> Result<Vec<f64>> {
        self.begin(theta, &rows, None)?;
        let ws = self.workspace(Key::Diag(kind));
        {
            let net = Net {
                mlp: &self.mlp,
                layers: &self.layers,
                theta: &self.theta,
            };
            if let Some(diag) = self.spaces[ws].diag.as_mut() {
                diag.load_weights(&net);
            }
        }
        let keep = if kind == Kind::GaussNewton {
            Keep::FirstDerivative
        } else {
            Keep::SecondDerivative
        };
        self.chunks(&rows, ws, |net, x, t, c, space, first, inv_n| {
            forward(net, x, c, &mut space.base, keep);
            if kind != Kind::GaussNewton {
                backward(net, t, c, &mut space.base, inv_n);
            }
            prepare_output_curvature(net, t, c, &mut space.base, kind == Kind::GaussNewton);
            if let Some(diag) = space.diag.as_mut() {
                diag.chunk(net, x, c, &space.base, kind, inv_n, first);
            }
        });
        let mut out = vec![0.0; self.mlp.num_params()];
        let net = Net {
            mlp: &self.mlp,
            layers: &self.layers,
            theta: &self.theta,
        };
        if let Some(diag) = self.spaces[ws].diag.as_ref() {
            diag.finish(&net, &mut out);
        }
        Ok(out)
    }
}

impl<T: Real> Curvature for FastCpuEngine<T> {
    fn mlp(&self) -> &Mlp {
        &self.mlp
    }
    fn num_rows(&self) -> usize {
        self.rows
    }
    fn loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        self.begin(theta, &rows, None)?;
        let ws = self.workspace(Key::Plain);
        let mut sum = 0.0;
        self.chunks(&rows, ws, |net, x, t, c, space, _, _| {
            forward(net, x, c, &mut space.base, Keep::Values);
            sum += loss_sum(net, t, c, &mut space.base);
        });
        Ok(sum / rows.len() as f64 + self.mlp.l2_penalty(theta))
    }
    fn loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        self.begin(theta, &rows, None)?;
        let ws = self.workspace(Key::Plain);
        let mut sum = 0.0;
        self.chunks(&rows, ws, |net, x, t, c, space, first, inv_n| {
            forward(net, x, c, &mut space.base, Keep::FirstDerivative);
            sum += loss_sum(net, t, c, &mut space.base);
            backward(net, t, c, &mut space.base, inv_n);
            accumulate_gradient(net, x, c, &mut space.base, first);
        });
        let mut grad = vec![0.0; theta.len()];
        let base = &self.spaces[ws].base;
        let l2 = self.mlp.l2();
        for (l, layer) in self.layers.iter().enumerate() {
            for ((g, v), th) in grad[layer.weights.clone()]
                .iter_mut()
                .zip(&base.gw[l])
                .zip(&theta[layer.weights.clone()])
            {
                *g = v.to_f64() + l2 * th;
            }
            for (g, v) in grad[layer.bias.clone()].iter_mut().zip(&base.gb[l]) {
                *g = v.to_f64();
            }
        }
        Ok((sum / rows.len() as f64 + self.mlp.l2_penalty(theta), grad))
    }
    fn outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.begin(theta, &rows, None)?;
        let ws = self.workspace(Key::Plain);
        let kk = self.mlp.num_outputs();
        let last = self.layers.len() - 1;
        let mut y = Array2::zeros((rows.len(), kk));
        let mut at = 0;
        self.chunks(&rows, ws, |net, x, _, c, space, _, _| {
            forward(net, x, c, &mut space.base, Keep::Values);
            for (i, v) in space.base.z[last][..c * kk].iter().enumerate() {
                y[[at + i / kk, i % kk]] = v.to_f64();
            }
            at += c;
        });
        Ok(y)
    }
    fn hvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.block(theta, rows, v, false)
    }
    fn gvp_block(
        &mut self,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        self.block(theta, rows, v, true)
    }
    fn hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.full(theta, rows, false)
    }
    fn ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.full(theta, rows, true)
    }
    fn diag_hessian(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.diagonal(theta, rows, Kind::Exact)
    }
    fn diag_ggn(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.diagonal(theta, rows, Kind::GaussNewton)
    }
    fn diag_becker_lecun(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Vec<f64>> {
        self.diagonal(theta, rows, Kind::BeckerLeCun)
    }
    fn outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        self.begin(theta, &rows, None)?;
        let ws = self.workspace(Key::Outer);
        {
            let net = Net {
                mlp: &self.mlp,
                layers: &self.layers,
                theta: &self.theta,
            };
            if let Some(diag) = self.spaces[ws].diag.as_mut() {
                diag.load_weights(&net);
            }
        }
        self.chunks(&rows, ws, |net, x, t, c, space, first, inv_n| {
            forward(net, x, c, &mut space.base, Keep::FirstDerivative);
            prepare_output_curvature(net, t, c, &mut space.base, true);
            if let Some(diag) = space.diag.as_mut() {
                diag.chunk(net, x, c, &space.base, Kind::GaussNewton, inv_n, first);
                outer::accumulate(
                    net,
                    x,
                    c,
                    &space.base,
                    diag,
                    &mut space.b,
                    &mut space.acc,
                    first,
                );
            }
        });
        let w = self.mlp.num_params();
        let mask = self.mlp.weight_mask();
        let acc = &self.spaces[ws].acc;
        let l2 = self.mlp.l2();
        Ok(Array2::from_shape_fn((w, w), |(i, j)| {
            let v = acc[i * w + j].to_f64();
            if i == j {
                v + l2 * mask[i]
            } else {
                v
            }
        }))
    }
}
