//! Classification metrics of predictive probabilities P (N, K) against labels:
//! accuracy, mean negative log-likelihood and the expected calibration error.

use ndarray::ArrayView2;

/// Bins of the expected calibration error (the usual 15, Guo et al. 2017).
pub const ECE_BINS: usize = 15;

/// Probabilities below this are clamped in the NLL so one confident mistake
/// costs −ln(10⁻¹²) ≈ 27.6 rather than ∞.
const MIN_PROB: f64 = 1e-12;

/// Accuracy, NLL and ECE of P (N, K) (rows sum to 1) against `labels` (N).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    pub accuracy: f64,
    /// The mean arg-max probability: below the accuracy means under-confident.
    pub confidence: f64,
    pub nll: f64,
    pub ece: f64,
}

/// The arg-max class and its probability of each row.
fn top(p: ArrayView2<f64>) -> Vec<(usize, f64)> {
    p.rows()
        .into_iter()
        .map(|r| {
            r.iter().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |b, (k, &v)| if v > b.1 { (k, v) } else { b },
            )
        })
        .collect()
}

/// ECE = Σ_b (|B_b|/N) |acc(B_b) − conf(B_b)| over [`ECE_BINS`] equal-width
/// confidence bins of the arg-max probability.
/// One sigmoid output (M, 1) is read as the two classes [1 − p, p].
pub fn calibration(p: ArrayView2<f64>, labels: &[usize]) -> Calibration {
    if p.ncols() == 1 {
        let two = ndarray::Array2::from_shape_fn((p.nrows(), 2), |(n, c)| {
            if c == 1 {
                p[[n, 0]]
            } else {
                1.0 - p[[n, 0]]
            }
        });
        return calibration(two.view(), labels);
    }
    let n = labels.len().max(1) as f64;
    let tops = top(p);
    let mut correct = 0usize;
    let mut nll = 0.0;
    let confidence = tops.iter().map(|t| t.1).sum::<f64>() / n;
    let mut bins = [(0usize, 0usize, 0.0f64); ECE_BINS]; // (count, correct, Σ confidence)
    for ((row, &(k, conf)), &label) in p.rows().into_iter().zip(&tops).zip(labels) {
        let hit = k == label;
        correct += usize::from(hit);
        nll -= row.get(label).copied().unwrap_or(0.0).max(MIN_PROB).ln();
        let b = ((conf * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += usize::from(hit);
        bins[b].2 += conf;
    }
    let ece = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(c, h, s)| (c as f64 / n) * (h as f64 / c as f64 - s / c as f64).abs())
        .sum();
    Calibration {
        accuracy: correct as f64 / n,
        confidence,
        nll: nll / n,
        ece,
    }
}
