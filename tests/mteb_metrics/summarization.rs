//! mteb's summarization scores against the numpy/scipy re-enactment
//! (fixture: summarization.json.gz). Per-article predictions are float32
//! results whose reference reductions have an unknown summation order, so they
//! and the correlations built on them agree to 1e-6, not bit for bit.

use assay::metrics::pair_classification::ModelSimilarity;
use assay::metrics::summarization::{evaluate_summarization, Aggregation, SummarizationOptions};

use crate::fixtures;

#[test]
fn summarization_matches_reference() {
    let fx = fixtures::load("summarization");
    let human: Vec<Vec<Vec<f32>>> = fx["human"]
        .as_array()
        .unwrap()
        .iter()
        .map(fixtures::matrix)
        .collect();
    let machine: Vec<Vec<Vec<f32>>> = fx["machine"]
        .as_array()
        .unwrap()
        .iter()
        .map(fixtures::matrix)
        .collect();
    let relevance: Vec<Vec<f64>> = fx["relevance"]
        .as_array()
        .unwrap()
        .iter()
        .map(fixtures::floats)
        .collect();
    let mut opts = SummarizationOptions {
        min_score: fixtures::f(&fx["min_score"]),
        max_score: fixtures::f(&fx["max_score"]),
        model_similarity: ModelSimilarity::Cosine,
        aggregation: Aggregation::MeanStatistic,
    };
    let r = evaluate_summarization(&human, &machine, &relevance, &opts).unwrap();

    // Same articles skipped, same per-article predictions.
    let dist = &fx["distances"];
    assert_eq!(r.skipped, fixtures::usizes(&dist["skipped"]));
    let mut pd = fixtures::MaxDiff::new("summarization predictions");
    for (j, a) in r.articles.iter().enumerate() {
        for (key, got) in [
            ("cos", &a.cosine),
            ("dot", &a.dot),
            ("sim", &a.similarity),
            ("human", &a.human_scores),
        ] {
            let want = fixtures::floats(&dist[key][j]);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                pd.check(g / (1.0 + w.abs()), w / (1.0 + w.abs()), 1e-6, key);
            }
        }
    }
    pd.report();

    let mut md = fixtures::MaxDiff::new("summarization metrics");
    for (k, v) in r.mteb_scores() {
        md.check(v, fixtures::f(&fx["metrics"][k]), 1e-6, k);
    }
    md.check(
        r.main_score(),
        fixtures::f(&fx["metrics"]["cosine_spearman"]),
        1e-6,
        "main",
    );
    md.report();

    opts.aggregation = Aggregation::DeprecatedWithPValues;
    let r = evaluate_summarization(&human, &machine, &relevance, &opts).unwrap();
    let mut dd = fixtures::MaxDiff::new("summarization metrics (deprecated evaluator)");
    for (k, v) in r.mteb_scores() {
        dd.check(v, fixtures::f(&fx["metrics_deprecated"][k]), 1e-6, k);
    }
    dd.report();
}
