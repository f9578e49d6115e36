//! Pair classification metrics (mteb `AbsTaskPairClassification`).
//!
//! For every pair mteb computes five scores: the model's own pairwise
//! similarity ("similarity"), cosine, manhattan, euclidean and dot. The two
//! distances are used as they are (lower = more similar); the other three are
//! similarities (higher = more similar). For each score list it searches the
//! best-accuracy threshold and the best-F1 threshold over the sorted scores,
//! computes scikit-learn's average precision
//! ([`super::classification::average_precision`]), and finally reports the maximum
//! of each metric over the five score lists (`max_ap` is the usual main
//! score; a few tasks use `max_accuracy`).

use super::classification::average_precision;
use super::vectors::{check_rows, dot_f32, sklearn_normalize, sq_norm_f32, torch_normalize};
use super::MetricError;

/// What the model's own `similarity_pairwise` computes; this fills the
/// "similarity" entry. mteb falls back to cosine when a model defines none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelSimilarity {
    #[default]
    Cosine,
    Dot,
    /// Negated euclidean distance.
    Euclidean,
    /// Negated manhattan distance.
    Manhattan,
}

/// The five score lists mteb derives from a pair of embedding lists, in
/// mteb's order. All values are f32 results widened to f64, as mteb's
/// `.tolist()` produces them.
#[derive(Debug, Clone, PartialEq)]
pub struct PairScores {
    pub similarity: Vec<f64>,
    pub cosine: Vec<f64>,
    pub manhattan: Vec<f64>,
    pub euclidean: Vec<f64>,
    pub dot: Vec<f64>,
}

/// Metrics for one score list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdMetrics {
    pub accuracy: f64,
    pub accuracy_threshold: f64,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1_threshold: f64,
    pub ap: f64,
}

/// Full result of [`evaluate_pair_classification`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairClassificationResult {
    pub similarity: ThresholdMetrics,
    pub cosine: ThresholdMetrics,
    pub manhattan: ThresholdMetrics,
    pub euclidean: ThresholdMetrics,
    pub dot: ThresholdMetrics,
    pub max_accuracy: f64,
    pub max_f1: f64,
    pub max_precision: f64,
    pub max_recall: f64,
    pub max_ap: f64,
}

impl PairClassificationResult {
    /// mteb's usual main score.
    pub fn main_score(&self) -> f64 {
        self.max_ap
    }

    /// The flat score dictionary mteb (v2) reports, with mteb's key names
    /// (`cosine_ap`, ..., `max_ap`). Thresholds are not part of it.
    pub fn mteb_scores(&self) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(30);
        for (name, m) in self.per_function() {
            out.push((format!("{name}_accuracy"), m.accuracy));
            out.push((format!("{name}_f1"), m.f1));
            out.push((format!("{name}_precision"), m.precision));
            out.push((format!("{name}_recall"), m.recall));
            out.push((format!("{name}_ap"), m.ap));
        }
        out.push(("max_accuracy".into(), self.max_accuracy));
        out.push(("max_f1".into(), self.max_f1));
        out.push(("max_precision".into(), self.max_precision));
        out.push(("max_recall".into(), self.max_recall));
        out.push(("max_ap".into(), self.max_ap));
        out
    }

    /// `(mteb short name, metrics)` in mteb's order.
    pub fn per_function(&self) -> [(&'static str, &ThresholdMetrics); 5] {
        [
            ("similarity", &self.similarity),
            ("cosine", &self.cosine),
            ("manhattan", &self.manhattan),
            ("euclidean", &self.euclidean),
            ("dot", &self.dot),
        ]
    }
}

/// Computes the five score lists for row-aligned embedding lists.
pub fn pair_scores(
    embeddings1: &[Vec<f32>],
    embeddings2: &[Vec<f32>],
    model_similarity: ModelSimilarity,
) -> Result<PairScores, MetricError> {
    let d1 = check_rows("embeddings1", embeddings1)?;
    let d2 = check_rows("embeddings2", embeddings2)?;
    if embeddings1.len() != embeddings2.len() {
        return Err(MetricError::LengthMismatch {
            what: "embeddings2",
            expected: embeddings1.len(),
            got: embeddings2.len(),
        });
    }
    if d1 != d2 {
        return Err(MetricError::DimensionMismatch {
            what: "embeddings2",
            row: 0,
            expected: d1,
            got: d2,
        });
    }
    let n = embeddings1.len();
    let mut s = PairScores {
        similarity: Vec::with_capacity(n),
        cosine: Vec::with_capacity(n),
        manhattan: Vec::with_capacity(n),
        euclidean: Vec::with_capacity(n),
        dot: Vec::with_capacity(n),
    };
    for (a, b) in embeddings1.iter().zip(embeddings2) {
        // sklearn: 1 - 0.5 * ||a/|a| - b/|b|||^2, all in f32.
        let na = sklearn_normalize(a);
        let nb = sklearn_normalize(b);
        let diff: Vec<f32> = na.iter().zip(&nb).map(|(x, y)| x - y).collect();
        let cos = 1.0f32 - 0.5f32 * sq_norm_f32(&diff);
        let raw_diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let eucl = sq_norm_f32(&raw_diff).sqrt();
        let manh = raw_diff.iter().map(|x| x.abs() as f64).sum::<f64>() as f32;
        let dot = dot_f32(a, b);
        let sim = match model_similarity {
            ModelSimilarity::Cosine => dot_f32(&torch_normalize(a), &torch_normalize(b)),
            ModelSimilarity::Dot => dot,
            ModelSimilarity::Euclidean => -eucl,
            ModelSimilarity::Manhattan => -manh,
        };
        s.similarity.push(sim as f64);
        s.cosine.push(cos as f64);
        s.manhattan.push(manh as f64);
        s.euclidean.push(eucl as f64);
        s.dot.push(dot as f64);
    }
    Ok(s)
}

/// Embeds-to-metrics in one call: [`pair_scores`] followed by
/// [`evaluate_pair_scores`]. `labels[i]` (0 or 1) belongs to pair `i`.
pub fn evaluate_pair_classification(
    embeddings1: &[Vec<f32>],
    embeddings2: &[Vec<f32>],
    labels: &[u8],
    model_similarity: ModelSimilarity,
) -> Result<PairClassificationResult, MetricError> {
    let scores = pair_scores(embeddings1, embeddings2, model_similarity)?;
    evaluate_pair_scores(&scores, labels)
}

/// Metrics and `max_*` aggregates from precomputed score lists.
pub fn evaluate_pair_scores(
    scores: &PairScores,
    labels: &[u8],
) -> Result<PairClassificationResult, MetricError> {
    let similarity = threshold_metrics(&scores.similarity, labels, true)?;
    let cosine = threshold_metrics(&scores.cosine, labels, true)?;
    let manhattan = threshold_metrics(&scores.manhattan, labels, false)?;
    let euclidean = threshold_metrics(&scores.euclidean, labels, false)?;
    let dot = threshold_metrics(&scores.dot, labels, true)?;
    let all = [similarity, cosine, manhattan, euclidean, dot];
    let max_of = |f: fn(&ThresholdMetrics) -> f64| py_max(all.iter().map(f));
    Ok(PairClassificationResult {
        max_accuracy: max_of(|m| m.accuracy),
        max_f1: max_of(|m| m.f1),
        max_precision: max_of(|m| m.precision),
        max_recall: max_of(|m| m.recall),
        max_ap: max_of(|m| m.ap),
        similarity,
        cosine,
        manhattan,
        euclidean,
        dot,
    })
}

/// Python's `max()` over floats: keeps the running value unless a later one
/// compares strictly greater (so NaN handling follows Python's order rules).
fn py_max(mut it: impl Iterator<Item = f64>) -> f64 {
    let mut best = it.next().unwrap_or(f64::NAN);
    for v in it {
        if v > best {
            best = v;
        }
    }
    best
}

fn check_scores_labels(scores: &[f64], labels: &[u8]) -> Result<(), MetricError> {
    if scores.is_empty() {
        return Err(MetricError::Empty { what: "scores" });
    }
    if labels.len() != scores.len() {
        return Err(MetricError::LengthMismatch {
            what: "labels",
            expected: scores.len(),
            got: labels.len(),
        });
    }
    if let Some((index, &l)) = labels.iter().enumerate().find(|(_, l)| **l > 1) {
        return Err(MetricError::InvalidLabel {
            what: "labels",
            index,
            label: i64::from(l),
        });
    }
    if let Some(row) = scores.iter().position(|s| s.is_nan()) {
        return Err(MetricError::NonFinite {
            what: "scores",
            row,
            col: None,
        });
    }
    Ok(())
}

/// All metrics for one score list. `higher_is_more_similar` is false for
/// distances (manhattan, euclidean).
pub fn threshold_metrics(
    scores: &[f64],
    labels: &[u8],
    higher_is_more_similar: bool,
) -> Result<ThresholdMetrics, MetricError> {
    let (accuracy, accuracy_threshold) =
        best_accuracy_threshold(scores, labels, higher_is_more_similar)?;
    let f = best_f1_threshold(scores, labels, higher_is_more_similar)?;
    let sign = if higher_is_more_similar { 1.0 } else { -1.0 };
    let signed: Vec<f64> = scores.iter().map(|s| s * sign).collect();
    let positive: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
    let ap = average_precision(&signed, &positive)?;
    Ok(ThresholdMetrics {
        accuracy,
        accuracy_threshold,
        f1: f.f1,
        precision: f.precision,
        recall: f.recall,
        f1_threshold: f.threshold,
        ap,
    })
}

/// Compares two scores the way Python does for non-NaN floats (so -0.0 and
/// 0.0 are equal); NaN never reaches here.
fn cmp_scores(a: f64, b: f64) -> std::cmp::Ordering {
    a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
}

/// Indices sorted from "most similar" to "least similar"; ties keep their
/// input order (Python's `sorted` is stable, also with `reverse=True`).
fn sorted_order(scores: &[f64], higher_is_more_similar: bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    if higher_is_more_similar {
        idx.sort_by(|&a, &b| cmp_scores(scores[b], scores[a]));
    } else {
        idx.sort_by(|&a, &b| cmp_scores(scores[a], scores[b]));
    }
    idx
}

/// Best accuracy of "the first i+1 sorted pairs are positive" rules, over
/// every cut except the one that calls everything positive. The threshold is
/// the midpoint between the scores on both sides of the first best cut.
/// With fewer than two pairs no cut exists and mteb returns `(0, -1)`.
pub fn best_accuracy_threshold(
    scores: &[f64],
    labels: &[u8],
    higher_is_more_similar: bool,
) -> Result<(f64, f64), MetricError> {
    check_scores_labels(scores, labels)?;
    let order = sorted_order(scores, higher_is_more_similar);
    let n = labels.len() as f64;
    let mut best = 0.0f64;
    let mut threshold = -1.0f64;
    let mut positives_seen = 0usize;
    let mut negatives_left = labels.iter().filter(|&&l| l == 0).count();
    for w in order.windows(2) {
        if labels[w[0]] == 1 {
            positives_seen += 1;
        } else {
            negatives_left -= 1;
        }
        let acc = (positives_seen + negatives_left) as f64 / n;
        if acc > best {
            best = acc;
            threshold = (scores[w[0]] + scores[w[1]]) / 2.0;
        }
    }
    Ok((best, threshold))
}

/// Result of [`best_f1_threshold`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F1AtThreshold {
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub threshold: f64,
}

/// Best F1 over the same cuts as [`best_accuracy_threshold`], with the
/// precision and recall of that cut. Zeros when no cut has a true positive.
pub fn best_f1_threshold(
    scores: &[f64],
    labels: &[u8],
    higher_is_more_similar: bool,
) -> Result<F1AtThreshold, MetricError> {
    check_scores_labels(scores, labels)?;
    let order = sorted_order(scores, higher_is_more_similar);
    let total_pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let mut out = F1AtThreshold {
        f1: 0.0,
        precision: 0.0,
        recall: 0.0,
        threshold: 0.0,
    };
    let mut extracted = 0usize;
    let mut correct = 0usize;
    for w in order.windows(2) {
        extracted += 1;
        if labels[w[0]] == 1 {
            correct += 1;
        }
        if correct > 0 {
            let p = correct as f64 / extracted as f64;
            let r = correct as f64 / total_pos;
            let f1 = 2.0 * p * r / (p + r);
            if f1 > out.f1 {
                out = F1AtThreshold {
                    f1,
                    precision: p,
                    recall: r,
                    threshold: (scores[w[0]] + scores[w[1]]) / 2.0,
                };
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_zeros_tie_like_python() {
        // Python sorts -0.0 and 0.0 as equal, so input order decides.
        let (acc, thr) = best_accuracy_threshold(&[0.0, -0.0, 1.0], &[0, 1, 1], true).unwrap();
        assert_eq!((acc, thr), (2.0 / 3.0, 0.5));
        let f = best_f1_threshold(&[0.0, -0.0, 1.0], &[0, 1, 1], true).unwrap();
        assert_eq!(f.threshold, 0.5);
        assert_eq!(f.precision, 1.0);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            threshold_metrics(&[0.1, 0.2], &[1], true),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            threshold_metrics(&[0.1, 0.2], &[1, 2], true),
            Err(MetricError::InvalidLabel { .. })
        ));
        assert!(matches!(
            threshold_metrics(&[], &[], true),
            Err(MetricError::Empty { .. })
        ));
        let e = vec![vec![1.0f32, 0.0]];
        assert!(evaluate_pair_classification(&e, &[], &[1], ModelSimilarity::Cosine).is_err());
        assert!(evaluate_pair_classification(
            &e,
            &[vec![1.0, 0.0, 0.0]],
            &[1],
            ModelSimilarity::Cosine
        )
        .is_err());
        assert!(evaluate_pair_classification(&e, &e, &[], ModelSimilarity::Cosine).is_err());
    }
}
