//! scipy's pearsonr / spearmanr statistics and p-values (fixture: stats.json.gz),
//! including two-point and tied inputs.

use assay::metrics::correlation::{pearson_with_pvalue, spearman_with_pvalue};

use crate::fixtures;

#[test]
fn correlations_match_scipy() {
    let fx = fixtures::load("stats");
    let mut stat = fixtures::MaxDiff::new("scipy statistic");
    let mut pval = fixtures::MaxDiff::new("scipy p-value");
    for case in fx["cases"].as_array().unwrap() {
        let x = fixtures::floats(&case["x"]);
        let y = fixtures::floats(&case["y"]);
        let s = spearman_with_pvalue(&x, &y);
        let p = pearson_with_pvalue(&x, &y);
        stat.check(
            s.statistic,
            fixtures::f(&case["spearman"]),
            1e-12,
            "spearman",
        );
        stat.check(p.statistic, fixtures::f(&case["pearson"]), 1e-12, "pearson");
        pval.check(
            s.pvalue,
            fixtures::f(&case["spearman_p"]),
            1e-10,
            "spearman p",
        );
        pval.check(
            p.pvalue,
            fixtures::f(&case["pearson_p"]),
            1e-10,
            "pearson p",
        );
    }
    stat.report();
    pval.report();
}
