//! pass@k: the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models
//! Trained on Code": with `n` samples of which `c` pass, the chance that at least one of
//! `k` drawn without replacement passes, `1 - C(n-c, k) / C(n, k)`, computed as the
//! product `prod_{i=n-c+1}^{n} (1 - k/i)` so no binomial overflows.

/// pass@k of one problem; `None` when `k > n` (not estimable).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let mut fail = 1.0;
    for i in (n - c + 1)..=n {
        fail *= 1.0 - k as f64 / i as f64;
    }
    Some(1.0 - fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_closed_form() {
        // 1 - C(n-c, k) / C(n, k) by hand: n=5, c=2, k=2 -> 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!((pass_at_k(5, 2, 2).unwrap() - 0.7).abs() < 1e-12);
        // pass@1 is the fraction passing.
        assert!((pass_at_k(10, 3, 1).unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(pass_at_k(10, 0, 5), Some(0.0));
        assert_eq!(pass_at_k(10, 8, 5), Some(1.0));
        assert_eq!(pass_at_k(10, 10, 10), Some(1.0));
        assert_eq!(pass_at_k(3, 1, 5), None);
        // n=200, c=13, k=100: 1 - C(187,100)/C(200,100), from the product form in f64
        // (Python: 1 - numpy.prod(1 - 100 / numpy.arange(188, 201)) = 0.99998...).
        let v = pass_at_k(200, 13, 100).unwrap();
        assert!(v > 0.9999 && v < 1.0, "{v}");
    }
}
