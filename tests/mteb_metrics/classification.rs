//! mteb's classification probe against numpy and scikit-learn on a synthetic
//! 20-class, 64-dimensional data set (fixtures: sampling.json, blobs.bin.gz,
//! sklearn_probe.json.gz).
//!
//! What must agree, and how closely:
//! * undersampled training indices: identical;
//! * scores computed from scikit-learn's own predictions: bit-identical;
//! * the whole probe against scikit-learn fitted on float64 input: accuracy
//!   and macro F1 of every experiment within 0.005, at least 99.5% of test
//!   predictions identical, iteration counts equal in at least 90% of the
//!   experiments (the optimiser retraces SciPy's path, but float summation
//!   order differs, and at tol=1e-4 a fit often stops after a few steps);
//! * coefficients after (near) convergence: relative L2 difference below 1e-8.
//!
//! Run with `--nocapture` to see the observed numbers.

use std::collections::HashMap;

use assay::metrics::classification::{
    classification_scores, probe, undersample_experiments, ClassificationScores, ProbeConfig,
    ProbeScores,
};
use assay::metrics::logistic::{fit, LogisticParams};
use assay::metrics::MetricError;
use serde_json::Value;

use crate::fixtures::{self, floats, i64s, load_blobs, usizes, Blobs};

const SCORE_TOL: f64 = 0.005;

#[test]
fn undersampling_matches_mteb() {
    let fx = fixtures::json("sampling.json");
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let labels = i64s(&case["labels"]);
        let spl = case["samples_per_label"].as_u64().unwrap() as usize;
        let seed = case["seed"].as_u64().unwrap() as u32;
        let n_exp = case["n_experiments"].as_u64().unwrap() as usize;
        let expected: Vec<Vec<usize>> = case["selected"]
            .as_array()
            .unwrap()
            .iter()
            .map(usizes)
            .collect();
        let got = undersample_experiments(&labels, spl, n_exp, seed);
        assert_eq!(got, expected, "case {} spl {spl} seed {seed}", case["name"]);
    }
}

struct Subset {
    train: Vec<Vec<f32>>,
    train_labels: Vec<i64>,
    test: Vec<Vec<f32>>,
    test_labels: Vec<i64>,
}

/// Rows of the listed classes (original order kept), optionally relabelled,
/// scaled in float32 like the Python side.
fn subset(b: &Blobs, classes: &[i64], relabel: &HashMap<i64, i64>, scale: f32) -> Subset {
    let pick = |rows: &[Vec<f32>], labels: &[i64]| {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for (r, &l) in rows.iter().zip(labels) {
            if classes.contains(&l) {
                xs.push(r.iter().map(|v| v * scale).collect::<Vec<f32>>());
                ys.push(*relabel.get(&l).unwrap_or(&l));
            }
        }
        (xs, ys)
    };
    let (train, train_labels) = pick(&b.train, &b.train_labels);
    let (test, test_labels) = pick(&b.test, &b.test_labels);
    Subset {
        train,
        train_labels,
        test,
        test_labels,
    }
}

fn relabel_map(v: &Value) -> HashMap<i64, i64> {
    match v.as_object() {
        None => HashMap::new(),
        Some(m) => m
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.as_i64().unwrap()))
            .collect(),
    }
}

const SCORE_KEYS: [&str; 7] = [
    "accuracy",
    "f1",
    "f1_weighted",
    "precision",
    "precision_weighted",
    "recall",
    "recall_weighted",
];

fn score_fields(s: &ClassificationScores) -> [f64; 7] {
    [
        s.accuracy,
        s.f1,
        s.f1_weighted,
        s.precision,
        s.precision_weighted,
        s.recall,
        s.recall_weighted,
    ]
}

#[test]
fn scores_match_sklearn_exactly() {
    let fx = fixtures::json("sklearn_probe.json.gz");
    let blobs = load_blobs();
    let mut checked = 0;
    for run in fx["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let classes = i64s(&run["classes"]);
        let data = subset(&blobs, &classes, &relabel_map(&run["relabel"]), 1.0);
        for exp in run["experiments"].as_array().unwrap() {
            let pred = i64s(&exp["predictions"]);
            let want = &exp["scores"];
            match classification_scores(&data.test_labels, &pred) {
                Ok(got) => {
                    for (k, g) in SCORE_KEYS.iter().zip(score_fields(&got)) {
                        let w = want[*k].as_f64().unwrap();
                        assert_eq!(g.to_bits(), w.to_bits(), "{name} {k}: {g} vs {w}");
                    }
                    for (k, g) in [("ap", got.ap), ("ap_weighted", got.ap_weighted)] {
                        assert_eq!(g, want[k].as_f64(), "{name} {k}");
                    }
                    assert!(want["ap_error"].is_null());
                }
                Err(e) => {
                    assert!(!want["ap_error"].is_null(), "unexpected error {e:?}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 150);
    println!("scores of {checked} experiments bit-identical to scikit-learn's");
}

#[test]
fn probe_matches_sklearn() {
    let fx = fixtures::json("sklearn_probe.json.gz");
    let blobs = load_blobs();
    println!(
        "{:>28} {:>7} {:>5} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "run", "sk", "exps", "max|dacc|", "max|df1|", "min agree", "mean|dacc|", "iters eq"
    );
    let (mut worst_acc, mut worst_f1, mut worst_agree) = (0.0_f64, 0.0_f64, 1.0_f64);
    // The same probe is compared with scikit-learn run on float64 and on float32.
    let mut cache: HashMap<String, Result<ProbeScores, MetricError>> = HashMap::new();
    for run in fx["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let sk_dtype = run["sklearn_dtype"].as_str().unwrap();
        let classes = i64s(&run["classes"]);
        let scale = run["scale"].as_f64().unwrap() as f32;
        let data = subset(&blobs, &classes, &relabel_map(&run["relabel"]), scale);
        let cfg = ProbeConfig {
            samples_per_label: run["samples_per_label"].as_u64().unwrap() as usize,
            n_experiments: run["n_experiments"].as_u64().unwrap() as usize,
            seed: run["seed"].as_u64().unwrap() as u32,
            max_iter: run["max_iter"].as_u64().unwrap() as usize,
            ..ProbeConfig::default()
        };
        let exps = run["experiments"].as_array().unwrap();
        let result = cache
            .entry(name.to_string())
            .or_insert_with(|| {
                probe(
                    &data.train,
                    &data.train_labels,
                    &data.test,
                    &data.test_labels,
                    &cfg,
                )
            })
            .clone();
        if !exps[0]["scores"]["ap_error"].is_null() {
            // scikit-learn (hence mteb) raises for binary labels without a 1.
            assert!(
                matches!(result, Err(MetricError::NoPositiveLabel { .. })),
                "{name}: {result:?}"
            );
            println!("{name:>28} {sk_dtype:>7}  -> NoPositiveLabel, as scikit-learn raises");
            continue;
        }
        let out = result.unwrap();
        assert_eq!(out.experiments.len(), exps.len());
        let (mut max_dacc, mut max_df1, mut min_agree, mut sum_dacc) =
            (0.0_f64, 0.0_f64, 1.0_f64, 0.0);
        let mut same_iters = 0;
        for (got, want) in out.experiments.iter().zip(exps) {
            assert_eq!(
                got.train_indices,
                usizes(&want["selected"]),
                "{name}: sampled rows differ"
            );
            let sk_pred = i64s(&want["predictions"]);
            let agree = got
                .predictions
                .iter()
                .zip(&sk_pred)
                .filter(|(a, b)| a == b)
                .count() as f64
                / sk_pred.len() as f64;
            let dacc = (got.scores.accuracy - want["scores"]["accuracy"].as_f64().unwrap()).abs();
            let df1 = (got.scores.f1 - want["scores"]["f1"].as_f64().unwrap()).abs();
            if let (Some(a), Some(b)) = (got.scores.ap, want["scores"]["ap"].as_f64()) {
                assert!((a - b).abs() <= SCORE_TOL, "{name}: ap {a} vs {b}");
            }
            if got.n_iter == want["n_iter"].as_u64().unwrap() as usize {
                same_iters += 1;
            }
            max_dacc = max_dacc.max(dacc);
            max_df1 = max_df1.max(df1);
            min_agree = min_agree.min(agree);
            sum_dacc += dacc;
        }
        println!(
            "{name:>28} {sk_dtype:>7} {:>5} {max_dacc:>9.5} {max_df1:>9.5} {min_agree:>9.4} {:>10.6} {:>7}/{}",
            exps.len(),
            sum_dacc / exps.len() as f64,
            same_iters,
            exps.len()
        );
        let mean_acc = run["mean"]["accuracy"].as_f64().unwrap();
        assert!(
            (out.main_score - mean_acc).abs() <= SCORE_TOL,
            "{name}: mean accuracy"
        );
        if sk_dtype == "float64" {
            assert!(
                10 * same_iters >= 9 * exps.len(),
                "{name}: iteration counts differ"
            );
            worst_acc = worst_acc.max(max_dacc);
            worst_f1 = worst_f1.max(max_df1);
            worst_agree = worst_agree.min(min_agree);
        }
    }
    println!(
        "vs float64 scikit-learn: max |dacc| {worst_acc}, max |dF1| {worst_f1}, \
         min agreement {worst_agree}"
    );
    assert!(worst_acc <= SCORE_TOL);
    assert!(worst_f1 <= SCORE_TOL);
    assert!(worst_agree >= 0.995);
}

#[test]
fn coefficients_match_sklearn() {
    let fx = fixtures::json("sklearn_probe.json.gz");
    let blobs = load_blobs();
    for c in fx["coefs"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let classes = i64s(&c["classes_subset"]);
        let scale = c["scale"].as_f64().unwrap() as f32;
        let data = subset(&blobs, &classes, &HashMap::new(), scale);
        let sel = usizes(&c["selected"]);
        let x: Vec<f64> = sel
            .iter()
            .flat_map(|&i| data.train[i].iter().map(|&v| f64::from(v)))
            .collect();
        let y: Vec<i64> = sel.iter().map(|&i| data.train_labels[i]).collect();
        let params = LogisticParams {
            c: 1.0,
            tol: c["tol"].as_f64().unwrap(),
            max_iter: c["max_iter"].as_u64().unwrap() as usize,
        };
        let model = fit(&x, blobs.dim, &y, &params).unwrap();
        assert_eq!(model.classes(), i64s(&c["classes"]).as_slice());
        let want: Vec<f64> = c["coef"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .chain(floats(&c["intercept"]))
            .collect();
        let got: Vec<f64> = model
            .coef()
            .iter()
            .chain(model.intercept())
            .copied()
            .collect();
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = want.iter().map(|b| b * b).sum::<f64>().sqrt();
        let rel = diff / norm;
        println!(
            "coef {name:>17} tol={:e} max_iter={:>5}: rel diff {rel:.3e}, n_iter ours {} sklearn {}",
            params.tol,
            params.max_iter,
            model.n_iter(),
            c["n_iter"]
        );
        assert!(rel < 1e-8, "{name}: relative coefficient difference {rel}");
    }
}
