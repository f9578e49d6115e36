//! Seeded percentile-bootstrap confidence intervals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A confidence interval; both ends NaN when it cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    #[serde(deserialize_with = "null_as_nan")]
    pub low: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub high: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, and this reads `null` back as NaN.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`null_as_nan`] for every element of a list.
pub fn nulls_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(<Vec<Option<f64>> as serde::Deserialize>::deserialize(d)?
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

impl Interval {
    pub const NAN: Interval = Interval {
        low: f64::NAN,
        high: f64::NAN,
    };

    /// Whether the interval could be computed (its ends are not NaN).
    pub fn is_known(&self) -> bool {
        self.low.is_finite() && self.high.is_finite()
    }
}

/// 95% CI of the mean of per-item values, by the percentile bootstrap.
/// Deterministic for a given `seed`. NaN interval when `values` is empty or
/// `resamples` is 0.
pub fn mean_ci(values: &[f64], resamples: usize, seed: u64) -> Interval {
    interval(&mean_replicates(values, resamples, seed))
}

/// 95% CI of any statistic over items, by the percentile bootstrap: `stat`
/// receives the indices of one resample (`n_items` draws with replacement).
///
/// Deterministic for a given `seed`. Resamples where `stat` is NaN (e.g. a
/// correlation over a constant resample) are dropped; the interval is NaN when
/// `n_items` or `resamples` is 0 or every resample was dropped.
pub fn statistic_ci(
    n_items: usize,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> f64,
) -> Interval {
    interval(&replicates(n_items, resamples, seed, stat))
}

/// The bootstrap distribution behind [`statistic_ci`]: the statistic on each of
/// `resamples` resamples (NaN where undefined). Two runs over the same number of items
/// with the same seed draw the same resamples, so their replicates pair up (a suite's
/// aggregate combines tasks' replicates, and a gate compares two runs' replicates).
pub fn replicates(
    n_items: usize,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> f64,
) -> Vec<f64> {
    if n_items == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx = vec![0; n_items];
    (0..resamples)
        .map(|_| {
            for slot in idx.iter_mut() {
                *slot = rng.random_range(0..n_items);
            }
            stat(&idx)
        })
        .collect()
}

/// Mean of per-item values on each resample (the replicates behind [`mean_ci`]).
pub fn mean_replicates(values: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    replicates(values.len(), resamples, seed, |idx| {
        idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64
    })
}

/// The central 95% of bootstrap replicates; NaN replicates are dropped, and the
/// interval is NaN when none is left.
pub fn interval(replicates: &[f64]) -> Interval {
    let mut stats: Vec<f64> = replicates.iter().copied().filter(|s| !s.is_nan()).collect();
    if stats.is_empty() {
        return Interval::NAN;
    }
    stats.sort_by(f64::total_cmp);
    Interval {
        low: percentile(&stats, 2.5),
        high: percentile(&stats, 97.5),
    }
}

/// 95% CI of a statistic comparing two independent samples (e.g. a latency percentile of
/// two runs whose requests are not paired): each resample draws `n_a` indices into the
/// first and `n_b` into the second, with replacement. NaN when either side is empty.
pub fn two_sample_ci(
    n_a: usize,
    n_b: usize,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize], &[usize]) -> f64,
) -> Interval {
    if n_a == 0 || n_b == 0 {
        return Interval::NAN;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut a, mut b) = (vec![0; n_a], vec![0; n_b]);
    percentile_interval(resamples, || {
        a.iter_mut().for_each(|i| *i = rng.random_range(0..n_a));
        b.iter_mut().for_each(|i| *i = rng.random_range(0..n_b));
        stat(&a, &b)
    })
}

/// The central 95% of `resamples` statistics drawn by `draw`; NaN draws (a statistic
/// undefined on that resample) are dropped, and the interval is NaN when none is left.
fn percentile_interval(resamples: usize, mut draw: impl FnMut() -> f64) -> Interval {
    interval(&(0..resamples).map(|_| draw()).collect::<Vec<_>>())
}

/// `np.percentile(sorted, p)` with numpy's default linear interpolation,
/// reproduced operation for operation. `sorted` must be non-empty and ascending.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * (p / 100.0);
    let lo = pos.floor();
    let t = pos - lo;
    let a = sorted[lo as usize];
    let b = sorted[(lo as usize + 1).min(sorted.len() - 1)];
    let diff = b - a;
    // numpy's _lerp: interpolate from the nearer end for accuracy.
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile(v, [2.5, 97.5]) with numpy 2.4.6.
        let mut v = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3, 0.7, 2.2, 8.1, 6.4];
        v.sort_by(f64::total_cmp);
        assert_eq!(percentile(&v, 2.5), 0.7749999999999999);
        assert_eq!(percentile(&v, 97.5), 8.775);
        let w = [0.1, 0.2, 0.3];
        assert_eq!(percentile(&w, 2.5), 0.10500000000000001);
        assert_eq!(percentile(&w, 97.5), 0.295);
        assert_eq!(percentile(&[4.0], 97.5), 4.0);
    }

    #[test]
    fn deterministic_for_a_seed() {
        let values: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64).collect();
        let a = mean_ci(&values, 500, 7);
        assert_eq!(a, mean_ci(&values, 500, 7));
        assert_ne!(a, mean_ci(&values, 500, 8));
    }

    #[test]
    fn constant_values_give_zero_width() {
        let ci = mean_ci(&[0.1; 30], 200, 1);
        assert_eq!(ci.low, ci.high);
        assert!((ci.low - 0.1).abs() < 1e-12);
    }

    #[test]
    fn contains_the_sample_mean() {
        let values: Vec<f64> = (0..200)
            .map(|i| ((i * 7919) % 101) as f64 / 100.0)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let ci = mean_ci(&values, 1000, 42);
        assert!(ci.low < mean && mean < ci.high, "{ci:?} vs {mean}");
        // The standard error is ~0.02 here: the interval should be of that order.
        assert!(ci.high - ci.low < 0.2);
    }

    #[test]
    fn empty_inputs_give_nan() {
        let ci = mean_ci(&[], 100, 0);
        assert!(ci.low.is_nan() && ci.high.is_nan());
        let ci = mean_ci(&[1.0, 2.0], 0, 0);
        assert!(ci.low.is_nan() && ci.high.is_nan());
        let ci = statistic_ci(5, 100, 0, |_| f64::NAN);
        assert!(ci.low.is_nan() && ci.high.is_nan());
    }

    #[test]
    fn statistic_sees_resampled_indices() {
        let ci = statistic_ci(10, 100, 3, |idx| {
            assert_eq!(idx.len(), 10);
            assert!(idx.iter().all(|&i| i < 10));
            idx.iter().max().copied().unwrap_or(0) as f64
        });
        assert!(ci.low <= ci.high && ci.high <= 9.0);
    }
}
