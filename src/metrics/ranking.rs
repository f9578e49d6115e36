//! Retrieval metrics with trec_eval 9.0.8 semantics, as computed by pytrec_eval
//! (which MTEB and BEIR use), so scores are comparable with published numbers.
//!
//! Conventions reproduced from trec_eval:
//! - only queries present in both the run and the qrels are evaluated;
//! - a document is relevant when its judgment is >= 1; unjudged documents count as 0;
//! - nDCG gains are the judgment values, with judgments <= 0 giving no gain;
//! - the ranking is [`trec_order`]: scores compared as `f32`, ties by doc id descending.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Relevance judgments: query id -> doc id -> graded relevance.
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// Retrieved documents: query id -> (doc id, score), in any order.
pub type Run = HashMap<String, Vec<(String, f64)>>;

/// trec_eval's ranking order: score descending, ties by doc id descending
/// (byte-wise, like `strcmp`).
///
/// trec_eval stores scores as C `float`, so scores are compared after rounding
/// to `f32`: two scores equal in `f32` tie even if they differ as `f64`, and
/// `-0.0` ties with `0.0`. NaN scores, whose order trec_eval leaves undefined,
/// rank after every other score.
pub fn trec_order(a: &(String, f64), b: &(String, f64)) -> Ordering {
    let (x, y) = (a.1 as f32, b.1 as f32);
    x.is_nan()
        .cmp(&y.is_nan())
        // Equal here only when both are NaN: fall through to the doc id.
        .then_with(|| y.partial_cmp(&x).unwrap_or(Ordering::Equal))
        .then_with(|| b.0.cmp(&a.0))
}

/// Per-query values of every measure, keyed query id -> measure -> value.
///
/// For every `k` in `ks` the measures are `ndcg_at_{k}`, `map_at_{k}`,
/// `mrr_at_{k}`, `recall_at_{k}` and `precision_at_{k}` (MTEB naming), matching
/// trec_eval's `ndcg_cut.k`, `map_cut.k`, `recall.k`, `P.k` and `recip_rank`
/// computed on the top k. A query whose judgments are all 0 scores 0. If a doc
/// id appears twice for one query, its first occurrence wins (trec_eval rejects
/// such runs). `k = 0` gives 0 for every measure.
pub fn evaluate(qrels: &Qrels, run: &Run, ks: &[usize]) -> BTreeMap<String, BTreeMap<String, f64>> {
    run.iter()
        .filter_map(|(qid, docs)| {
            let judged = qrels.get(qid)?;
            Some((qid.clone(), evaluate_query(judged, docs, ks)))
        })
        .collect()
}

/// Mean of each measure over queries (a measure missing from some queries is
/// averaged over the queries that have it).
pub fn mean_scores(per_query: &BTreeMap<String, BTreeMap<String, f64>>) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for measures in per_query.values() {
        for (name, value) in measures {
            let entry = sums.entry(name.clone()).or_insert((0.0, 0));
            entry.0 += value;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(name, (sum, n))| (name, sum / n as f64))
        .collect()
}

fn evaluate_query(
    judged: &HashMap<String, i32>,
    docs: &[(String, f64)],
    ks: &[usize],
) -> BTreeMap<String, f64> {
    let mut seen = HashSet::new();
    let mut ranked: Vec<&(String, f64)> = docs.iter().filter(|d| seen.insert(&d.0)).collect();
    ranked.sort_by(|a, b| trec_order(a, b));
    let rels: Vec<i32> = ranked
        .iter()
        .map(|(doc, _)| judged.get(doc).copied().unwrap_or(0))
        .collect();

    let num_rel = judged.values().filter(|&&r| r >= 1).count();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));

    let mut out = BTreeMap::new();
    for &k in ks {
        let top = &rels[..k.min(rels.len())];
        let idcg = dcg(&ideal[..k.min(ideal.len())]);
        let ndcg = if idcg > 0.0 { dcg(top) / idcg } else { 0.0 };

        let mut hits = 0usize;
        let mut precision_sum = 0.0;
        let mut first_hit = None;
        for (i, &rel) in top.iter().enumerate() {
            if rel >= 1 {
                hits += 1;
                precision_sum += hits as f64 / (i + 1) as f64;
                first_hit.get_or_insert(i + 1);
            }
        }
        // trec_eval divides by all relevant docs, retrieved or not.
        let per_rel = |x: f64| if num_rel > 0 { x / num_rel as f64 } else { 0.0 };

        out.insert(format!("ndcg_at_{k}"), ndcg);
        out.insert(format!("map_at_{k}"), per_rel(precision_sum));
        out.insert(
            format!("mrr_at_{k}"),
            first_hit.map_or(0.0, |r| 1.0 / r as f64),
        );
        out.insert(format!("recall_at_{k}"), per_rel(hits as f64));
        // Divides by k even when fewer than k docs were retrieved.
        let precision = if k > 0 { hits as f64 / k as f64 } else { 0.0 };
        out.insert(format!("precision_at_{k}"), precision);
    }
    out
}

/// Discounted cumulative gain with rank-1 discount log2(2).
fn dcg(rels: &[i32]) -> f64 {
    rels.iter()
        .enumerate()
        .filter(|(_, &rel)| rel > 0)
        .map(|(i, &rel)| rel as f64 / ((i + 2) as f64).log2())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(rows: &[(&str, &str, i32)]) -> Qrels {
        let mut q = Qrels::new();
        for &(qid, doc, rel) in rows {
            q.entry(qid.into()).or_default().insert(doc.into(), rel);
        }
        q
    }

    fn run(rows: &[(&str, &str, f64)]) -> Run {
        let mut r = Run::new();
        for &(qid, doc, score) in rows {
            r.entry(qid.into()).or_default().push((doc.into(), score));
        }
        r
    }

    fn sorted(docs: &[(&str, f64)]) -> Vec<String> {
        let mut v: Vec<(String, f64)> = docs.iter().map(|&(d, s)| (d.into(), s)).collect();
        v.sort_by(trec_order);
        v.into_iter().map(|(d, _)| d).collect()
    }

    #[test]
    fn order_is_score_desc_then_doc_id_desc() {
        let docs = [
            ("a", 1.0),
            ("c", 2.0),
            ("b", 1.0),
            ("d10", 1.0),
            ("d9", 1.0),
        ];
        assert_eq!(sorted(&docs), ["c", "d9", "d10", "b", "a"]);
    }

    #[test]
    fn order_compares_scores_as_f32_and_puts_nan_last() {
        let docs = [
            ("a", 0.5 + 1e-12),
            ("b", 0.5),
            ("n", f64::NAN),
            ("z", -0.0),
            ("y", 0.0),
        ];
        assert_eq!(sorted(&docs), ["b", "a", "z", "y", "n"]);
    }

    #[test]
    fn only_queries_in_both_are_evaluated() {
        let q = qrels(&[("q1", "a", 1), ("q2", "a", 1), ("q3", "a", 0)]);
        let r = run(&[("q1", "a", 1.0), ("q3", "a", 1.0), ("q4", "a", 1.0)]);
        let out = evaluate(&q, &r, &[1]);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["q1", "q3"]);
        assert!(out["q3"].values().all(|&v| v == 0.0));
        assert_eq!(out["q1"]["ndcg_at_1"], 1.0);
    }

    #[test]
    fn empty_run_for_a_query_scores_zero() {
        // pytrec_eval: {'q': {'recip_rank': 0.0, 'ndcg_cut_1': 0.0}}.
        let q = qrels(&[("q", "a", 1)]);
        let mut r = Run::new();
        r.insert("q".into(), Vec::new());
        let out = evaluate(&q, &r, &[1, 10]);
        assert_eq!(out["q"].len(), 10);
        assert!(out["q"].values().all(|&v| v == 0.0));
    }

    #[test]
    fn duplicate_doc_first_occurrence_wins() {
        let q = qrels(&[("q", "a", 1), ("q", "b", 0)]);
        let r = run(&[("q", "b", 2.0), ("q", "a", 1.0), ("q", "b", 0.0)]);
        let out = evaluate(&q, &r, &[2]);
        assert_eq!(out["q"]["mrr_at_2"], 0.5);
        assert_eq!(out["q"]["precision_at_2"], 0.5);
    }

    #[test]
    fn negative_judgments_are_non_relevant_without_gain() {
        // pytrec_eval: recip_rank 0.5, P_5 0.4, recall_5 1.0, map_cut_5 0.58333,
        // ndcg_cut_10 0.6199062332840657.
        let q = qrels(&[("q", "a", -1), ("q", "b", 1), ("q", "c", 2)]);
        let r = run(&[("q", "a", 3.0), ("q", "b", 2.0), ("q", "c", 1.0)]);
        let out = &evaluate(&q, &r, &[5, 10])["q"];
        assert_eq!(out["mrr_at_5"], 0.5);
        assert_eq!(out["precision_at_5"], 0.4);
        assert_eq!(out["recall_at_5"], 1.0);
        assert!((out["map_at_5"] - 0.5833333333333333).abs() < 1e-12);
        assert!((out["ndcg_at_10"] - 0.6199062332840657).abs() < 1e-12);
    }

    #[test]
    fn mean_averages_each_measure() {
        let mut per_query = BTreeMap::new();
        per_query.insert("a".to_string(), BTreeMap::from([("m".to_string(), 1.0)]));
        per_query.insert("b".to_string(), BTreeMap::from([("m".to_string(), 0.0)]));
        assert_eq!(mean_scores(&per_query)["m"], 0.5);
        assert!(mean_scores(&BTreeMap::new()).is_empty());
    }
}
