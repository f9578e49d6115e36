//! MTEB's classification linear probe: undersample the training split, fit a
//! logistic regression on the sample, score the whole test split, repeat for
//! several experiments and average. Also the scikit-learn scores it reports,
//! and the one average-precision implementation of the crate.
//!
//! # What mteb does (v2, `mteb/abstasks/classification.py`)
//!
//! * Undersampling (`_undersample_data`): the index list starts as `0..n`;
//!   each experiment builds a *fresh* `np.random.RandomState(seed)`, shuffles
//!   the index list the previous experiment left behind (in place, so the
//!   order carries over), then walks it and keeps an index while its label
//!   has been kept fewer than `samples_per_label` times. A label with fewer
//!   rows simply contributes all of them. Kept indices stay in walk order.
//!   mteb v1 picked the same indices (with its default seed 42), because each
//!   evaluator re-seeded numpy's global generator with 42 before the next
//!   experiment's shuffle.
//! * The test split is used whole in every experiment.
//! * Model: `LogisticRegression(max_iter=100)`, everything else default (see
//!   [`super::logistic`]).
//! * Scores per experiment: [`classification_scores`]. mteb reports the
//!   `np.mean` over experiments of each score (average precision only over
//!   the experiments that have it); the main score is accuracy.
//!
//! Labels are `i64` because scikit-learn's behaviour depends on label
//! *values*: classes are sorted by value, and average precision takes label 1
//! as the positive class. Pass the data set's integer labels unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rayon::prelude::*;

use super::logistic::{self, LogisticParams};
use super::rng::RandomState;
use super::vectors::{check_finite_row, check_rows, check_shape};
use super::{numpy, MetricError};

/// Knobs of the probe; `Default` gives mteb's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConfig {
    /// Training rows kept per label in each experiment (mteb: 8; some tasks
    /// override it).
    pub samples_per_label: usize,
    /// Number of experiments averaged (mteb: 10).
    pub n_experiments: usize,
    /// Seed of the undersampling shuffle (mteb: the task seed, 42).
    pub seed: u32,
    /// Logistic-regression iteration budget (mteb: 100).
    pub max_iter: usize,
    /// Inverse regularisation strength (scikit-learn default 1.0).
    pub c: f64,
    /// Optimiser gradient tolerance (scikit-learn default 1e-4).
    pub tol: f64,
    /// mteb accepts test labels that never occur in training (they can only
    /// be mispredicted). By default they are reported as an error; set this
    /// to reproduce mteb's numbers for such data anyway.
    pub allow_unseen_test_labels: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            samples_per_label: 8,
            n_experiments: 10,
            seed: 42,
            max_iter: 100,
            c: 1.0,
            tol: 1e-4,
            allow_unseen_test_labels: false,
        }
    }
}

impl ProbeConfig {
    fn validate(&self) -> Result<(), MetricError> {
        let bad = |m: String| Err(MetricError::InvalidParameter(m));
        if self.samples_per_label == 0 {
            return bad("samples_per_label must be at least 1".into());
        }
        if self.n_experiments == 0 {
            return bad("n_experiments must be at least 1".into());
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return bad(format!("C must be positive and finite, got {}", self.c));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(format!(
                "tol must be non-negative and finite, got {}",
                self.tol
            ));
        }
        Ok(())
    }
}

/// Scores of one experiment, named as in mteb's results files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassificationScores {
    pub accuracy: f64,
    /// Macro F1.
    pub f1: f64,
    pub f1_weighted: f64,
    /// Macro precision.
    pub precision: f64,
    pub precision_weighted: f64,
    /// Macro recall.
    pub recall: f64,
    pub recall_weighted: f64,
    /// Average precision; `None` unless the true labels are binary.
    pub ap: Option<f64>,
    /// Same value as `ap` (scikit-learn ignores `average` for binary targets).
    pub ap_weighted: Option<f64>,
}

/// Outcome of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentResult {
    /// Training rows used, in the order they were picked.
    pub train_indices: Vec<usize>,
    pub scores: ClassificationScores,
    /// Predicted label of every test row.
    pub predictions: Vec<i64>,
    /// Optimiser iterations (scikit-learn's `n_iter_`).
    pub n_iter: usize,
    /// Whether the optimiser met its tolerance within `max_iter`.
    pub converged: bool,
}

/// What mteb reports for a classification subset.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeScores {
    /// mteb's main score: mean accuracy.
    pub main_score: f64,
    /// Each score averaged over experiments.
    pub mean: ClassificationScores,
    pub experiments: Vec<ExperimentResult>,
}

/// One call of mteb's `_undersample_data`: shuffle `order` in place with a
/// fresh `RandomState(seed)`, then keep, in the new order, each index whose
/// label has been kept fewer than `samples_per_label` times. Indices in
/// `order` that are out of range for `labels` are shuffled but never kept.
pub fn undersample_once(
    labels: &[i64],
    samples_per_label: usize,
    seed: u32,
    order: &mut [usize],
) -> Vec<usize> {
    RandomState::new(seed).shuffle(order);
    let mut kept_per_label: HashMap<i64, usize> = HashMap::new();
    let mut kept = Vec::new();
    for &i in order.iter() {
        let Some(&label) = labels.get(i) else {
            continue;
        };
        let count = kept_per_label.entry(label).or_insert(0);
        if *count < samples_per_label {
            kept.push(i);
            *count += 1;
        }
    }
    kept
}

/// The training indices of every experiment, as mteb picks them: the index
/// list starts as `0..labels.len()` and each experiment reshuffles the
/// previous experiment's order with a fresh `RandomState(seed)`.
pub fn undersample_experiments(
    labels: &[i64],
    samples_per_label: usize,
    n_experiments: usize,
    seed: u32,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    (0..n_experiments)
        .map(|_| undersample_once(labels, samples_per_label, seed, &mut order))
        .collect()
}

/// Label count and row shape checks for one split; returns the width.
fn check_split<R: AsRef<[f32]>>(
    (what, labels_what): (&'static str, &'static str),
    rows: &[R],
    labels: &[i64],
    check_values: bool,
) -> Result<usize, MetricError> {
    if rows.len() != labels.len() {
        return Err(MetricError::LengthMismatch {
            what: labels_what,
            expected: rows.len(),
            got: labels.len(),
        });
    }
    if check_values {
        check_rows(what, rows)
    } else {
        check_shape(what, rows)
    }
}

/// Mean of each score over experiments (`np.mean`, as mteb averages).
fn mean_scores(all: &[ClassificationScores]) -> ClassificationScores {
    let avg = |get: fn(&ClassificationScores) -> f64| {
        numpy::mean(&all.iter().map(get).collect::<Vec<f64>>())
    };
    let avg_present = |get: fn(&ClassificationScores) -> Option<f64>| {
        let values: Vec<f64> = all.iter().filter_map(get).collect();
        (!values.is_empty()).then(|| numpy::mean(&values))
    };
    ClassificationScores {
        accuracy: avg(|s| s.accuracy),
        f1: avg(|s| s.f1),
        f1_weighted: avg(|s| s.f1_weighted),
        precision: avg(|s| s.precision),
        precision_weighted: avg(|s| s.precision_weighted),
        recall: avg(|s| s.recall),
        recall_weighted: avg(|s| s.recall_weighted),
        ap: avg_present(|s| s.ap),
        ap_weighted: avg_present(|s| s.ap_weighted),
    }
}

/// Run mteb's classification probe.
///
/// `train` and `test` are embedding rows (anything viewable as `&[f32]`, e.g.
/// `Vec<Vec<f32>>` or `flat.chunks(dim).collect::<Vec<_>>()`), one label per
/// row. Every test row must be finite; a train row only when an experiment
/// samples it, since mteb never looks at the others.
pub fn probe<R: AsRef<[f32]> + Sync>(
    train: &[R],
    train_labels: &[i64],
    test: &[R],
    test_labels: &[i64],
    config: &ProbeConfig,
) -> Result<ProbeScores, MetricError> {
    const TRAIN: &str = "train embeddings";
    const TEST: &str = "test embeddings";
    config.validate()?;
    let dim = check_split((TRAIN, "train labels"), train, train_labels, false)?;
    let test_dim = check_split((TEST, "test labels"), test, test_labels, true)?;
    if test_dim != dim {
        return Err(MetricError::DimensionMismatch {
            what: TEST,
            row: 0,
            expected: dim,
            got: test_dim,
        });
    }

    let train_classes: BTreeSet<i64> = train_labels.iter().copied().collect();
    if train_classes.len() < 2 {
        return Err(MetricError::SingleClass {
            label: train_labels[0],
        });
    }
    if !config.allow_unseen_test_labels {
        if let Some((row, &label)) = test_labels
            .iter()
            .enumerate()
            .find(|(_, l)| !train_classes.contains(l))
        {
            return Err(MetricError::UnseenTestLabel { label, row });
        }
    }
    // Fail before fitting anything if average precision will be undefined.
    positive_label_check(test_labels)?;

    let test_x: Vec<f64> = test
        .iter()
        .flat_map(|r| r.as_ref().iter().map(|&v| f64::from(v)))
        .collect();
    let params = LogisticParams {
        c: config.c,
        tol: config.tol,
        max_iter: config.max_iter,
    };

    let selections = undersample_experiments(
        train_labels,
        config.samples_per_label,
        config.n_experiments,
        config.seed,
    );
    // The experiments are independent once their rows are picked: fit them in
    // parallel (each one's arithmetic is unchanged) and report the first error
    // in experiment order, as a sequential loop would.
    let run = |experiment: usize, picked: Vec<usize>| -> Result<ExperimentResult, MetricError> {
        let mut x = Vec::with_capacity(picked.len() * dim);
        let mut y = Vec::with_capacity(picked.len());
        for &i in &picked {
            let row = train[i].as_ref();
            check_finite_row(TRAIN, i, row)?;
            x.extend(row.iter().map(|&v| f64::from(v)));
            y.push(train_labels[i]);
        }
        let model = logistic::fit(&x, dim, &y, &params)?;
        let finite = model
            .coef()
            .iter()
            .chain(model.intercept())
            .all(|v| v.is_finite());
        if !finite {
            return Err(MetricError::NumericalFailure { experiment });
        }
        let predictions = model.predict(&test_x);
        let scores = classification_scores(test_labels, &predictions)?;
        Ok(ExperimentResult {
            train_indices: picked,
            scores,
            predictions,
            n_iter: model.n_iter(),
            converged: model.converged(),
        })
    };
    let experiments = selections
        .into_par_iter()
        .enumerate()
        .map(|(experiment, picked)| run(experiment, picked))
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Result<Vec<ExperimentResult>, MetricError>>()?;

    let all: Vec<ClassificationScores> = experiments.iter().map(|e| e.scores).collect();
    let mean = mean_scores(&all);
    Ok(ProbeScores {
        main_score: mean.accuracy,
        mean,
        experiments,
    })
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: usize,
    actual: usize,
    predicted: usize,
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division="warn"`).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// The scores mteb computes for one experiment, with scikit-learn's
/// conventions:
///
/// * the label set is the sorted union of true and predicted labels;
/// * per label: precision `tp / predicted`, recall `tp / actual`, F1
///   `2 tp / (actual + predicted)`, 0 where the denominator is 0;
/// * "macro" is the `np.mean` over that label set, "weighted" the
///   `np.average` weighted by each label's true count;
/// * average precision only when the true labels hold exactly two values, via
///   [`binary_average_precision`].
pub fn classification_scores(
    y_true: &[i64],
    y_pred: &[i64],
) -> Result<ClassificationScores, MetricError> {
    if y_true.len() != y_pred.len() {
        return Err(MetricError::LengthMismatch {
            what: "predicted labels",
            expected: y_true.len(),
            got: y_pred.len(),
        });
    }
    if y_true.is_empty() {
        return Err(MetricError::Empty { what: "labels" });
    }
    let mut per_label: BTreeMap<i64, Counts> = BTreeMap::new();
    let mut correct = 0_usize;
    for (&t, &p) in y_true.iter().zip(y_pred) {
        per_label.entry(t).or_default().actual += 1;
        per_label.entry(p).or_default().predicted += 1;
        if t == p {
            correct += 1;
            per_label.entry(t).or_default().tp += 1;
        }
    }

    let n_labels = per_label.len();
    let (mut precision, mut recall, mut f1, mut support) = (
        Vec::with_capacity(n_labels),
        Vec::with_capacity(n_labels),
        Vec::with_capacity(n_labels),
        Vec::with_capacity(n_labels),
    );
    for c in per_label.values() {
        let (tp, actual, predicted) = (c.tp as f64, c.actual as f64, c.predicted as f64);
        precision.push(ratio(tp, predicted));
        recall.push(ratio(tp, actual));
        f1.push(ratio(2.0 * tp, actual + predicted));
        support.push(actual);
    }
    // np.average(values, weights=support): weighted sum over the weight sum.
    let total_support = numpy::sum(&support);
    let weighted = |values: &[f64]| {
        let products: Vec<f64> = values.iter().zip(&support).map(|(v, w)| v * w).collect();
        numpy::sum(&products) / total_support
    };

    let ap = binary_average_precision(y_true, y_pred)?;
    Ok(ClassificationScores {
        accuracy: correct as f64 / y_true.len() as f64,
        f1: numpy::mean(&f1),
        f1_weighted: weighted(&f1),
        precision: numpy::mean(&precision),
        precision_weighted: weighted(&precision),
        recall: numpy::mean(&recall),
        recall_weighted: weighted(&recall),
        ap,
        ap_weighted: ap,
    })
}

/// Errors when the labels are binary without a 1: scikit-learn's default
/// positive label is then absent and `average_precision_score` raises.
fn positive_label_check(y_true: &[i64]) -> Result<bool, MetricError> {
    let distinct: BTreeSet<i64> = y_true.iter().copied().collect();
    if distinct.len() != 2 {
        return Ok(false);
    }
    if !distinct.contains(&1) {
        let mut it = distinct.into_iter();
        let labels = [it.next().unwrap_or(0), it.next().unwrap_or(0)];
        return Err(MetricError::NoPositiveLabel { labels });
    }
    Ok(true)
}

/// mteb's `average_precision_score(y_test, y_pred)`: `None` unless `y_true`
/// holds exactly two distinct labels; then label 1 is the positive class and
/// the predicted labels, as numbers, are the ranking scores.
pub fn binary_average_precision(
    y_true: &[i64],
    y_pred: &[i64],
) -> Result<Option<f64>, MetricError> {
    if !positive_label_check(y_true)? {
        return Ok(None);
    }
    let positive: Vec<bool> = y_true.iter().map(|&t| t == 1).collect();
    let scores: Vec<f64> = y_pred.iter().map(|&p| p as f64).collect();
    average_precision(&scores, &positive).map(Some)
}

/// scikit-learn's `average_precision_score` for a binary target, bit for bit:
/// rank by score (higher = more likely positive); every distinct score is a
/// cut-off; AP is the sum over cut-offs of (recall gained) x (precision at the
/// cut-off). Tied scores fall on the same side of every cut-off.
///
/// scikit-learn forms those products from the lowest cut-off up and adds them
/// with `np.sum`; the same order is used here. With no positive at all it sets
/// recall to 1 everywhere, which makes the result 0. Errors on empty or
/// mismatched input and on NaN or infinite scores (scikit-learn rejects those).
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Result<f64, MetricError> {
    if scores.is_empty() {
        return Err(MetricError::Empty { what: "scores" });
    }
    if positive.len() != scores.len() {
        return Err(MetricError::LengthMismatch {
            what: "labels",
            expected: scores.len(),
            got: positive.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricError::NonFinite {
            what: "scores",
            row: index,
            col: None,
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // total_cmp places -0.0 right after 0.0; the `!=` grouping below joins
    // them, as numpy's comparison does.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    // Cumulative true/false positives at the end of each group of equal scores.
    let mut cuts: Vec<(f64, f64)> = Vec::new();
    let mut tp = 0.0_f64;
    for (pos, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        }
        let group_ends = order.get(pos + 1).is_none_or(|&j| scores[j] != scores[i]);
        if group_ends {
            cuts.push((tp, (pos + 1) as f64 - tp));
        }
    }
    let total_tp = cuts.last().map_or(0.0, |c| c.0);
    let mut terms = Vec::with_capacity(cuts.len());
    let mut prev_recall = 0.0;
    for &(tp, fp) in &cuts {
        let precision = tp / (tp + fp);
        let recall = if total_tp == 0.0 { 1.0 } else { tp / total_tp };
        terms.push((recall - prev_recall) * precision);
        prev_recall = recall;
    }
    terms.reverse();
    Ok(numpy::sum(&terms).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Vec<Vec<f32>>, Vec<i64>) {
        let rows = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.1, 0.9],
            vec![-1.0, 0.0],
            vec![-0.9, -0.1],
        ];
        (rows, vec![0, 0, 1, 1, 2, 2])
    }

    #[test]
    fn separable_toy_problem_scores_perfectly() {
        let (x, y) = toy();
        let out = probe(&x, &y, &x, &y, &ProbeConfig::default()).unwrap();
        assert_eq!(out.experiments.len(), 10);
        assert_eq!(out.main_score, 1.0);
        assert!(out.mean.ap.is_none());
    }

    #[test]
    fn rejects_bad_inputs_without_panicking() {
        let (x, y) = toy();
        let cfg = ProbeConfig::default();
        let empty: Vec<Vec<f32>> = vec![];
        assert_eq!(
            probe(&empty, &[], &x, &y, &cfg).unwrap_err(),
            MetricError::Empty {
                what: "train embeddings"
            }
        );
        assert_eq!(
            probe(&x, &y, &empty, &[], &cfg).unwrap_err(),
            MetricError::Empty {
                what: "test embeddings"
            }
        );
        assert!(matches!(
            probe(&x, &y[..5], &x, &y, &cfg),
            Err(MetricError::LengthMismatch { .. })
        ));
        let mut ragged = x.clone();
        ragged[3].push(1.0);
        assert!(matches!(
            probe(&ragged, &y, &x, &y, &cfg),
            Err(MetricError::DimensionMismatch { row: 3, .. })
        ));
        let wide: Vec<Vec<f32>> = x.iter().map(|r| [r.as_slice(), &[0.0]].concat()).collect();
        assert!(matches!(
            probe(&x, &y, &wide, &y, &cfg),
            Err(MetricError::DimensionMismatch {
                what: "test embeddings",
                ..
            })
        ));
        let zero: Vec<Vec<f32>> = vec![vec![]; 6];
        assert!(matches!(
            probe(&zero, &y, &zero, &y, &cfg),
            Err(MetricError::InvalidParameter(_))
        ));
        let mut nan = x.clone();
        nan[2][1] = f32::NAN;
        let err = probe(&nan, &y, &x, &y, &cfg).unwrap_err();
        assert_eq!(
            err,
            MetricError::NonFinite {
                what: "train embeddings",
                row: 2,
                col: Some(1)
            }
        );
        assert!(err.to_string().contains("row 2, column 1"));
        assert_eq!(
            probe(&x, &y, &nan, &y, &cfg).unwrap_err(),
            MetricError::NonFinite {
                what: "test embeddings",
                row: 2,
                col: Some(1)
            }
        );
        let unseen = vec![0, 0, 1, 7, 2, 2];
        let err = probe(&x, &y, &x, &unseen, &cfg).unwrap_err();
        assert_eq!(err, MetricError::UnseenTestLabel { label: 7, row: 3 });
        assert!(err.to_string().contains("test label 7"));
        assert_eq!(
            probe(&x, &[5; 6], &x, &[5; 6], &cfg).unwrap_err(),
            MetricError::SingleClass { label: 5 }
        );
        let binary_no_one = vec![0, 0, 2, 2, 2, 2];
        assert_eq!(
            probe(&x, &binary_no_one, &x, &binary_no_one, &cfg).unwrap_err(),
            MetricError::NoPositiveLabel { labels: [0, 2] }
        );
        for bad in [
            ProbeConfig {
                samples_per_label: 0,
                ..cfg
            },
            ProbeConfig {
                n_experiments: 0,
                ..cfg
            },
            ProbeConfig { c: 0.0, ..cfg },
            ProbeConfig { c: f64::NAN, ..cfg },
            ProbeConfig { tol: -1.0, ..cfg },
        ] {
            assert!(matches!(
                probe(&x, &y, &x, &y, &bad),
                Err(MetricError::InvalidParameter(_))
            ));
        }
    }

    #[test]
    fn unseen_labels_allowed_on_request() {
        let (x, y) = toy();
        let unseen = vec![0, 0, 1, 7, 2, 2];
        let cfg = ProbeConfig {
            allow_unseen_test_labels: true,
            ..ProbeConfig::default()
        };
        let out = probe(&x, &y, &x, &unseen, &cfg).unwrap();
        assert!((out.main_score - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn huge_values_do_not_panic() {
        let x = vec![vec![3e38_f32, -3e38], vec![-3e38, 3e38], vec![1e38, 1e38]];
        let y = vec![0, 1, 1];
        // Any outcome will do as long as it is not a panic.
        let _ = probe(&x, &y, &x, &y, &ProbeConfig::default());
    }

    #[test]
    fn small_label_contributes_all_rows() {
        let labels = vec![0, 0, 0, 0, 0, 1, 0, 0];
        for picked in undersample_experiments(&labels, 3, 2, 42) {
            assert_eq!(picked.len(), 4);
            assert!(picked.contains(&5));
        }
    }

    #[test]
    fn average_precision_examples() {
        // scikit-learn's docstring example: 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-15);
        // Ties form one cut-off: groups {0.9: +}, {0.5: +, -}, {0.1: -}.
        let ap = average_precision(&[0.9, 0.5, 0.5, 0.1], &[true, true, false, false]).unwrap();
        assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-15);
        assert_eq!(
            average_precision(&[0.1, 0.2], &[false, false]).unwrap(),
            0.0
        );
        assert!(average_precision(&[], &[]).is_err());
        assert!(average_precision(&[0.1], &[true, false]).is_err());
        assert!(average_precision(&[f64::INFINITY, 0.0], &[true, false]).is_err());
    }

    #[test]
    fn label_absent_from_truth_counts_in_macro() {
        // Label 2 is only predicted: precision, recall and F1 all 0.
        let s = classification_scores(&[0, 0, 1, 1], &[0, 2, 1, 1]).unwrap();
        assert_eq!(s.accuracy, 0.75);
        // Per-label F1: 0 -> 2/3, 1 -> 1, 2 -> 0.
        assert!((s.f1 - (2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-15);
        assert!((s.f1_weighted - (2.0 / 3.0 * 2.0 + 2.0) / 4.0).abs() < 1e-15);
        assert!(s.ap.is_some());
    }

    #[test]
    fn binary_without_label_one_is_an_error() {
        assert_eq!(
            classification_scores(&[0, 2], &[0, 2]).unwrap_err(),
            MetricError::NoPositiveLabel { labels: [0, 2] }
        );
        assert!(classification_scores(&[0, 2, 3], &[0, 2, 2])
            .unwrap()
            .ap
            .is_none());
        assert_eq!(
            classification_scores(&[], &[]).unwrap_err(),
            MetricError::Empty { what: "labels" }
        );
        assert!(matches!(
            classification_scores(&[1], &[]),
            Err(MetricError::LengthMismatch { .. })
        ));
    }
}
