//! The shapes behind the full H and G by Kronecker sums (`full.rs`): which
//! per-sample factors and sums each layer and pair of layers needs, their sizes
//! and the packed upper-triangle indexing of the symmetric blocks — and from
//! them the algorithm's FLOP count, which `bench` reports.

use crate::engine::Kind;
use crate::model::LayerLayout;

/// Gram layers: the entries of M run in this many groups in parallel, each
/// with its own (cap, e) scratch of weighted inputs (a fixed count: the same
/// bits on any number of threads).
pub(super) const GRAM_GROUPS: usize = 8;

/// n(n + 1)/2, the entries of a packed upper triangle.
pub(super) fn packed_len(n: usize) -> usize {
    n * (n + 1) / 2
}

/// The index of (i, j), i ≤ j, in the row-major packed upper triangle of an n×n.
pub(super) fn packed_at(i: usize, j: usize, n: usize) -> usize {
    i * n - i * i.saturating_sub(1) / 2 + j - i
}

/// The shapes of one network's full-matrix pass.
#[derive(Clone, Debug)]
pub(super) struct Shapes {
    pub out: Vec<usize>,
    pub inp: Vec<usize>,
    pub kind: Kind,
}

impl Shapes {
    pub fn new(layers: &[LayerLayout], kind: Kind) -> Shapes {
        Shapes {
            out: layers.iter().map(|l| l.fan_out).collect(),
            inp: layers.iter().map(|l| l.fan_in).collect(),
            kind,
        }
    }
    pub fn depth(&self) -> usize {
        self.out.len()
    }
    /// in_l + 1: layer l's extended input z̃[l].
    pub fn ext(&self, l: usize) -> usize {
        self.inp[l] + 1
    }
    /// Whether layer l's diagonal block is formed by weighted Gram matrices
    /// (see the module header): when z̃z̃ᵀ per sample (pk(e) ≈ e²/2) outweighs
    /// the scratch of the Gram path (e per entry of packed M).
    pub fn gram(&self, l: usize) -> bool {
        2 * packed_len(self.out[l]) < self.ext(l)
    }
    /// Entries of one row of layer l's diagonal-block sum: packed z̃z̃ᵀ, or a
    /// full e × e Gram matrix (upper triangle used).
    pub fn acc_row(&self, l: usize) -> usize {
        if self.gram(l) {
            self.ext(l) * self.ext(l)
        } else {
            packed_len(self.ext(l))
        }
    }
    /// The layer pairs (l, m < l) in order: (1,0), (2,0), (2,1), …
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        (0..self.depth())
            .flat_map(|l| (0..l).map(move |m| (l, m)))
            .collect()
    }
    /// The index of pair (l, m < l) in [`Self::pairs`].
    pub fn pair(l: usize, m: usize) -> usize {
        l * (l - 1) / 2 + m
    }
    /// Whether the pairs have the δ·C term: the exact H only.
    pub fn has_c(&self) -> bool {
        self.kind == Kind::Hessian
    }
    /// Whether pair (l, m) needs J_{l−1,m} as a dense per-sample factor (m < l − 1).
    pub fn has_j(&self, l: usize, m: usize) -> bool {
        self.kind == Kind::Hessian && m + 1 < l
    }
    /// Columns of the δ·C sum of pair (l, m): (a, b) when C is diagonal, (a, j, b) otherwise.
    pub fn c_cols(&self, l: usize, m: usize) -> usize {
        if !self.has_c() {
            0
        } else if m + 1 == l {
            self.inp[l] * self.ext(m)
        } else {
            self.inp[l] * self.out[m] * self.ext(m)
        }
    }
    /// Entries per sample of every stack of a chunk.
    pub fn per_sample(&self) -> usize {
        let layers: usize = (0..self.depth())
            .map(|l| {
                let (o, i) = (self.out[l], self.inp[l]);
                let right = if self.gram(l) {
                    (GRAM_GROUPS + 1) * self.ext(l)
                } else {
                    packed_len(self.ext(l))
                };
                o * o + packed_len(o) + right + if l > 0 { i * o } else { 0 }
            })
            .sum();
        let pairs: usize = self
            .pairs()
            .into_iter()
            .map(|(l, m)| {
                let j = if self.has_j(l, m) {
                    self.inp[l] * self.out[m]
                } else {
                    0
                };
                self.out[l] * self.out[m] + j + self.ext(l) * self.ext(m) + self.c_cols(l, m)
            })
            .sum();
        layers + pairs
    }
}

/// The FLOPs of the full H or G (`kind`) by this algorithm for N = `n`
/// samples (2 per multiply-add, products only; bench's convention):
/// forward (+ backward for H), the per-sample factors, and the sums.
pub fn flops(layers: &[LayerLayout], n: usize, kind: Kind) -> f64 {
    let s = Shapes::new(layers, kind);
    let n = n as f64;
    let f = |x: usize| 2.0 * n * x as f64;
    let p: usize = layers.iter().map(|l| l.fan_in * l.fan_out).sum();
    let p1 = p - layers[0].fan_in * layers[0].fan_out;
    let mut total = f(p) + if kind == Kind::Hessian { f(p1) } else { 0.0 };
    for l in 0..s.depth() {
        let (o, i) = (s.out[l], s.inp[l]);
        if l > 0 {
            total += f(o * o * i) + f(i * i * o); // B = M_l W_l, Bᵀ W_l
        }
        total += f(packed_len(o) * packed_len(s.ext(l)));
    }
    for (l, m) in s.pairs() {
        if m + 1 < l {
            total += f(s.out[l] * s.out[m + 1] * s.inp[m + 1]); // A_lm
        }
        if s.has_j(l, m) && m + 2 < l {
            total += f(s.inp[l] * s.out[m + 1] * s.inp[m + 1]); // J_{l−1,m}
        }
        total += f(s.out[l] * s.out[m] * s.ext(l) * s.ext(m));
        total += f(s.out[l] * s.c_cols(l, m));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_indices_enumerate_the_upper_triangle_in_row_order() {
        for n in [1, 2, 5, 9] {
            let mut expected = 0;
            for i in 0..n {
                for j in i..n {
                    assert_eq!(packed_at(i, j, n), expected, "n = {n}, ({i}, {j})");
                    expected += 1;
                }
            }
            assert_eq!(expected, packed_len(n));
        }
    }
}
