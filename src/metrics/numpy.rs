//! numpy's float64 reductions in numpy's own order of additions, so that means
//! and sums come out bit-identical to the reference (`np.sum`, `np.mean`,
//! `np.std` on a contiguous 1-D array; checked against numpy 2.4.6).
//!
//! numpy does not add left to right: below 8 values it does, up to 128 it
//! keeps 8 interleaved partial sums, and beyond that it splits the array in
//! two (at a multiple of 8) and adds the two halves' sums.

/// `np.sum(values)` (0 for an empty slice).
pub fn sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        let mut total = 0.0;
        for &v in values {
            total += v;
        }
        total
    } else if n <= 128 {
        let mut partial = [0.0; 8];
        partial.copy_from_slice(&values[..8]);
        let blocks_end = n - n % 8;
        for block in values[8..blocks_end].chunks_exact(8) {
            for (p, &v) in partial.iter_mut().zip(block) {
                *p += v;
            }
        }
        let mut total = ((partial[0] + partial[1]) + (partial[2] + partial[3]))
            + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
        for &v in &values[blocks_end..] {
            total += v;
        }
        total
    } else {
        let half = n / 2;
        let split = half - half % 8;
        sum(&values[..split]) + sum(&values[split..])
    }
}

/// `np.mean(values)` (NaN for an empty slice).
pub fn mean(values: &[f64]) -> f64 {
    sum(values) / values.len() as f64
}

/// `np.std(values)`: the population standard deviation (`ddof=0`), computed
/// as numpy does from the deviations from [`mean`].
pub fn std(values: &[f64]) -> f64 {
    let m = mean(values);
    let squares: Vec<f64> = values.iter().map(|v| (v - m) * (v - m)).collect();
    (sum(&squares) / values.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_summation_order() {
        // Harmonic terms 1 / i; expected values from numpy 2.4.6
        // (np.sum / np.mean / np.std of 1.0 / np.arange(1, n + 1)). Left-to-right
        // addition gives 5.44089903057367, 6.282663880299502 and 7.485470860550343
        // for the last three sums.
        let harmonic = |n: usize| (1..=n).map(|i| 1.0 / i as f64).collect::<Vec<f64>>();
        assert_eq!(sum(&harmonic(10)), 2.9289682539682538);
        assert_eq!(sum(&harmonic(129)), 5.440899030573669);
        assert_eq!(sum(&harmonic(300)), 6.282663880299504);
        assert_eq!(sum(&harmonic(1000)), 7.485470860550345);
        assert_eq!(mean(&harmonic(13)), 0.24462567347182732);
        assert_eq!(std(&harmonic(100)), 0.11687151257170256);
        assert_eq!(std(&harmonic(1000)), 0.039848491723996425);
        assert_eq!(sum(&[]), 0.0);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn std_is_population() {
        assert_eq!(std(&[1.0, 3.0]), 1.0);
        assert_eq!(std(&[2.0; 9]), 0.0);
    }
}
