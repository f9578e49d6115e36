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
        let xv_row = |i: usize| &xv[i * d..(i + 1) * d];
        let labels = assign_labels(xv_row, init_size, d, &centers, k);
        let inertia = inertia_dense(xv_row, d, &centers, &labels);
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
    let mut steps_run = 0;
    for step in 0..n_steps {
        steps_run = step + 1;
        let idx = rs.choice_with_cdf(&cdf, batch);
        // Batch row `slot` is data row `idx[slot]` (read in place, not copied).
        let xb = |slot: usize| x.row(idx[slot]);
        since_reassign += batch;
        let reassign = if counts.contains(&0.0) || since_reassign >= 10 * k {
            since_reassign = 0;
            true
        } else {
            false
        };

        // E-step on the batch, then the per-centre running-mean update.
        let labels = assign_labels(xb, batch, d, &centers, k);
        let batch_inertia = inertia_dense(xb, d, &centers, &labels);
        update_centers(xb, d, &labels, &centers, &mut centers_new, &mut counts);

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
                    centers_new[c * d..(c + 1) * d].copy_from_slice(xb(src));
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

    let labels = assign_labels(|i| x.row(i), n, d, &centers, k);
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

// ---------------------------------------------------------------------------
// Dot products.
//
// Every dot product below is the float64 sum of the exact products
// `a[t] as f64 * b[t] as f64`, added strictly left to right starting from
// -0.0 (what `Iterator::sum::<f64>` does). Speed comes from computing many
// such sums side by side (one per SIMD lane: 8 centres x 6 rows at a time),
// never from reordering the additions inside one sum. A fused multiply-add
// gives the same bits as the separate multiply and add because a product of
// two widened f32 values is exact in f64.

/// Centres per panel (SIMD lanes of one micro-kernel column block).
const LANES: usize = 8;
/// Rows per micro-kernel tile.
const MR: usize = 6;
/// Rows per parallel work item.
const CHUNK_ROWS: usize = 16 * MR;

/// Widens `n` rows of `rows` (row-major, `d` wide) to f64 and lays them out
/// as panels of [`LANES`] rows, transposed: row `j`, element `t` lands at
/// `(j / LANES) * d * LANES + t * LANES + j % LANES`. Padding lanes are 0.
fn pack_panels<'a>(rows: impl Iterator<Item = &'a [f32]>, n: usize, d: usize) -> Vec<f64> {
    let n_panels = n.div_ceil(LANES);
    let mut out = vec![0f64; n_panels * d * LANES];
    for (j, row) in rows.enumerate() {
        let base = (j / LANES) * d * LANES + j % LANES;
        for (t, &v) in row.iter().enumerate() {
            out[base + t * LANES] = f64::from(v);
        }
    }
    out
}

/// Squared norms (sequential f64 sums of squares) of the rows packed in
/// `panels`, one per lane, padding included.
fn panel_sq_norms(panels: &[f64], d: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(panels.len() / d);
    for panel in panels.chunks_exact(d * LANES) {
        let mut acc = [-0.0f64; LANES];
        for col in panel.chunks_exact(LANES) {
            for l in 0..LANES {
                acc[l] += col[l] * col[l];
            }
        }
        out.extend_from_slice(&acc);
    }
    out
}

/// `out[i * n_pad + j]` = dot of tile row `i` (of `r <= MR` rows, f64, `d`
/// wide) with packed row `j`, for every packed row (`n_pad` = panels x LANES).
fn dots_tile(a: &[f64], r: usize, d: usize, panels: &[f64], out: &mut [f64]) {
    debug_assert!((1..=MR).contains(&r) && a.len() >= r * d);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features the kernel is compiled for were just
            // detected; slice bounds are checked inside.
            unsafe { avx::dots_tile(a, r, d, panels, out) };
            return;
        }
    }
    dots_tile_portable(a, r, d, panels, out);
}

fn dots_tile_portable(a: &[f64], r: usize, d: usize, panels: &[f64], out: &mut [f64]) {
    let n_pad = panels.len() / d;
    for (p, panel) in panels.chunks_exact(d * LANES).enumerate() {
        for i in 0..r {
            let row = &a[i * d..(i + 1) * d];
            let mut acc = [-0.0f64; LANES];
            for (col, &av) in panel.chunks_exact(LANES).zip(row) {
                for l in 0..LANES {
                    acc[l] += av * col[l];
                }
            }
            out[i * n_pad + p * LANES..i * n_pad + (p + 1) * LANES].copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{LANES, MR};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots_tile(a: &[f64], r: usize, d: usize, panels: &[f64], out: &mut [f64]) {
        let n_pad = panels.len() / d;
        assert!(a.len() >= r * d && out.len() >= r * n_pad && panels.len() == n_pad * d);
        for (p, panel) in panels.chunks_exact(d * LANES).enumerate() {
            let o = out.as_mut_ptr().add(p * LANES);
            let (a, b) = (a.as_ptr(), panel.as_ptr());
            match r {
                6 => micro::<6>(a, b, d, o, n_pad),
                5 => micro::<5>(a, b, d, o, n_pad),
                4 => micro::<4>(a, b, d, o, n_pad),
                3 => micro::<3>(a, b, d, o, n_pad),
                2 => micro::<2>(a, b, d, o, n_pad),
                _ => micro::<1>(a, b, d, o, n_pad),
            }
        }
        const _: () = assert!(MR == 6 && LANES == 8);
    }

    /// `R` rows of `a` (stride `d`) against one panel of 8 packed rows:
    /// 2R accumulators, each a strictly sequential sum.
    #[inline(always)]
    unsafe fn micro<const R: usize>(
        a: *const f64,
        b: *const f64,
        d: usize,
        out: *mut f64,
        ld: usize,
    ) {
        let mut lo = [_mm256_set1_pd(-0.0); R];
        let mut hi = [_mm256_set1_pd(-0.0); R];
        for t in 0..d {
            let b0 = _mm256_loadu_pd(b.add(t * 8));
            let b1 = _mm256_loadu_pd(b.add(t * 8 + 4));
            for i in 0..R {
                let av = _mm256_broadcast_sd(&*a.add(i * d + t));
                lo[i] = _mm256_fmadd_pd(av, b0, lo[i]);
                hi[i] = _mm256_fmadd_pd(av, b1, hi[i]);
            }
        }
        for i in 0..R {
            _mm256_storeu_pd(out.add(i * ld), lo[i]);
            _mm256_storeu_pd(out.add(i * ld + 4), hi[i]);
        }
    }
}

/// Runs `f(first_row, rows_f64, r, dots)` over tiles of at most [`MR`] rows
/// of `xs` (`n` rows, `d` wide, f32), `dots` holding the tile's dot products
/// with every packed row (`r * n_pad` values, row-major). Work items of
/// [`CHUNK_ROWS`] rows run in parallel; each output only depends on its own
/// row, so the split does not change any value.
fn for_each_tile<'a, T: Send>(
    row: impl Fn(usize) -> &'a [f32] + Sync,
    n: usize,
    d: usize,
    panels: &[f64],
    out: &mut [T],
    per_row: usize,
    f: impl Fn(usize, usize, &[f64], &mut [T]) + Sync,
) {
    use rayon::prelude::*;
    let n_pad = panels.len() / d;
    let work = |(ci, out_chunk): (usize, &mut [T])| {
        let first = ci * CHUNK_ROWS;
        let rows = out_chunk.len() / per_row;
        let mut a64 = vec![0f64; MR * d];
        let mut dots = vec![0f64; MR * n_pad];
        let mut start = 0;
        while start < rows {
            let r = MR.min(rows - start);
            let i0 = first + start;
            for (i, dst_row) in a64.chunks_exact_mut(d).take(r).enumerate() {
                for (dst, &v) in dst_row.iter_mut().zip(row(i0 + i)) {
                    *dst = f64::from(v);
                }
            }
            dots_tile(&a64, r, d, panels, &mut dots);
            f(
                i0,
                r,
                &dots,
                &mut out_chunk[start * per_row..(start + r) * per_row],
            );
            start += r;
        }
    };
    debug_assert_eq!(out.len(), n * per_row);
    if n > CHUNK_ROWS {
        out.par_chunks_mut(CHUNK_ROWS * per_row)
            .enumerate()
            .for_each(work);
    } else {
        out.chunks_mut(CHUNK_ROWS * per_row)
            .enumerate()
            .for_each(work);
    }
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
///
/// Squared distances are the way sklearn's float32 path produces them:
/// operands widened to f64, `(-2 a.b + |a|^2) + |b|^2` with `a` the
/// candidate, rounded to f32, floored at 0.
fn kmeans_plusplus(x: Matrix<'_>, rows: &[usize], k: usize, rs: &mut RandomState) -> Vec<f32> {
    let m = rows.len();
    let d = x.dim;
    let trials = 2 + (k as f64).ln() as usize;
    let sq: Vec<f64> = rows.iter().map(|&r| sq_norm64(x.row(r))).collect();
    // Squared distances from every subset row to each candidate:
    // `out[i * nc + c]` for candidate `c` of `cands`.
    let dists = |cands: &[usize]| -> (Vec<f32>, usize) {
        let nc = cands.len();
        let panels = pack_panels(cands.iter().map(|&c| x.row(rows[c])), nc, d);
        let n_pad = panels.len() / d;
        let mut out = vec![0f32; m * nc];
        for_each_tile(
            |i| x.row(rows[i]),
            m,
            d,
            &panels,
            &mut out,
            nc,
            |i0, r, dots, o| {
                for i in 0..r {
                    let s = sq[i0 + i];
                    for (c, &cand) in cands.iter().enumerate() {
                        let dot = dots[i * n_pad + c];
                        let v = ((-2.0 * dot + sq[cand]) + s) as f32;
                        o[i * nc + c] = v.max(0.0);
                    }
                }
            },
        );
        (out, nc)
    };

    let mut centers = Vec::with_capacity(k * d);
    let p = (1.0f32 / m as f32) as f64;
    let first = rs.choice_with_cdf(&normalized_cdf(&vec![p; m]), 1)[0];
    centers.extend_from_slice(x.row(rows[first]));
    let mut closest = dists(&[first]).0;
    let mut pot = sum_f32(&closest);
    let mut cum = vec![0f32; m];
    let mut dist = vec![0f32; m];
    let mut best_dist = vec![0f32; m];

    for _ in 1..k {
        let rand_vals: Vec<f64> = (0..trials)
            .map(|_| rs.uniform(0.0, 1.0) * f64::from(pot))
            .collect();
        // Running float32 sum of the weighted distances (sequential, as
        // numpy's cumsum), searched with side="left".
        let mut acc = 0f32;
        for (c, &v) in cum.iter_mut().zip(&closest) {
            acc += v;
            *c = acc;
        }
        let cands: Vec<usize> = rand_vals
            .iter()
            .map(|&r| cum.partition_point(|&c| (c as f64) < r).min(m - 1))
            .collect();
        let (all, nc) = dists(&cands);
        let mut best: Option<(f32, usize)> = None;
        for (ci, &cand) in cands.iter().enumerate() {
            for (i, (o, &b)) in dist.iter_mut().zip(&closest).enumerate() {
                *o = all[i * nc + ci].min(b);
            }
            let cand_pot = sum_f32(&dist);
            if best.is_none_or(|(bp, _)| cand_pot < bp) {
                best = Some((cand_pot, cand));
                std::mem::swap(&mut dist, &mut best_dist);
            }
        }
        // There are always at least two candidates.
        let Some((bp, bc)) = best else { break };
        pot = bp;
        std::mem::swap(&mut closest, &mut best_dist);
        centers.extend_from_slice(x.row(rows[bc]));
    }
    centers
}

/// Nearest centre per row, scored as `|c|^2 - 2 x.c` in f32 (the form the
/// reference's chunked GEMM uses); the first minimum wins.
fn assign_labels<'a>(
    row: impl Fn(usize) -> &'a [f32] + Sync,
    n: usize,
    d: usize,
    centers: &[f32],
    k: usize,
) -> Vec<usize> {
    let panels = pack_panels(centers.chunks_exact(d).take(k), k, d);
    let n_pad = panels.len() / d;
    let c_sq: Vec<f32> = panel_sq_norms(&panels, d)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut labels = vec![0usize; n];
    for_each_tile(row, n, d, &panels, &mut labels, 1, |_, r, dots, out| {
        for (i, label) in out.iter_mut().enumerate().take(r) {
            let row = &dots[i * n_pad..i * n_pad + k];
            let mut best = f32::INFINITY;
            let mut arg = 0;
            for (j, (&dot, &cs)) in row.iter().zip(&c_sq).enumerate() {
                let v = cs + (-2.0f32 * dot as f32);
                if j == 0 || v < best {
                    best = v;
                    arg = j;
                }
            }
            *label = arg;
        }
    });
    labels
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
fn inertia_dense<'a>(
    row: impl Fn(usize) -> &'a [f32],
    d: usize,
    centers: &[f32],
    labels: &[usize],
) -> f32 {
    let mut inertia = 0f32;
    for (i, &j) in labels.iter().enumerate() {
        inertia += sq_dist_unrolled(row(i), &centers[j * d..(j + 1) * d]) * 1.0;
    }
    inertia
}

/// Running-mean centre update: old centre weighted by its count, plus the
/// batch members, divided by the new count; untouched centres are copied.
fn update_centers<'a>(
    xb: impl Fn(usize) -> &'a [f32],
    d: usize,
    labels: &[usize],
    old: &[f32],
    new: &mut [f32],
    counts: &mut [f32],
) {
    // Batch rows grouped by centre, each group in row order.
    let k = counts.len();
    let mut start = vec![0usize; k + 1];
    for &l in labels {
        start[l + 1] += 1;
    }
    for c in 0..k {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l]] = i;
        fill[l] += 1;
    }
    for (c, count) in counts.iter_mut().enumerate() {
        let members = &order[start[c]..start[c + 1]];
        let mut wsum = 0f32;
        for _ in members {
            wsum += 1.0;
        }
        let dst = &mut new[c * d..(c + 1) * d];
        let src = &old[c * d..(c + 1) * d];
        if wsum > 0.0 {
            for (o, &s) in dst.iter_mut().zip(src) {
                *o = s * *count;
            }
            for &i in members {
                for (o, &v) in dst.iter_mut().zip(xb(i)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD kernel and the portable one give the same bits.
    #[test]
    fn kernels_agree() {
        let mut s = 0x1234_5678u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        };
        for &(n, d) in &[(1usize, 1usize), (5, 7), (13, 384), (77, 33), (9, 100)] {
            let rows: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let panels = pack_panels(rows.chunks_exact(d), n, d);
            let n_pad = panels.len() / d;
            for r in 1..=MR {
                let a: Vec<f64> = (0..r * d).map(|_| f64::from(next())).collect();
                let mut x = vec![0f64; r * n_pad];
                let mut y = vec![1f64; r * n_pad];
                dots_tile(&a, r, d, &panels, &mut x);
                dots_tile_portable(&a, r, d, &panels, &mut y);
                assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
                for i in 0..r {
                    for j in 0..n {
                        let want: f64 = a[i * d..(i + 1) * d]
                            .iter()
                            .zip(&rows[j * d..(j + 1) * d])
                            .map(|(&p, &q)| p * f64::from(q))
                            .sum();
                        assert_eq!(x[i * n_pad + j].to_bits(), want.to_bits());
                    }
                }
            }
        }
    }
}
