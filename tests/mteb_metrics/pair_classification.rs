//! mteb's pair-classification scores against scikit-learn (fixture:
//! pair_classification.json.gz): the metric logic on the reference's own score
//! lists must agree bit for bit; end to end from embeddings, where the float32
//! score lists differ from numpy's in summation order, to 1e-6.

use assay::metrics::pair_classification::{
    evaluate_pair_classification, evaluate_pair_scores, pair_scores, ModelSimilarity, PairScores,
    ThresholdMetrics,
};
use serde_json::Value;

use crate::fixtures;

const NAMES: [&str; 5] = ["similarity", "cosine", "manhattan", "euclidean", "dot"];

fn get<'a>(s: &'a PairScores, name: &str) -> &'a [f64] {
    match name {
        "similarity" => &s.similarity,
        "cosine" => &s.cosine,
        "manhattan" => &s.manhattan,
        "euclidean" => &s.euclidean,
        _ => &s.dot,
    }
}

fn compare(
    m: &ThresholdMetrics,
    want: &Value,
    tol: f64,
    md: &mut fixtures::MaxDiff,
    td: &mut fixtures::MaxDiff,
    ctx: &str,
) {
    md.check(
        m.accuracy,
        fixtures::f(&want["accuracy"]),
        tol,
        &format!("{ctx} accuracy"),
    );
    md.check(m.f1, fixtures::f(&want["f1"]), tol, &format!("{ctx} f1"));
    md.check(
        m.precision,
        fixtures::f(&want["precision"]),
        tol,
        &format!("{ctx} precision"),
    );
    md.check(
        m.recall,
        fixtures::f(&want["recall"]),
        tol,
        &format!("{ctx} recall"),
    );
    md.check(m.ap, fixtures::f(&want["ap"]), tol, &format!("{ctx} ap"));
    // Thresholds are midpoints of two scores; compare them relative to the
    // score scale.
    let scale = 1.0 + fixtures::f(&want["accuracy_threshold"]).abs();
    td.check(
        m.accuracy_threshold / scale,
        fixtures::f(&want["accuracy_threshold"]) / scale,
        tol,
        &format!("{ctx} accuracy_threshold"),
    );
    let scale = 1.0 + fixtures::f(&want["f1_threshold"]).abs();
    td.check(
        m.f1_threshold / scale,
        fixtures::f(&want["f1_threshold"]) / scale,
        tol,
        &format!("{ctx} f1_threshold"),
    );
}

fn labels(case: &Value) -> Vec<u8> {
    fixtures::usizes(&case["labels"])
        .into_iter()
        .map(|l| l as u8)
        .collect()
}

/// Metric logic alone: fed the reference's own score lists, every metric
/// (thresholds included) must come out bit-identical.
#[test]
fn metrics_from_reference_scores() {
    let fx = fixtures::load("pair_classification");
    let mut md = fixtures::MaxDiff::new("pair metrics from reference scores");
    let mut td = fixtures::MaxDiff::new("pair thresholds from reference scores (relative)");
    for case in fx["cases"].as_array().unwrap() {
        let sc = &case["scores"];
        let scores = PairScores {
            similarity: fixtures::floats(&sc["similarity"]),
            cosine: fixtures::floats(&sc["cosine"]),
            manhattan: fixtures::floats(&sc["manhattan"]),
            euclidean: fixtures::floats(&sc["euclidean"]),
            dot: fixtures::floats(&sc["dot"]),
        };
        let r = evaluate_pair_scores(&scores, &labels(case)).unwrap();
        let want = &case["metrics"];
        let name = case["name"].as_str().unwrap();
        for (fname, m) in r.per_function() {
            compare(
                m,
                &want[fname],
                0.0,
                &mut md,
                &mut td,
                &format!("{name}/{fname}"),
            );
        }
        for (k, v) in r.mteb_scores() {
            if k.starts_with("max_") {
                md.check(v, fixtures::f(&want[&k]), 0.0, &format!("{name}/{k}"));
            }
        }
    }
    md.report();
    td.report();
}

/// End to end from embeddings. The score lists are float32 results whose
/// reference values come out of BLAS/SIMD reductions with an unknown
/// summation order, so they agree to float32 rounding (checked at 1e-5
/// relative); the metrics built on them must agree to 1e-6.
#[test]
fn metrics_from_embeddings() {
    let fx = fixtures::load("pair_classification");
    let mut sd = fixtures::MaxDiff::new("pair scores (relative)");
    let mut md = fixtures::MaxDiff::new("pair metrics from embeddings");
    let mut td = fixtures::MaxDiff::new("pair thresholds from embeddings (relative)");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let e1 = fixtures::matrix(&case["e1"]);
        let e2 = fixtures::matrix(&case["e2"]);
        let s = pair_scores(&e1, &e2, ModelSimilarity::Cosine).unwrap();
        for n in NAMES {
            let want = fixtures::floats(&case["scores"][n]);
            for (g, w) in get(&s, n).iter().zip(&want) {
                let scale = 1.0 + w.abs();
                sd.check(g / scale, w / scale, 1e-5, &format!("{name}/{n} score"));
            }
        }
        let r =
            evaluate_pair_classification(&e1, &e2, &labels(case), ModelSimilarity::Cosine).unwrap();
        let want = &case["metrics"];
        if name == "integer_ties" {
            // Small-integer vectors: many pairs share the same exact cosine,
            // and which of them stay tied after float32 rounding depends on
            // the reduction order. Only the exactly computable scores are
            // compared end to end here; the cosine tie logic is covered by
            // `metrics_from_reference_scores`.
            for (fname, m) in r.per_function().into_iter().skip(2) {
                compare(
                    m,
                    &want[fname],
                    1e-6,
                    &mut md,
                    &mut td,
                    &format!("{name}/{fname}"),
                );
            }
            continue;
        }
        for (fname, m) in r.per_function() {
            compare(
                m,
                &want[fname],
                1e-6,
                &mut md,
                &mut td,
                &format!("{name}/{fname}"),
            );
        }
        md.check(r.main_score(), fixtures::f(&want["max_ap"]), 1e-6, "max_ap");
        md.check(
            r.max_accuracy,
            fixtures::f(&want["max_accuracy"]),
            1e-6,
            "max_accuracy",
        );
        md.check(r.max_f1, fixtures::f(&want["max_f1"]), 1e-6, "max_f1");
    }
    sd.report();
    md.report();
    td.report();
}
