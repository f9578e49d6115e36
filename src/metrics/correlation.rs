//! Correlation coefficients, matching `scipy.stats.pearsonr` and `spearmanr`,
//! with their two-sided p-values where a caller needs them.

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
    let r = correlate(x, y);
    // Two distinct points are perfectly correlated: scipy's pearsonr rounds to
    // exactly +-1 (its spearmanr does not).
    if x.len() == 2 {
        r.round()
    } else {
        r
    }
}

/// The Pearson coefficient without pearsonr's two-point rounding.
fn correlate(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: inputs differ in length");
    // scipy tests constancy with `==` before any arithmetic: a constant input
    // whose mean does not come out exact must still give NaN.
    if x.len() < 2 || is_constant(x) || is_constant(y) {
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

fn is_constant(x: &[f64]) -> bool {
    x.iter().all(|&v| v == x[0])
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
    correlate(&average_ranks(x), &average_ranks(y))
}

/// A coefficient with its two-sided p-value, as in scipy's result objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correlation {
    pub statistic: f64,
    pub pvalue: f64,
}

impl Correlation {
    const NAN: Correlation = Correlation {
        statistic: f64::NAN,
        pvalue: f64::NAN,
    };
}

/// `scipy.stats.pearsonr(x, y)`: [`pearson`] and the p-value of the exact null
/// distribution (r follows a Beta(n/2 - 1, n/2 - 1) law stretched to [-1, 1]).
/// For two points the p-value is 1. Both NaN where the statistic is NaN or
/// the lengths differ.
pub fn pearson_with_pvalue(x: &[f64], y: &[f64]) -> Correlation {
    if x.len() != y.len() {
        return Correlation::NAN;
    }
    let r = pearson(x, y);
    if r.is_nan() {
        return Correlation::NAN;
    }
    let n = x.len();
    let pvalue = if n == 2 {
        1.0
    } else {
        let a = n as f64 / 2.0 - 1.0;
        // Two-sided: 2 P(R >= |r|), which by symmetry is 2 I_{(1-|r|)/2}(a, a).
        (2.0 * reg_inc_beta(a, a, (1.0 - r.abs()) / 2.0)).min(1.0)
    };
    Correlation {
        statistic: r,
        pvalue,
    }
}

/// `scipy.stats.spearmanr(x, y)`: [`spearman`] and scipy's p-value from
/// Student's t with n - 2 degrees of freedom. Both NaN where the statistic is
/// NaN or the lengths differ; the p-value alone is NaN for two points.
pub fn spearman_with_pvalue(x: &[f64], y: &[f64]) -> Correlation {
    if x.len() != y.len() {
        return Correlation::NAN;
    }
    let rs = spearman(x, y);
    if rs.is_nan() {
        return Correlation::NAN;
    }
    let dof = (x.len() - 2) as f64;
    // scipy: t = rs * sqrt((dof / ((rs + 1) (1 - rs))).clip(0)); a 0/0 stays NaN.
    let q = dof / ((rs + 1.0) * (1.0 - rs));
    let t = rs
        * if q.is_nan() {
            f64::NAN
        } else {
            q.max(0.0).sqrt()
        };
    Correlation {
        statistic: rs,
        pvalue: 2.0 * student_t_sf(t.abs(), dof),
    }
}

/// Survival function of Student's t with `df` degrees of freedom at `t >= 0`.
fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    0.5 * reg_inc_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// ln Gamma(x) for x > 0: Lanczos approximation (g = 7, 9 coefficients),
/// relative error around 1e-15.
fn ln_gamma(x: f64) -> f64 {
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Gamma(x) Gamma(1 - x) = pi / sin(pi x).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        acc += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

/// Regularised incomplete beta function I_x(a, b), by its continued fraction
/// (modified Lentz), evaluated on whichever side of I_x(a, b) = 1 - I_{1-x}(b, a)
/// converges faster.
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-16;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=10_000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        // Even step.
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / guard(1.0 + aa * d);
        c = guard(1.0 + aa / c);
        h *= d * c;
        // Odd step.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / guard(1.0 + aa * d);
        c = guard(1.0 + aa / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < EPS {
            break;
        }
    }
    h
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
    fn incomplete_beta_known_values() {
        // I_x(1, 1) = x; I_x(a, 1) = x^a; I_0.5(a, a) = 0.5.
        assert!((reg_inc_beta(1.0, 1.0, 0.3) - 0.3).abs() < 1e-14);
        assert!((reg_inc_beta(2.5, 1.0, 0.4) - 0.4f64.powf(2.5)).abs() < 1e-14);
        assert!((reg_inc_beta(7.0, 7.0, 0.5) - 0.5).abs() < 1e-14);
    }

    #[test]
    fn pvalues_match_scipy() {
        // scipy 1.17.1: stats.pearsonr(X, Y).pvalue, stats.spearmanr(X, Y).pvalue.
        let p = pearson_with_pvalue(&X, &Y);
        assert!(close(p.statistic, 0.7965621109533714));
        assert!((p.pvalue - 0.017968218164152373).abs() < 1e-12);
        let s = spearman_with_pvalue(&X, &Y);
        assert!(close(s.statistic, 0.7889568540593018));
        assert!((s.pvalue - 0.019936718107142443).abs() < 1e-12);
        // Two points: statistic exactly -1; pearson's p-value 1, spearman's NaN.
        let p = pearson_with_pvalue(&[1.0, 2.0], &[3.0, 1.0]);
        assert_eq!((p.statistic, p.pvalue), (-1.0, 1.0));
        assert!(spearman_with_pvalue(&[1.0, 2.0], &[3.0, 1.0])
            .pvalue
            .is_nan());
        assert!(pearson_with_pvalue(&[1.0, 2.0], &[1.0]).statistic.is_nan());
    }

    #[test]
    fn degenerate_inputs_are_nan() {
        // A constant input whose mean is inexact (3 * 0.1 / 3 != 0.1).
        assert!(pearson(&[0.1, 0.1, 0.1], &[1.0, 2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(pearson(&[1.0], &[2.0]).is_nan());
        assert!(pearson(&[], &[]).is_nan());
        assert!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]).is_nan());
    }
}
