//! L2-regularised logistic regression fitted the way scikit-learn's default
//! `LogisticRegression()` fits it (solver "lbfgs"):
//!
//! * classes are the sorted distinct training labels;
//! * two classes: one weight vector plus intercept, the second class is the
//!   positive one; more classes: one weight row plus intercept per class
//!   (softmax / multinomial, not one-vs-rest);
//! * objective = mean log-loss over the training rows
//!   + `1 / (2 * C * n) * ||W||^2`, the intercepts are not penalised;
//! * start from all zeros, minimise with [`super::lbfgs`] using scikit-learn's
//!   options (`gtol = tol`, `maxiter = max_iter`, `ftol = 64 eps`, 10 pairs,
//!   50 line-search evaluations);
//! * prediction: largest decision value (first one on ties); in the binary case
//!   the positive class when the decision value is strictly above zero.
//!
//! Parameters are laid out like scikit-learn's flattened vector: for the
//! multinomial case entry `j * K + k` is feature `j` (the intercept being
//! feature `d`) of class `k`, so inner products inside the optimiser add terms
//! in the same order.

use super::lbfgs::{minimize, LbfgsOptions, LbfgsStatus};
use super::MetricError;

/// Hyper-parameters (scikit-learn names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticParams {
    /// Inverse regularisation strength `C` (> 0).
    pub c: f64,
    /// Gradient tolerance `tol`.
    pub tol: f64,
    /// Iteration budget `max_iter`.
    pub max_iter: usize,
}

impl Default for LogisticParams {
    /// scikit-learn's defaults, which mteb keeps (`max_iter=100`).
    fn default() -> Self {
        LogisticParams {
            c: 1.0,
            tol: 1e-4,
            max_iter: 100,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct LogisticModel {
    classes: Vec<i64>,
    n_features: usize,
    /// Row-major weights, one row per decision function (1 row for binary).
    coef: Vec<f64>,
    intercept: Vec<f64>,
    n_iter: usize,
    status: LbfgsStatus,
}

impl LogisticModel {
    /// Sorted class labels (`classes_`).
    pub fn classes(&self) -> &[i64] {
        &self.classes
    }

    /// Weight rows (`coef_`): `n_rows x n_features`, row-major, with
    /// `n_rows = 1` for two classes and `K` otherwise.
    pub fn coef(&self) -> &[f64] {
        &self.coef
    }

    /// Intercepts (`intercept_`), one per weight row.
    pub fn intercept(&self) -> &[f64] {
        &self.intercept
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Iterations used (`n_iter_`).
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }

    /// Why the optimiser stopped.
    pub fn status(&self) -> LbfgsStatus {
        self.status
    }

    /// Whether the optimiser met its tolerance (scikit-learn warns otherwise).
    pub fn converged(&self) -> bool {
        self.status.converged()
    }

    /// Decision values for one row (one per weight row).
    pub fn decision(&self, row: &[f64]) -> Vec<f64> {
        let d = self.n_features;
        self.coef
            .chunks_exact(d)
            .zip(&self.intercept)
            .map(|(w, b)| w.iter().zip(row).map(|(wi, xi)| wi * xi).sum::<f64>() + b)
            .collect()
    }

    /// Predicted label for one row (length `n_features`).
    pub fn predict_row(&self, row: &[f64]) -> i64 {
        let scores = self.decision(row);
        if self.classes.len() == 2 {
            return if scores[0] > 0.0 {
                self.classes[1]
            } else {
                self.classes[0]
            };
        }
        let mut best = 0;
        for (k, s) in scores.iter().enumerate() {
            // strict comparison keeps the first maximum, like numpy's argmax
            if *s > scores[best] {
                best = k;
            }
        }
        self.classes[best]
    }
}

/// Fit on `n = y.len()` rows stored row-major in `x` (`n * n_features` values).
/// Inputs are assumed finite; the caller validates them.
pub fn fit(
    x: &[f64],
    n_features: usize,
    y: &[i64],
    params: &LogisticParams,
) -> Result<LogisticModel, MetricError> {
    let n = y.len();
    if n == 0 {
        return Err(MetricError::Empty {
            what: "training rows",
        });
    }
    if n_features == 0 {
        return Err(MetricError::InvalidParameter(
            "logistic regression needs at least one feature".into(),
        ));
    }
    let expected = n
        .checked_mul(n_features)
        .ok_or_else(|| MetricError::InvalidParameter("training matrix size overflows".into()))?;
    if x.len() != expected {
        return Err(MetricError::LengthMismatch {
            what: "training matrix values",
            expected,
            got: x.len(),
        });
    }
    let mut classes = y.to_vec();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        return Err(MetricError::SingleClass { label: y[0] });
    }
    // Label -> class position (classes are sorted, so binary search works).
    let y_idx: Vec<usize> = y
        .iter()
        .map(|v| classes.binary_search(v).unwrap_or(0))
        .collect();
    let opts = LbfgsOptions::sklearn(params.max_iter, params.tol);
    let l2 = 1.0 / (params.c * n as f64);
    let d = n_features;

    if classes.len() == 2 {
        let target: Vec<f64> = y_idx.iter().map(|&k| k as f64).collect();
        let fg = |w: &[f64], grad: &mut [f64]| binomial_loss_grad(x, d, &target, w, l2, grad);
        let out = minimize(vec![0.0; d + 1], fg, &opts);
        Ok(LogisticModel {
            classes,
            n_features: d,
            coef: out.x[..d].to_vec(),
            intercept: vec![out.x[d]],
            n_iter: out.n_iter,
            status: out.status,
        })
    } else {
        let k = classes.len();
        let fg = |w: &[f64], grad: &mut [f64]| multinomial_loss_grad(x, d, k, &y_idx, w, l2, grad);
        let out = minimize(vec![0.0; k * (d + 1)], fg, &opts);
        let mut coef = vec![0.0; k * d];
        let mut intercept = vec![0.0; k];
        for c in 0..k {
            for j in 0..d {
                coef[c * d + j] = out.x[j * k + c];
            }
            intercept[c] = out.x[d * k + c];
        }
        Ok(LogisticModel {
            classes,
            n_features: d,
            coef,
            intercept,
            n_iter: out.n_iter,
            status: out.status,
        })
    }
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// `1 / (1 + exp(-z))` without overflow.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Binary log-loss (targets 0/1) averaged over rows, plus the L2 term.
/// `w` holds `d` weights then the intercept.
fn binomial_loss_grad(
    x: &[f64],
    d: usize,
    target: &[f64],
    w: &[f64],
    l2: f64,
    grad: &mut [f64],
) -> f64 {
    let n = target.len() as f64;
    let (weights, b) = (&w[..d], w[d]);
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (row, &t) in x.chunks_exact(d).zip(target) {
        let z = row.iter().zip(weights).map(|(a, b)| a * b).sum::<f64>() + b;
        loss += softplus(z) - t * z;
        let r = (sigmoid(z) - t) / n;
        for (g, a) in grad[..d].iter_mut().zip(row) {
            *g += r * a;
        }
        grad[d] += r;
    }
    let mut sq = 0.0;
    for (g, wi) in grad[..d].iter_mut().zip(weights) {
        *g += l2 * wi;
        sq += wi * wi;
    }
    loss / n + 0.5 * l2 * sq
}

/// Softmax cross-entropy averaged over rows, plus the L2 term on the weights.
/// `w[j * k + c]` is feature `j` of class `c`; `j == d` is the intercept.
fn multinomial_loss_grad(
    x: &[f64],
    d: usize,
    k: usize,
    y: &[usize],
    w: &[f64],
    l2: f64,
    grad: &mut [f64],
) -> f64 {
    let n = y.len() as f64;
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut raw = vec![0.0; k];
    let mut loss = 0.0;
    for (row, &label) in x.chunks_exact(d).zip(y) {
        raw.copy_from_slice(&w[d * k..d * k + k]);
        for (j, &a) in row.iter().enumerate() {
            let wj = &w[j * k..j * k + k];
            for (r, wc) in raw.iter_mut().zip(wj) {
                *r += a * wc;
            }
        }
        let max = raw.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let z_label = raw[label];
        let mut sum = 0.0;
        for r in raw.iter_mut() {
            *r = (*r - max).exp();
            sum += *r;
        }
        // log-sum-exp shifted by the maximum, minus the true class's score
        loss += sum.ln() + max - z_label;
        for (c, r) in raw.iter_mut().enumerate() {
            let p = *r / sum;
            *r = (p - if c == label { 1.0 } else { 0.0 }) / n;
        }
        for (j, &a) in row.iter().enumerate() {
            let gj = &mut grad[j * k..j * k + k];
            for (g, r) in gj.iter_mut().zip(&raw) {
                *g += r * a;
            }
        }
        for (g, r) in grad[d * k..].iter_mut().zip(&raw) {
            *g += r;
        }
    }
    let mut sq = 0.0;
    for (g, wi) in grad[..d * k].iter_mut().zip(&w[..d * k]) {
        *g += l2 * wi;
        sq += wi * wi;
    }
    loss / n + 0.5 * l2 * sq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_grad_check(x: &[f64], d: usize, y: &[i64]) {
        let mut classes = y.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let y_idx: Vec<usize> = y
            .iter()
            .map(|v| classes.binary_search(v).unwrap())
            .collect();
        let k = classes.len();
        let dim = if k == 2 { d + 1 } else { k * (d + 1) };
        let w: Vec<f64> = (0..dim)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 7.0)
            .collect();
        let l2 = 0.3;
        let eval = |w: &[f64], g: &mut [f64]| {
            if k == 2 {
                let t: Vec<f64> = y_idx.iter().map(|&c| c as f64).collect();
                binomial_loss_grad(x, d, &t, w, l2, g)
            } else {
                multinomial_loss_grad(x, d, k, &y_idx, w, l2, g)
            }
        };
        let mut g = vec![0.0; dim];
        eval(&w, &mut g);
        let mut scratch = vec![0.0; dim];
        for i in 0..dim {
            let h = 1e-6;
            let mut wp = w.clone();
            wp[i] += h;
            let fp = eval(&wp, &mut scratch);
            let mut wm = w.clone();
            wm[i] -= h;
            let fm = eval(&wm, &mut scratch);
            let num = (fp - fm) / (2.0 * h);
            assert!((num - g[i]).abs() < 1e-7, "coord {i}: {num} vs {}", g[i]);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = [
            0.5, -1.0, 2.0, 0.1, -0.3, 0.7, 1.5, 1.0, -2.0, 0.0, 0.4, -0.6,
        ];
        numeric_grad_check(&x, 3, &[0, 1, 1, 0]);
        numeric_grad_check(&x, 3, &[0, 2, 1, 2]);
        numeric_grad_check(&x, 2, &[3, 7, 5, 3, 7, 5]);
    }

    #[test]
    fn separates_two_points() {
        let x = [-1.0, 1.0];
        let m = fit(&x, 1, &[4, 9], &LogisticParams::default()).unwrap();
        assert_eq!(m.classes(), &[4, 9]);
        assert_eq!(m.predict_row(&[-2.0]), 4);
        assert_eq!(m.predict_row(&[2.0]), 9);
    }

    #[test]
    fn rejects_single_class_and_bad_shapes() {
        let p = LogisticParams::default();
        assert_eq!(
            fit(&[1.0, 2.0], 1, &[3, 3], &p).unwrap_err(),
            MetricError::SingleClass { label: 3 }
        );
        assert!(matches!(
            fit(&[1.0], 1, &[3, 4], &p),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            fit(&[], 1, &[], &p),
            Err(MetricError::Empty { .. })
        ));
        assert!(matches!(
            fit(&[], 0, &[3, 4], &p),
            Err(MetricError::InvalidParameter(_))
        ));
    }
}
