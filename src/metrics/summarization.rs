//! Summarization metrics (mteb `AbsTaskSummarization` +
//! `SummarizationEvaluator`).
//!
//! Per article, every machine summary gets a predicted quality: the maximum
//! cosine (resp. dot, resp. model similarity) between its embedding and the
//! embeddings of that article's human summaries. Expert scores are first
//! min-max normalised with the task's fixed bounds. Articles where the
//! expert scores, the max-dot predictions or the max-cosine predictions are
//! all equal are skipped. Spearman and Pearson between expert scores and
//! predictions are computed per remaining article and averaged with
//! `np.mean`. The main score is `cosine_spearman`.
//!
//! SummEval (and its French variant) still run mteb's deprecated evaluator,
//! which hands `np.mean` the scipy result objects themselves, so statistics
//! and p-values are averaged together;
//! [`Aggregation::DeprecatedWithPValues`] reproduces that.

use super::correlation::{pearson_with_pvalue, spearman_with_pvalue, Correlation};
use super::pair_classification::ModelSimilarity;
use super::vectors::{check_rows, dot_f32, torch_cosine};
use super::{numpy, MetricError};

/// How per-article correlations are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Mean of the correlation statistics (current `SummarizationEvaluator`).
    #[default]
    MeanStatistic,
    /// `DeprecatedSummarizationEvaluator`: mean over statistics and p-values
    /// together.
    DeprecatedWithPValues,
}

/// Options for [`evaluate_summarization`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummarizationOptions {
    /// Lower bound of the expert scale (`min_score` of the task).
    pub min_score: f64,
    /// Upper bound of the expert scale (`max_score` of the task).
    pub max_score: f64,
    /// What the model's `similarity` computes (feeds `pearson`/`spearman`).
    pub model_similarity: ModelSimilarity,
    pub aggregation: Aggregation,
}

/// One article's predictions as kept by mteb (after skipping).
#[derive(Debug, Clone, PartialEq)]
pub struct ArticleScores {
    pub article_index: usize,
    pub human_scores: Vec<f64>,
    pub cosine: Vec<f64>,
    pub dot: Vec<f64>,
    pub similarity: Vec<f64>,
}

/// Result of [`evaluate_summarization`]; names follow mteb's score keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarizationResult {
    pub cosine_spearman: f64,
    pub cosine_pearson: f64,
    pub dot_spearman: f64,
    pub dot_pearson: f64,
    /// Correlations of the model's own similarity.
    pub spearman: f64,
    pub pearson: f64,
    /// Articles that took part, in input order.
    pub articles: Vec<ArticleScores>,
    /// Indices of the articles skipped for equal scores.
    pub skipped: Vec<usize>,
}

impl SummarizationResult {
    /// mteb's main score for summarization tasks.
    pub fn main_score(&self) -> f64 {
        self.cosine_spearman
    }

    /// `(mteb key, value)` pairs.
    pub fn mteb_scores(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("pearson", self.pearson),
            ("spearman", self.spearman),
            ("cosine_spearman", self.cosine_spearman),
            ("cosine_pearson", self.cosine_pearson),
            ("dot_pearson", self.dot_pearson),
            ("dot_spearman", self.dot_spearman),
        ]
    }
}

/// Scores every article. `human[i]` and `machine[i]` are the embeddings of
/// article `i`'s human and machine summaries, and `expert_scores[i][j]` is
/// the raw expert score of `machine[i][j]`.
///
/// Errors on mismatched article counts, a score list whose length differs
/// from its machine-summary list, an article without human or machine
/// summaries, inconsistent embedding dimensions, non-finite values, or
/// `max_score <= min_score`. If every article is skipped the averages are
/// NaN (mteb's mean over an empty list).
pub fn evaluate_summarization(
    human: &[Vec<Vec<f32>>],
    machine: &[Vec<Vec<f32>>],
    expert_scores: &[Vec<f64>],
    options: &SummarizationOptions,
) -> Result<SummarizationResult, MetricError> {
    if human.is_empty() {
        return Err(MetricError::Empty {
            what: "human summaries",
        });
    }
    if machine.len() != human.len() {
        return Err(MetricError::LengthMismatch {
            what: "machine summaries (articles)",
            expected: human.len(),
            got: machine.len(),
        });
    }
    if expert_scores.len() != human.len() {
        return Err(MetricError::LengthMismatch {
            what: "expert scores (articles)",
            expected: human.len(),
            got: expert_scores.len(),
        });
    }
    let bounds_ok = options.min_score.is_finite()
        && options.max_score.is_finite()
        && options.max_score > options.min_score;
    if !bounds_ok {
        return Err(MetricError::InvalidParameter(format!(
            "score bounds must satisfy min < max, got {} and {}",
            options.min_score, options.max_score
        )));
    }
    let mut dim = None;
    for (h, m) in human.iter().zip(machine) {
        let dh = check_rows("human summaries", h)?;
        let dm = check_rows("machine summaries", m)?;
        for d in [dh, dm] {
            match dim {
                None => dim = Some(d),
                Some(d0) if d0 != d => {
                    return Err(MetricError::InvalidParameter(format!(
                        "embedding dimension {d} differs from {d0}"
                    )));
                }
                _ => {}
            }
        }
    }

    let range = options.max_score - options.min_score;
    let mut articles = Vec::new();
    let mut skipped = Vec::new();
    for (i, ((h, m), gold)) in human.iter().zip(machine).zip(expert_scores).enumerate() {
        if gold.len() != m.len() {
            return Err(MetricError::LengthMismatch {
                what: "expert scores of an article",
                expected: m.len(),
                got: gold.len(),
            });
        }
        if let Some(row) = gold.iter().position(|g| !g.is_finite()) {
            return Err(MetricError::NonFinite {
                what: "expert scores",
                row,
                col: None,
            });
        }
        let human_scores: Vec<f64> = gold
            .iter()
            .map(|g| (g - options.min_score) / range)
            .collect();
        let mut cosine = Vec::with_capacity(m.len());
        let mut dot = Vec::with_capacity(m.len());
        let mut similarity = Vec::with_capacity(m.len());
        for ms in m {
            let best = |f: &dyn Fn(&[f32], &[f32]) -> f32| {
                h.iter()
                    .map(|hs| f(ms, hs))
                    .fold(f32::NEG_INFINITY, f32::max) as f64
            };
            cosine.push(best(&torch_cosine));
            dot.push(best(&dot_f32));
            similarity.push(best(&|a, b| {
                model_similarity(options.model_similarity, a, b)
            }));
        }
        if all_equal(&human_scores) || all_equal(&dot) || all_equal(&cosine) {
            skipped.push(i);
            continue;
        }
        articles.push(ArticleScores {
            article_index: i,
            human_scores,
            cosine,
            dot,
            similarity,
        });
    }

    let agg = |f: fn(&[f64], &[f64]) -> Correlation, pick: fn(&ArticleScores) -> &[f64]| {
        let cs: Vec<Correlation> = articles
            .iter()
            .map(|a| f(&a.human_scores, pick(a)))
            .collect();
        aggregate(&cs, options.aggregation)
    };
    Ok(SummarizationResult {
        cosine_spearman: agg(spearman_with_pvalue, |a| &a.cosine),
        cosine_pearson: agg(pearson_with_pvalue, |a| &a.cosine),
        dot_spearman: agg(spearman_with_pvalue, |a| &a.dot),
        dot_pearson: agg(pearson_with_pvalue, |a| &a.dot),
        spearman: agg(spearman_with_pvalue, |a| &a.similarity),
        pearson: agg(pearson_with_pvalue, |a| &a.similarity),
        articles,
        skipped,
    })
}

fn model_similarity(kind: ModelSimilarity, a: &[f32], b: &[f32]) -> f32 {
    match kind {
        ModelSimilarity::Cosine => torch_cosine(a, b),
        ModelSimilarity::Dot => dot_f32(a, b),
        ModelSimilarity::Euclidean => -a
            .iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt() as f32,
        ModelSimilarity::Manhattan => -a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>() as f32,
    }
}

/// Python's `len(set(xs)) == 1`.
fn all_equal(xs: &[f64]) -> bool {
    !xs.is_empty() && xs.iter().all(|&x| x == xs[0])
}

/// `np.mean` over the articles' statistics, or, for the deprecated evaluator,
/// over the (statistic, p-value) pairs taken as one flat array.
fn aggregate(cs: &[Correlation], how: Aggregation) -> f64 {
    let values: Vec<f64> = match how {
        Aggregation::MeanStatistic => cs.iter().map(|c| c.statistic).collect(),
        Aggregation::DeprecatedWithPValues => {
            cs.iter().flat_map(|c| [c.statistic, c.pvalue]).collect()
        }
    };
    // No article left gives NaN, like np.mean([]).
    numpy::mean(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SummarizationOptions {
        SummarizationOptions {
            min_score: 1.0,
            max_score: 5.0,
            model_similarity: ModelSimilarity::Cosine,
            aggregation: Aggregation::MeanStatistic,
        }
    }

    #[test]
    fn rejects_wrong_lengths() {
        let h = vec![vec![vec![1.0f32, 0.0]]];
        let m = vec![vec![vec![1.0f32, 0.0], vec![0.0, 1.0]]];
        // One score for two machine summaries.
        let r = evaluate_summarization(&h, &m, &[vec![3.0]], &opts());
        assert!(matches!(r, Err(MetricError::LengthMismatch { .. })));
        // Article count mismatch.
        let r = evaluate_summarization(&h, &m, &[], &opts());
        assert!(matches!(r, Err(MetricError::LengthMismatch { .. })));
        // No human summary.
        let r = evaluate_summarization(&[vec![]], &m, &[vec![1.0, 2.0]], &opts());
        assert!(matches!(r, Err(MetricError::Empty { .. })));
        // Bad bounds.
        let mut o = opts();
        o.max_score = 1.0;
        assert!(evaluate_summarization(&h, &m, &[vec![1.0, 2.0]], &o).is_err());
    }
}
