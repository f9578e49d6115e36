//! Correlation coefficients, matching `scipy.stats.pearsonr` and `spearmanr`.

/// 1-based ranks with ties given their average rank (`scipy.stats.rankdata`'s
/// default). NaNs rank after every number.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    // NaNs last; total_cmp also breaks ties between NaNs, -0.0 and 0.0 consistently.
    order.sort_by(|&a, &b| {
        x[a].is_nan()
            .cmp(&x[b].is_nan())
            .then(x[a].total_cmp(&x[b]))
    });
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        // `==` rather than total_cmp so that -0.0 and 0.0 tie, as in scipy.
        let value = x[order[start]];
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == value {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson correlation coefficient. NaN when either input is constant, has
/// fewer than two values, or contains NaN.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: inputs differ in length");
    if x.len() < 2 {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    // Rounding can push |r| a hair past 1; scipy clips too.
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman rank correlation: Pearson on average ranks. NaN when either input
/// is constant, has fewer than two values, or contains NaN (scipy's default
/// `nan_policy="propagate"`).
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "spearman: inputs differ in length");
    // Ranking would hide NaNs, so propagate them explicitly.
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return f64::NAN;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    // Expected values below come from scipy 1.17.1:
    // stats.rankdata, stats.spearmanr(x, y).statistic, stats.pearsonr(x, y).statistic.
    const X: [f64; 8] = [1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, 0.5];
    const Y: [f64; 8] = [2.0, 1.0, 4.0, 4.0, 3.0, 6.0, 6.0, -1.0];

    #[test]
    fn ranks_average_ties() {
        assert_eq!(average_ranks(&X), [2.0, 3.5, 3.5, 5.0, 7.0, 7.0, 7.0, 1.0]);
        assert_eq!(average_ranks(&Y), [3.0, 2.0, 5.5, 5.5, 4.0, 7.5, 7.5, 1.0]);
        assert_eq!(average_ranks(&[0.0, -0.0]), [1.5, 1.5]);
        assert!(average_ranks(&[]).is_empty());
    }

    #[test]
    fn matches_scipy_with_ties() {
        assert!(close(spearman(&X, &Y), 0.7889568540593018));
        assert!(close(pearson(&X, &Y), 0.7965621109533714));
        let c = [3.0, 3.0, 3.0, 1.0];
        let d = [1.0, 2.0, 3.0, 4.0];
        assert!(close(spearman(&c, &d), -0.7745966692414834));
        assert!(close(pearson(&c, &d), -0.7745966692414834));
    }

    #[test]
    fn matches_scipy_monotone() {
        let a = [0.1, 0.4, 0.35, 0.8];
        let b = [1.0, 3.0, 2.0, 4.0];
        assert!(close(spearman(&a, &b), 1.0));
        assert!(close(pearson(&a, &b), 0.957923726611343));
    }

    #[test]
    fn degenerate_inputs_are_nan() {
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(pearson(&[1.0], &[2.0]).is_nan());
        assert!(pearson(&[], &[]).is_nan());
        assert!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]).is_nan());
    }
}
