//! Checks `metrics::ranking` against pytrec_eval reference values.
//! Fixture and how to regenerate it: tests/fixtures/trec/README.md.

use std::collections::BTreeSet;
use std::path::PathBuf;

use assay::metrics::ranking::{evaluate, mean_scores, Qrels, Run};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trec")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Rows of a headed three-column TSV.
fn rows(text: &str) -> impl Iterator<Item = [&str; 3]> {
    text.lines().skip(1).filter(|l| !l.is_empty()).map(|line| {
        let cols: Vec<&str> = line.split('\t').collect();
        cols.try_into()
            .unwrap_or_else(|c| panic!("expected 3 columns: {c:?}"))
    })
}

fn load_qrels() -> Qrels {
    let mut qrels = Qrels::new();
    for [qid, doc, rel] in rows(&fixture("qrels.tsv")) {
        let rel = rel
            .parse()
            .unwrap_or_else(|e| panic!("relevance {rel:?}: {e}"));
        qrels.entry(qid.into()).or_default().insert(doc.into(), rel);
    }
    qrels
}

fn load_run() -> Run {
    let mut run = Run::new();
    for [qid, doc, score] in rows(&fixture("run.tsv")) {
        let score = score
            .parse()
            .unwrap_or_else(|e| panic!("score {score:?}: {e}"));
        run.entry(qid.into()).or_default().push((doc.into(), score));
    }
    run
}

fn assert_close(what: &str, got: f64, want: &Value) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {want}"));
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{what}: got {got}, pytrec_eval {want}"
    );
}

#[test]
fn ranking_metrics_match_pytrec_eval() {
    let expected: Value = serde_json::from_str(&fixture("expected.json")).expect("expected.json");
    let ks: Vec<usize> = serde_json::from_value(expected["ks"].clone()).expect("ks");
    assert_eq!(ks, [1, 3, 5, 10, 100]);

    let per_query = evaluate(&load_qrels(), &load_run(), &ks);

    let want_queries = expected["per_query"].as_object().expect("per_query");
    assert_eq!(
        per_query.keys().collect::<BTreeSet<_>>(),
        want_queries.keys().collect::<BTreeSet<_>>(),
        "evaluated queries"
    );
    for (qid, want) in want_queries {
        let got = &per_query[qid];
        let want = want.as_object().expect("measures");
        assert_eq!(
            got.keys().collect::<BTreeSet<_>>(),
            want.keys().collect(),
            "{qid}: measures"
        );
        for (measure, value) in want {
            assert_close(&format!("{qid} {measure}"), got[measure], value);
        }
    }

    let means = mean_scores(&per_query);
    let want_means = expected["mean"].as_object().expect("mean");
    assert_eq!(
        means.keys().collect::<BTreeSet<_>>(),
        want_means.keys().collect(),
        "mean measures"
    );
    for (measure, value) in want_means {
        assert_close(&format!("mean {measure}"), means[measure], value);
    }
}
