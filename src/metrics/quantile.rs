//! Percentiles with linear interpolation between order statistics (numpy's default
//! `linear` method, Hyndman & Fan type 7).

/// The `q`-th percentile (0–100) of `values`; NaN for an empty slice.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, q)
}

/// As `percentile`, for values already sorted ascending.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = (q.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
            let low = rank.floor() as usize;
            let high = (low + 1).min(n - 1);
            sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4, 10], [0, 1, 50, 90, 99, 100])
        let v = [4.0, 1.0, 10.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!((percentile(&v, 1.0) - 1.04).abs() < 1e-12);
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert!((percentile(&v, 90.0) - 7.6).abs() < 1e-12);
        assert!((percentile(&v, 99.0) - 9.76).abs() < 1e-12);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }
}
