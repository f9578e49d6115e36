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
        self.pick(&self.decision(row))
    }
}

impl LogisticModel {
    /// [`Self::predict_row`] for every row of the row-major `x` (`n_features`
    /// values per row). Each decision value is computed exactly as in
    /// [`Self::decision`] (the products summed in feature order, then the
    /// intercept added), several rows and classes at a time.
    pub fn predict(&self, x: &[f64]) -> Vec<i64> {
        let d = self.n_features;
        assert_eq!(x.len() % d, 0, "rows must have n_features values");
        let n = x.len() / d;
        let n_rows = self.intercept.len();
        let kp = n_rows.div_ceil(LANES) * LANES;
        // coef is n_rows x d; the kernel wants d x n_rows, packed.
        let mut wt = vec![0.0; d * n_rows];
        for (c, row) in self.coef.chunks_exact(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                wt[j * n_rows + c] = v;
            }
        }
        let mut panels = vec![0.0; d * kp];
        pack_panels(&wt, d, n_rows, &mut panels);
        // `Iterator::sum`'s starting value (-0.0), as `decision` starts from it.
        let start: f64 = std::iter::empty::<f64>().sum();
        let init = vec![start; kp];
        let mut out = Vec::with_capacity(n);
        let block = 10 * MR;
        let mut scores = vec![0.0; block * kp];
        let mut tiles = Vec::new();
        for rows in x.chunks(block * d) {
            let r = rows.len() / d;
            pack_rows(rows, r, d, d, &mut tiles);
            gemm_panels(&tiles, r, d, &panels, &init, &mut scores, kp);
            for s in scores.chunks_exact_mut(kp).take(r) {
                let s = &mut s[..n_rows];
                for (v, b) in s.iter_mut().zip(&self.intercept) {
                    *v += b;
                }
                out.push(self.pick(s));
            }
        }
        out
    }

    /// The predicted label from one row's decision values.
    fn pick(&self, scores: &[f64]) -> i64 {
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
        let mut obj = Multinomial::new(x, d, k, &y_idx);
        let fg = |w: &[f64], grad: &mut [f64]| obj.loss_grad(w, l2, grad);
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
///
/// Straightforward reference form; [`Multinomial::loss_grad`] computes the same
/// values (every sum adds the same terms in the same order) with blocked
/// kernels, and is what [`fit`] uses.
#[cfg(test)]
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

/// Buffers of the multinomial objective, allocated once per fit.
///
/// The objective needs `Z = bias + X W` (rows x classes) and the gradient
/// `G = X' R` (features x classes, `R` the scaled residuals). Both are computed
/// by [`gemm_panels`] with the classes padded to a multiple of [`LANES`]; each
/// entry of `Z` still adds `x_ij * w_jc` over `j = 0, 1, ...` onto its bias and
/// each entry of `G` adds `r_ic * x_ij` over `i = 0, 1, ...` onto 0, exactly as
/// the row-by-row reference ([`multinomial_loss_grad`] in the tests) does, so
/// the results are bit-identical.
struct Multinomial<'a> {
    y: &'a [usize],
    n: usize,
    d: usize,
    k: usize,
    /// `k` rounded up to a multiple of `LANES`.
    kp: usize,
    /// `X` packed for [`gemm_panels`] (see [`pack_rows`]).
    x_tiles: Vec<f64>,
    /// `X` transposed (`d x n`), packed the same way.
    xt_tiles: Vec<f64>,
    /// Weights packed in panels of `LANES` classes (`d x LANES` each).
    w_panels: Vec<f64>,
    /// Intercepts, padded to `kp`.
    bias: Vec<f64>,
    /// `Z`, `n x kp`.
    z: Vec<f64>,
    /// Residuals packed in panels of `LANES` classes (`n x LANES` each);
    /// padding lanes stay 0.
    r_panels: Vec<f64>,
    zeros: Vec<f64>,
    /// `G`, `d x kp`.
    g: Vec<f64>,
}

impl<'a> Multinomial<'a> {
    fn new(x: &'a [f64], d: usize, k: usize, y: &'a [usize]) -> Self {
        let n = y.len();
        let kp = k.div_ceil(LANES) * LANES;
        let mut xt = vec![0.0; d * n];
        for (i, row) in x.chunks_exact(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                xt[j * n + i] = v;
            }
        }
        let (mut x_tiles, mut xt_tiles) = (Vec::new(), Vec::new());
        pack_rows(x, n, d, d, &mut x_tiles);
        pack_rows(&xt, d, n, n, &mut xt_tiles);
        Multinomial {
            y,
            n,
            d,
            k,
            kp,
            x_tiles,
            xt_tiles,
            w_panels: vec![0.0; d * kp],
            bias: vec![0.0; kp],
            z: vec![0.0; n * kp],
            r_panels: vec![0.0; n * kp],
            zeros: vec![0.0; kp],
            g: vec![0.0; d * kp],
        }
    }

    fn loss_grad(&mut self, w: &[f64], l2: f64, grad: &mut [f64]) -> f64 {
        let (n, d, k, kp) = (self.n, self.d, self.k, self.kp);
        pack_panels(&w[..d * k], d, k, &mut self.w_panels);
        self.bias[..k].copy_from_slice(&w[d * k..d * k + k]);
        // Z = bias + X W
        gemm_panels(
            &self.x_tiles,
            n,
            d,
            &self.w_panels,
            &self.bias,
            &mut self.z,
            kp,
        );
        let nf = n as f64;
        let mut loss = 0.0;
        let g_int = &mut grad[d * k..d * k + k];
        g_int.iter_mut().for_each(|g| *g = 0.0);
        for (i, (raw, &label)) in self.z.chunks_exact_mut(kp).zip(self.y).enumerate() {
            let raw = &mut raw[..k];
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
                *r = (p - if c == label { 1.0 } else { 0.0 }) / nf;
            }
            for (g, r) in g_int.iter_mut().zip(raw.iter()) {
                *g += r;
            }
            for (p, chunk) in raw.chunks(LANES).enumerate() {
                let at = p * n * LANES + i * LANES;
                self.r_panels[at..at + chunk.len()].copy_from_slice(chunk);
            }
        }
        // G = X' R, every entry summed over the rows in order from 0
        gemm_panels(
            &self.xt_tiles,
            d,
            n,
            &self.r_panels,
            &self.zeros,
            &mut self.g,
            kp,
        );
        let mut sq = 0.0;
        for ((gj, g_row), wj) in grad[..d * k]
            .chunks_exact_mut(k)
            .zip(self.g.chunks_exact(kp))
            .zip(w[..d * k].chunks_exact(k))
        {
            for ((g, &gv), &wi) in gj.iter_mut().zip(g_row).zip(wj) {
                *g = gv + l2 * wi;
                sq += wi * wi;
            }
        }
        loss / nf + 0.5 * l2 * sq
    }
}

/// Columns per packed panel.
const LANES: usize = 8;
/// Rows per register tile.
const MR: usize = 6;

/// Packs the `t x k` row-major matrix `m` into panels of `LANES` columns, each
/// `t x LANES` row-major; columns past `k` are zero.
fn pack_panels(m: &[f64], t: usize, k: usize, out: &mut [f64]) {
    let np = k.div_ceil(LANES);
    debug_assert!(out.len() == np * t * LANES && m.len() == t * k);
    for (row_idx, row) in m.chunks_exact(k).enumerate() {
        for (p, chunk) in row.chunks(LANES).enumerate() {
            let at = p * t * LANES + row_idx * LANES;
            out[at..at + chunk.len()].copy_from_slice(chunk);
        }
    }
}

/// Packs `rows` rows of `a` (row `i` is `a[i * lda..i * lda + tlen]`) into tiles
/// of [`MR`] rows, each tile `tlen x MR` (the `MR` values of one `t` adjacent);
/// rows past `rows` are zero.
fn pack_rows(a: &[f64], rows: usize, lda: usize, tlen: usize, out: &mut Vec<f64>) {
    let tiles = rows.div_ceil(MR);
    out.clear();
    out.resize(tiles * tlen * MR, 0.0);
    for i in 0..rows {
        let (tile, ii) = (i / MR, i % MR);
        let dst = &mut out[tile * tlen * MR..(tile + 1) * tlen * MR];
        for (t, &v) in a[i * lda..i * lda + tlen].iter().enumerate() {
            dst[t * MR + ii] = v;
        }
    }
}

/// `out[i * ldo + c] = init[c] + a_i[0] * b[0][c] + a_i[1] * b[1][c] + ...`
/// for the `rows` rows packed in `tiles` (see [`pack_rows`]) and every column
/// `c` of the packed panels `panels` (`tlen x LANES` each, see
/// [`pack_panels`]): each entry is a plain sequential sum, every term a product
/// rounded before it is added (no fused multiply-add), the terms added in `t`
/// order onto `init[c]`. Tiles of [`MR`] rows times one panel keep `2 * MR`
/// such sums in registers.
#[allow(clippy::too_many_arguments)]
fn gemm_panels(
    tiles: &[f64],
    rows: usize,
    tlen: usize,
    panels: &[f64],
    init: &[f64],
    out: &mut [f64],
    ldo: usize,
) {
    let np = panels.len() / (tlen * LANES);
    assert!(
        panels.len() == np * tlen * LANES
            && init.len() >= np * LANES
            && ldo >= np * LANES
            && out.len() >= rows * ldo
            && tiles.len() == rows.div_ceil(MR) * tlen * MR
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the feature was just detected; bounds were checked above.
            unsafe { avx::gemm_panels(tiles, rows, tlen, panels, init, out, ldo) };
            return;
        }
    }
    for i in 0..rows {
        let (tile, ii) = (i / MR, i % MR);
        let a = &tiles[tile * tlen * MR..(tile + 1) * tlen * MR];
        for (p, panel) in panels.chunks_exact(tlen * LANES).enumerate() {
            let mut acc = [0.0f64; LANES];
            acc.copy_from_slice(&init[p * LANES..(p + 1) * LANES]);
            for (col, at) in panel.chunks_exact(LANES).zip(a.chunks_exact(MR)) {
                let av = at[ii];
                for l in 0..LANES {
                    acc[l] += av * col[l];
                }
            }
            out[i * ldo + p * LANES..i * ldo + (p + 1) * LANES].copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{LANES, MR};
    use std::arch::x86_64::*;

    /// See [`super::gemm_panels`]; bounds are checked by the caller.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn gemm_panels(
        tiles: &[f64],
        rows: usize,
        tlen: usize,
        panels: &[f64],
        init: &[f64],
        out: &mut [f64],
        ldo: usize,
    ) {
        const _: () = assert!(MR == 6 && LANES == 8);
        let np = panels.len() / (tlen * LANES);
        let mut acc = [0.0f64; MR * LANES];
        for (tile, a) in tiles.chunks_exact(tlen * MR).enumerate() {
            let i0 = tile * MR;
            let r = MR.min(rows - i0);
            for p in 0..np {
                let b = panels.as_ptr().add(p * tlen * LANES);
                let ini = init.as_ptr().add(p * LANES);
                if r == MR {
                    micro(
                        a.as_ptr(),
                        b,
                        tlen,
                        ini,
                        out.as_mut_ptr().add(i0 * ldo + p * LANES),
                        ldo,
                    );
                } else {
                    micro(a.as_ptr(), b, tlen, ini, acc.as_mut_ptr(), LANES);
                    for i in 0..r {
                        let o = (i0 + i) * ldo + p * LANES;
                        out[o..o + LANES].copy_from_slice(&acc[i * LANES..(i + 1) * LANES]);
                    }
                }
            }
        }
    }

    /// One tile of `MR` rows against one panel: `2 MR` accumulators, each a
    /// strictly sequential sum of rounded products (separate multiply and add).
    #[inline(always)]
    unsafe fn micro(
        a: *const f64,
        b: *const f64,
        tlen: usize,
        init: *const f64,
        out: *mut f64,
        ldo: usize,
    ) {
        let mut lo = [_mm256_loadu_pd(init); MR];
        let mut hi = [_mm256_loadu_pd(init.add(4)); MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..tlen {
            let b0 = _mm256_loadu_pd(b);
            let b1 = _mm256_loadu_pd(b.add(4));
            for i in 0..MR {
                let av = _mm256_broadcast_sd(&*a.add(i));
                lo[i] = _mm256_add_pd(lo[i], _mm256_mul_pd(av, b0));
                hi[i] = _mm256_add_pd(hi[i], _mm256_mul_pd(av, b1));
            }
            a = a.add(MR);
            b = b.add(LANES);
        }
        for i in 0..MR {
            _mm256_storeu_pd(out.add(i * ldo), lo[i]);
            _mm256_storeu_pd(out.add(i * ldo + 4), hi[i]);
        }
    }
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
    fn blocked_objective_matches_reference_bits() {
        // Sizes that exercise partial row tiles and partial class panels.
        for (n, d, k) in [(13, 5, 3), (20, 7, 9), (7, 3, 17), (31, 11, 8)] {
            let x: Vec<f64> = (0..n * d)
                .map(|i| ((i * 7919 % 113) as f64 - 56.0) / 17.0)
                .collect();
            let y: Vec<usize> = (0..n).map(|i| (i * 5 + 1) % k).collect();
            let w: Vec<f64> = (0..k * (d + 1))
                .map(|i| ((i * 37 % 11) as f64 - 5.0) / 7.0)
                .collect();
            let mut g_ref = vec![0.0; w.len()];
            let f_ref = multinomial_loss_grad(&x, d, k, &y, &w, 0.3, &mut g_ref);
            let mut obj = Multinomial::new(&x, d, k, &y);
            let mut g = vec![1.0; w.len()];
            let f = obj.loss_grad(&w, 0.3, &mut g);
            assert_eq!(f.to_bits(), f_ref.to_bits());
            for (a, b) in g.iter().zip(&g_ref) {
                assert_eq!(a.to_bits(), b.to_bits());
            }
            let model = fit(
                &x,
                d,
                &(0..n).map(|i| y[i] as i64).collect::<Vec<_>>(),
                &LogisticParams::default(),
            )
            .unwrap();
            let one_by_one: Vec<i64> = x.chunks_exact(d).map(|r| model.predict_row(r)).collect();
            assert_eq!(model.predict(&x), one_by_one);
        }
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
