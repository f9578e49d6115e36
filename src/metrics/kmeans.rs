//! A step-by-step re-implementation of scikit-learn's `MiniBatchKMeans`
//! (dense float32 input, unit sample weights, `init="k-means++"`), the
//! clusterer mteb runs for its clustering tasks.
//!
//! It follows the reference's sequence of random draws exactly (numpy's
//! legacy `RandomState` seeded with `random_state`, see [`super::rng`]):
//! validation indices, init subset, greedy k-means++ seeding, one weighted
//! `choice` per mini-batch, optional low-count centre reassignment, and the
//! early stop on a smoothed batch inertia. The float32 arithmetic of the
//! centre updates and inertia sums is mirrored in the same order. What
//! cannot be mirrored is the summation order inside the reference's BLAS
//! calls (distance matrices, potentials); those sums are formed here in f64
//! and rounded once, so a point sitting almost exactly between two centres
//! can occasionally be assigned differently, after which the two runs may
//! drift apart. In practice most runs give identical labels.
//!
//! Written against scikit-learn 1.9.1, which samples mini-batches with a
//! weighted `choice`; older releases drew them with `randint`, so their
//! random streams (and hence labels) differ from this one.

use super::rng::{normalized_cdf, RandomState};
use super::MetricError;

/// Parameters of `MiniBatchKMeans` that mteb sets or relies on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiniBatchKMeansParams {
    pub n_clusters: usize,
    pub batch_size: usize,
    /// `random_state` (an integer seed; mteb passes its task seed, 42).
    pub random_state: u32,
    /// Number of k-means++ initialisations (sklearn resolves
    /// `n_init="auto"` to 1 for k-means++).
    pub n_init: usize,
    pub max_iter: usize,
    /// `None` disables the lack-of-improvement early stop.
    pub max_no_improvement: Option<usize>,
    pub reassignment_ratio: f64,
    /// `None` means `3 * batch_size` (at least `3 * n_clusters`).
    pub init_size: Option<usize>,
}

impl MiniBatchKMeansParams {
    /// scikit-learn's defaults for everything mteb leaves untouched.
    pub fn new(n_clusters: usize, batch_size: usize, random_state: u32) -> Self {
        MiniBatchKMeansParams {
            n_clusters,
            batch_size,
            random_state,
            n_init: 1,
            max_iter: 100,
            max_no_improvement: Some(10),
            reassignment_ratio: 0.01,
            init_size: None,
        }
    }
}

/// Outcome of a fit.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    /// Cluster index of every input row (`labels_`).
    pub labels: Vec<usize>,
    /// Row-major `n_clusters x dim` centres.
    pub centers: Vec<f32>,
    /// Number of mini-batch steps run (`n_steps_`).
    pub n_steps: usize,
}

/// A borrowed row-major float32 matrix.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    dim: usize,
}

impl<'a> Matrix<'a> {
    /// Wraps `data` (length `rows * dim`).
    pub fn new(data: &'a [f32], rows: usize, dim: usize) -> Result<Self, MetricError> {
        if dim == 0 || rows == 0 {
            return Err(MetricError::Empty { what: "matrix" });
        }
        let expected = rows
            .checked_mul(dim)
            .ok_or_else(|| MetricError::InvalidParameter("matrix size overflows".into()))?;
        if data.len() != expected {
            return Err(MetricError::LengthMismatch {
                what: "matrix data",
                expected,
                got: data.len(),
            });
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(MetricError::NonFinite {
                what: "matrix",
                row: i / dim,
                col: Some(i % dim),
            });
        }
        Ok(Matrix { data, rows, dim })
    }

    fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// `MiniBatchKMeans(...).fit_predict(x)`.
pub fn minibatch_kmeans(
    x: Matrix<'_>,
    params: &MiniBatchKMeansParams,
) -> Result<KMeansFit, MetricError> {
    let n = x.rows;
    let d = x.dim;
    let k = params.n_clusters;
    if k == 0 {
        return Err(MetricError::InvalidParameter(
            "n_clusters must be >= 1".into(),
        ));
    }
    if n < k {
        return Err(MetricError::InvalidParameter(format!(
            "n_samples={n} should be >= n_clusters={k}"
        )));
    }
    if n > u32::MAX as usize {
        return Err(MetricError::InvalidParameter(
            "more than 2^32 rows is not supported".into(),
        ));
    }
    if params.batch_size == 0 || params.n_init == 0 {
        return Err(MetricError::InvalidParameter(
            "batch_size and n_init must be >= 1".into(),
        ));
    }
    if params.reassignment_ratio < 0.0 {
        return Err(MetricError::InvalidParameter(
            "reassignment_ratio must be >= 0".into(),
        ));
    }
    let batch = params.batch_size.min(n);
    let mut init_size = match params.init_size {
        None if 3 * batch < k => 3 * k,
        None => 3 * batch,
        Some(s) if s < k => 3 * k,
        Some(s) => s,
    };
    init_size = init_size.min(n);

    let mut rs = RandomState::new(params.random_state);
    let validation_idx = randint_indices(&mut rs, n, init_size);

    let mut best: Option<(f32, Vec<f32>)> = None;
    for _ in 0..params.n_init {
        let centers = init_centroids(x, k, init_size, &mut rs);
        if params.n_init == 1 {
            // A lone candidate wins whatever its validation inertia.
            best = Some((0.0, centers));
            break;
        }
        let xv: Vec<f32> = validation_idx
            .iter()
            .flat_map(|&i| x.row(i).iter().copied())
            .collect();
        let labels = assign_labels(&xv, init_size, d, &centers, k);
        let inertia = inertia_dense(&xv, d, &centers, &labels);
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, centers));
        }
    }
    let mut centers = best.map(|b| b.1).unwrap_or_default();
    let mut centers_new = vec![0f32; k * d];
    let mut counts = vec![0f32; k];

    let mut ewa: Option<f64> = None;
    let mut ewa_min: Option<f64> = None;
    let mut no_improvement = 0usize;
    let mut since_reassign = 0usize;

    let n_steps = params.max_iter.saturating_mul(n) / batch;
    // Unit weights divided by their float32 sum, widened to f64 by `choice`.
    let p = (1.0f32 / n as f32) as f64;
    let cdf = normalized_cdf(&vec![p; n]);
    let ratio32 = params.reassignment_ratio as f32;
    let mut xb = vec![0f32; batch * d];
    let mut steps_run = 0;
    for step in 0..n_steps {
        steps_run = step + 1;
        let idx = rs.choice_with_cdf(&cdf, batch);
        for (slot, &i) in idx.iter().enumerate() {
            xb[slot * d..(slot + 1) * d].copy_from_slice(x.row(i));
        }
        since_reassign += batch;
        let reassign = if counts.contains(&0.0) || since_reassign >= 10 * k {
            since_reassign = 0;
            true
        } else {
            false
        };

        // E-step on the batch, then the per-centre running-mean update.
        let labels = assign_labels(&xb, batch, d, &centers, k);
        let batch_inertia = inertia_dense(&xb, d, &centers, &labels);
        update_centers(&xb, d, &labels, &centers, &mut centers_new, &mut counts);

        if reassign && params.reassignment_ratio > 0.0 {
            let max = counts.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let limit = ratio32 * max;
            let mut to_reassign: Vec<bool> = counts.iter().map(|&c| c < limit).collect();
            let half = batch as f64 * 0.5;
            if to_reassign.iter().filter(|&&b| b).count() as f64 > half {
                // Keep the heaviest centres out of it (only reachable with
                // more than batch_size / 2 clusters).
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| counts[a].total_cmp(&counts[b]));
                for &c in &order[half as usize..] {
                    to_reassign[c] = false;
                }
            }
            let n_re = to_reassign.iter().filter(|&&b| b).count();
            if n_re > 0 {
                let perm = rs.permutation(batch);
                let targets = (0..k).filter(|&c| to_reassign[c]);
                for (c, &src) in targets.zip(&perm[..n_re]) {
                    centers_new[c * d..(c + 1) * d].copy_from_slice(&xb[src * d..(src + 1) * d]);
                }
            }
            let floor = counts
                .iter()
                .zip(&to_reassign)
                .filter(|(_, r)| !**r)
                .map(|(c, _)| *c)
                .fold(f32::INFINITY, f32::min);
            for (c, r) in counts.iter_mut().zip(&to_reassign) {
                if *r {
                    *c = floor;
                }
            }
        }
        std::mem::swap(&mut centers, &mut centers_new);

        // Early stopping on the exponentially weighted batch inertia; the
        // first step only reflects the initialisation and is ignored.
        if step == 0 {
            continue;
        }
        let bi = batch_inertia as f64 / batch as f64;
        let e = match ewa {
            None => bi,
            Some(prev) => {
                let alpha = (batch as f64 * 2.0 / (n as f64 + 1.0)).min(1.0);
                prev * (1.0 - alpha) + bi * alpha
            }
        };
        ewa = Some(e);
        if ewa_min.is_none_or(|m| e < m) {
            no_improvement = 0;
            ewa_min = Some(e);
        } else {
            no_improvement += 1;
        }
        if params
            .max_no_improvement
            .is_some_and(|m| no_improvement >= m)
        {
            break;
        }
    }

    let labels = assign_labels(x.data, n, d, &centers, k);
    Ok(KMeansFit {
        labels,
        centers,
        n_steps: steps_run,
    })
}

/// `randint(0, n, size)` as row indices (callers have `n >= 1`).
fn randint_indices(rs: &mut RandomState, n: usize, size: usize) -> Vec<usize> {
    let high = i64::try_from(n).unwrap_or(i64::MAX);
    let draws = rs.randint_array(0, high, size).unwrap_or_default();
    draws.into_iter().map(|v| v as usize).collect()
}

/// Initial centres: k-means++ on an `init_size` subset drawn with
/// replacement (or on all rows when the subset would cover them).
fn init_centroids(x: Matrix<'_>, k: usize, init_size: usize, rs: &mut RandomState) -> Vec<f32> {
    let rows: Vec<usize> = if init_size < x.rows {
        randint_indices(rs, x.rows, init_size)
    } else {
        (0..x.rows).collect()
    };
    kmeans_plusplus(x, &rows, k, rs)
}

/// Squared distance the way sklearn's float32 path produces it: operands
/// widened to f64, `(-2 a.b + |a|^2) + |b|^2`, rounded to f32, floored at 0.
fn upcast_sq_dist(a: &[f32], a_sq: f64, b: &[f32], b_sq: f64) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(&p, &q)| p as f64 * q as f64).sum();
    let v = ((-2.0 * dot + a_sq) + b_sq) as f32;
    v.max(0.0)
}

fn sq_norm64(a: &[f32]) -> f64 {
    a.iter().map(|&v| v as f64 * v as f64).sum()
}

/// f32 sum whose rounding error is that of a single rounding.
fn sum_f32(v: &[f32]) -> f32 {
    v.iter().map(|&x| x as f64).sum::<f64>() as f32
}

/// Greedy k-means++ over the rows `rows` of `x` (unit weights): each new
/// centre is the best, by resulting potential, of `2 + floor(ln k)`
/// candidates sampled proportionally to the current squared distances.
fn kmeans_plusplus(x: Matrix<'_>, rows: &[usize], k: usize, rs: &mut RandomState) -> Vec<f32> {
    let m = rows.len();
    let d = x.dim;
    let trials = 2 + (k as f64).ln() as usize;
    let sq: Vec<f64> = rows.iter().map(|&r| sq_norm64(x.row(r))).collect();
    let dist_row = |cand: usize| -> Vec<f32> {
        let c = x.row(rows[cand]);
        let c_sq = sq[cand];
        rows.iter()
            .zip(&sq)
            .map(|(&r, &s)| upcast_sq_dist(c, c_sq, x.row(r), s))
            .collect()
    };

    let mut centers = Vec::with_capacity(k * d);
    let p = (1.0f32 / m as f32) as f64;
    let first = rs.choice_with_cdf(&normalized_cdf(&vec![p; m]), 1)[0];
    centers.extend_from_slice(x.row(rows[first]));
    let mut closest = dist_row(first);
    let mut pot = sum_f32(&closest);

    for _ in 1..k {
        let rand_vals: Vec<f64> = (0..trials)
            .map(|_| rs.uniform(0.0, 1.0) * f64::from(pot))
            .collect();
        // Running float32 sum of the weighted distances (sequential, as
        // numpy's cumsum), searched with side="left".
        let mut acc = 0f32;
        let cum: Vec<f32> = closest
            .iter()
            .map(|&v| {
                acc += v;
                acc
            })
            .collect();
        let cands: Vec<usize> = rand_vals
            .iter()
            .map(|&r| cum.partition_point(|&c| (c as f64) < r).min(m - 1))
            .collect();
        let mut best: Option<(f32, usize, Vec<f32>)> = None;
        for &cand in &cands {
            let dist: Vec<f32> = dist_row(cand)
                .into_iter()
                .zip(&closest)
                .map(|(a, &b)| a.min(b))
                .collect();
            let cand_pot = sum_f32(&dist);
            if best.as_ref().is_none_or(|(bp, _, _)| cand_pot < *bp) {
                best = Some((cand_pot, cand, dist));
            }
        }
        // There are always at least two candidates.
        let Some((bp, bc, bd)) = best else { break };
        pot = bp;
        closest = bd;
        centers.extend_from_slice(x.row(rows[bc]));
    }
    centers
}

/// Nearest centre per row, scored as `|c|^2 - 2 x.c` in f32 (the form the
/// reference's chunked GEMM uses); the first minimum wins.
fn assign_labels(xs: &[f32], n: usize, d: usize, centers: &[f32], k: usize) -> Vec<usize> {
    let c_sq: Vec<f32> = (0..k)
        .map(|j| sq_norm64(&centers[j * d..(j + 1) * d]) as f32)
        .collect();
    (0..n)
        .map(|i| {
            let row = &xs[i * d..(i + 1) * d];
            let mut best = f32::INFINITY;
            let mut label = 0;
            for j in 0..k {
                let c = &centers[j * d..(j + 1) * d];
                let dot: f64 = row.iter().zip(c).map(|(&a, &b)| a as f64 * b as f64).sum();
                let v = c_sq[j] + (-2.0f32 * dot as f32);
                if j == 0 || v < best {
                    best = v;
                    label = j;
                }
            }
            label
        })
        .collect()
}

/// float32 squared distance with the reference's 4-way unrolled loop.
fn sq_dist_unrolled(a: &[f32], b: &[f32]) -> f32 {
    let mut r = 0f32;
    let chunks = a.len() / 4;
    for q in 0..chunks {
        let i = 4 * q;
        let t0 = (a[i] - b[i]) * (a[i] - b[i]);
        let t1 = (a[i + 1] - b[i + 1]) * (a[i + 1] - b[i + 1]);
        let t2 = (a[i + 2] - b[i + 2]) * (a[i + 2] - b[i + 2]);
        let t3 = (a[i + 3] - b[i + 3]) * (a[i + 3] - b[i + 3]);
        r += ((t0 + t1) + t2) + t3;
    }
    for i in 4 * chunks..a.len() {
        r += (a[i] - b[i]) * (a[i] - b[i]);
    }
    r
}

/// Sum of squared distances to the assigned centres, accumulated
/// sequentially in f32 (the single-threaded reference order).
fn inertia_dense(xs: &[f32], d: usize, centers: &[f32], labels: &[usize]) -> f32 {
    let mut inertia = 0f32;
    for (i, &j) in labels.iter().enumerate() {
        inertia += sq_dist_unrolled(&xs[i * d..(i + 1) * d], &centers[j * d..(j + 1) * d]) * 1.0;
    }
    inertia
}

/// Running-mean centre update: old centre weighted by its count, plus the
/// batch members, divided by the new count; untouched centres are copied.
fn update_centers(
    xb: &[f32],
    d: usize,
    labels: &[usize],
    old: &[f32],
    new: &mut [f32],
    counts: &mut [f32],
) {
    for (c, count) in counts.iter_mut().enumerate() {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let mut wsum = 0f32;
        for _ in &members {
            wsum += 1.0;
        }
        let dst = &mut new[c * d..(c + 1) * d];
        let src = &old[c * d..(c + 1) * d];
        if wsum > 0.0 {
            for (o, &s) in dst.iter_mut().zip(src) {
                *o = s * *count;
            }
            for &i in &members {
                for (o, &v) in dst.iter_mut().zip(&xb[i * d..(i + 1) * d]) {
                    *o += v * 1.0;
                }
            }
            *count += wsum;
            let alpha = 1.0f32 / *count;
            for o in dst.iter_mut() {
                *o *= alpha;
            }
        } else {
            dst.copy_from_slice(src);
        }
    }
}
