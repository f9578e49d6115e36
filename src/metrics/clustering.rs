//! Clustering metrics (mteb `AbsTaskClustering`, the "fast" bootstrapped
//! procedure, and the legacy per-set procedure).
//!
//! Procedure (current mteb):
//! 1. Optionally keep only some documents before embedding:
//!    `random.Random.sample(range(n_docs), k)` with `k = int(fraction *
//!    n_docs)` or a fixed maximum ([`documents_to_embed`]).
//! 2. For each label level (hierarchical labels; items lacking a level are
//!    left out of it), run `n_clusters` experiments: draw
//!    `max_documents_per_cluster` items *with replacement*
//!    (`random.Random.choices`), fit scikit-learn's `MiniBatchKMeans` with k
//!    = number of distinct labels in the level, `batch_size=512`,
//!    k-means++, `n_init=1`, `random_state=seed`, and score the predicted
//!    clusters with v-measure.
//! 3. Report `np.mean` and `np.std` over all experiments of all levels
//!    (`v_measure`, `v_measure_std`).
//!
//! The same `random.Random(seed)` object carries over between steps and
//! between the subsets/splits of a task, so callers pass a [`PyRandom`] in.

use std::collections::{BTreeMap, BTreeSet};

use super::kmeans::{minibatch_kmeans, Matrix, MiniBatchKMeansParams};
use super::rng::PyRandom;
use super::vectors::check_rows;
use super::{numpy, MetricError};

/// Homogeneity, completeness and their weighted harmonic mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VMeasure {
    pub homogeneity: f64,
    pub completeness: f64,
    pub v_measure: f64,
}

/// scikit-learn's `v_measure_score` (beta = 1).
pub fn v_measure_score(labels_true: &[usize], labels_pred: &[usize]) -> Result<f64, MetricError> {
    Ok(homogeneity_completeness_v_measure(labels_true, labels_pred, 1.0)?.v_measure)
}

/// scikit-learn's `homogeneity_completeness_v_measure`: mutual information
/// of the two partitions divided by the entropy of the classes
/// (homogeneity) and of the clusters (completeness), natural logs; a
/// partition with a single block counts as perfectly homogeneous /
/// complete. Empty input gives (1, 1, 1).
pub fn homogeneity_completeness_v_measure(
    labels_true: &[usize],
    labels_pred: &[usize],
    beta: f64,
) -> Result<VMeasure, MetricError> {
    if labels_true.len() != labels_pred.len() {
        return Err(MetricError::LengthMismatch {
            what: "labels_pred",
            expected: labels_true.len(),
            got: labels_pred.len(),
        });
    }
    if labels_true.is_empty() {
        return Ok(VMeasure {
            homogeneity: 1.0,
            completeness: 1.0,
            v_measure: 1.0,
        });
    }
    let h_c = entropy(labels_true);
    let h_k = entropy(labels_pred);
    let mi = mutual_information(labels_true, labels_pred);
    let homogeneity = if h_c != 0.0 { mi / h_c } else { 1.0 };
    let completeness = if h_k != 0.0 { mi / h_k } else { 1.0 };
    let v_measure = if homogeneity + completeness == 0.0 {
        0.0
    } else {
        (1.0 + beta) * homogeneity * completeness / (beta * homogeneity + completeness)
    };
    Ok(VMeasure {
        homogeneity,
        completeness,
        v_measure,
    })
}

/// Label counts in increasing label order.
fn counts(labels: &[usize]) -> Vec<f64> {
    let mut m: BTreeMap<usize, usize> = BTreeMap::new();
    for &l in labels {
        *m.entry(l).or_default() += 1;
    }
    m.into_values().map(|c| c as f64).collect()
}

fn entropy(labels: &[usize]) -> f64 {
    let pi = counts(labels);
    if pi.len() == 1 {
        return 0.0;
    }
    let total = numpy::sum(&pi);
    let ln_total = total.ln();
    let terms: Vec<f64> = pi
        .iter()
        .map(|&p| (p / total) * (p.ln() - ln_total))
        .collect();
    -numpy::sum(&terms)
}

/// scikit-learn's `mutual_info_score` from the sparse contingency table: one
/// term per non-empty (class, cluster) cell in row-major order, terms below
/// machine epsilon in magnitude set to zero, summed with `np.sum`.
fn mutual_information(a: &[usize], b: &[usize]) -> f64 {
    let mut table: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut cols: BTreeMap<usize, usize> = BTreeMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    if rows.len() == 1 || cols.len() == 1 {
        return 0.0;
    }
    let n = a.len() as f64;
    let ln_n = n.ln();
    let terms: Vec<f64> = table
        .iter()
        .map(|(&(x, y), &c)| {
            let c = c as f64;
            let frac = c / n;
            // The product of the marginals is an int64 product in scikit-learn.
            let outer = (rows[&x] as i64).saturating_mul(cols[&y] as i64) as f64;
            let log_outer = -outer.ln() + ln_n + ln_n;
            let term = frac * (c.ln() - ln_n) + frac * log_outer;
            if term.abs() < f64::EPSILON {
                0.0
            } else {
                term
            }
        })
        .collect();
    numpy::sum(&terms).max(0.0)
}

/// mteb's clustering settings (defaults of `AbsTaskClustering`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusteringConfig {
    /// Task seed: seeds `random.Random` and is k-means' `random_state`.
    pub seed: u64,
    /// Fraction of documents embedded (0.04 by default; many tasks set
    /// `None`). Mutually exclusive with `max_document_to_embed`.
    pub max_fraction_of_documents_to_embed: Option<f64>,
    pub max_document_to_embed: Option<usize>,
    /// Size of each bootstrap draw (with replacement).
    pub max_documents_per_cluster: usize,
    /// Number of bootstrap experiments per level (mteb calls it
    /// `n_clusters`).
    pub n_clusters: usize,
    pub k_mean_batch_size: usize,
    pub max_depth: Option<usize>,
}

impl Default for ClusteringConfig {
    fn default() -> Self {
        ClusteringConfig {
            seed: 42,
            max_fraction_of_documents_to_embed: Some(0.04),
            max_document_to_embed: None,
            max_documents_per_cluster: 16_384,
            n_clusters: 10,
            k_mean_batch_size: 512,
            max_depth: None,
        }
    }
}

/// Which documents mteb embeds: `None` for all of them, otherwise the
/// indices in mteb's order (the embedding list passed to
/// [`evaluate_clustering`] must follow that order). Consumes draws from
/// `rng` exactly like mteb.
pub fn documents_to_embed(
    n_docs: usize,
    config: &ClusteringConfig,
    rng: &mut PyRandom,
) -> Result<Option<Vec<usize>>, MetricError> {
    let k = match (
        config.max_fraction_of_documents_to_embed,
        config.max_document_to_embed,
    ) {
        (Some(_), Some(_)) => {
            return Err(MetricError::InvalidParameter(
                "set only one of max_fraction_of_documents_to_embed and max_document_to_embed"
                    .into(),
            ));
        }
        (None, None) => return Ok(None),
        (Some(f), None) => {
            if !(f.is_finite() && f >= 0.0) {
                return Err(MetricError::InvalidParameter(format!(
                    "invalid document fraction {f}"
                )));
            }
            // Python's int() truncates toward zero.
            (f * n_docs as f64) as usize
        }
        (None, Some(m)) => m,
    };
    let k = k.min(n_docs);
    if k == 0 {
        return Err(MetricError::Empty {
            what: "documents to embed",
        });
    }
    rng.sample(n_docs, k)
        .map(Some)
        .ok_or_else(|| MetricError::InvalidParameter("too many documents to sample".into()))
}

/// One bootstrap experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteringExperiment {
    pub level: usize,
    /// Drawn positions within the level's items (with replacement).
    pub indices: Vec<usize>,
    /// k-means cluster of each drawn item.
    pub assignment: Vec<usize>,
    pub v_measure: f64,
}

/// Result of [`evaluate_clustering`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteringResult {
    /// Mean v-measure over all experiments of all levels (main score).
    pub v_measure: f64,
    /// Population standard deviation of the same values.
    pub v_measure_std: f64,
    /// v-measures per level (mteb's `v_measures`, "Level i" keys).
    pub v_measures: Vec<Vec<f64>>,
    pub experiments: Vec<ClusteringExperiment>,
}

impl ClusteringResult {
    pub fn main_score(&self) -> f64 {
        self.v_measure
    }
}

/// Runs the bootstrapped evaluation. `labels[i]` is the label path of
/// embedding `i` (a single-element vector for flat tasks).
pub fn evaluate_clustering(
    embeddings: &[Vec<f32>],
    labels: &[Vec<usize>],
    config: &ClusteringConfig,
    rng: &mut PyRandom,
) -> Result<ClusteringResult, MetricError> {
    let dim = check_rows("embeddings", embeddings)?;
    if labels.len() != embeddings.len() {
        return Err(MetricError::LengthMismatch {
            what: "labels",
            expected: embeddings.len(),
            got: labels.len(),
        });
    }
    if config.n_clusters == 0 || config.max_documents_per_cluster == 0 {
        return Err(MetricError::InvalidParameter(
            "n_clusters and max_documents_per_cluster must be >= 1".into(),
        ));
    }
    let seed = u32::try_from(config.seed).map_err(|_| {
        MetricError::InvalidParameter("k-means random_state must be below 2^32".into())
    })?;
    let deepest = labels.iter().map(Vec::len).max().unwrap_or(0);
    if deepest == 0 {
        return Err(MetricError::Empty { what: "labels" });
    }
    let depth = config.max_depth.map_or(deepest, |m| m.min(deepest));

    let mut v_measures = Vec::with_capacity(depth);
    let mut experiments = Vec::new();
    for level in 0..depth {
        let members: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i].len() > level)
            .collect();
        let level_labels: Vec<usize> = members.iter().map(|&i| labels[i][level]).collect();
        let k = level_labels.iter().collect::<BTreeSet<_>>().len();
        let params = MiniBatchKMeansParams::new(k, config.k_mean_batch_size, seed);
        let mut level_scores = Vec::with_capacity(config.n_clusters);
        let mut flat = vec![0f32; config.max_documents_per_cluster * dim];
        for _ in 0..config.n_clusters {
            let idx = rng
                .choices(members.len(), config.max_documents_per_cluster)
                .ok_or(MetricError::Empty {
                    what: "items of a label level",
                })?;
            for (slot, &j) in idx.iter().enumerate() {
                flat[slot * dim..(slot + 1) * dim].copy_from_slice(&embeddings[members[j]]);
            }
            let truth: Vec<usize> = idx.iter().map(|&j| level_labels[j]).collect();
            let x = Matrix::new(&flat, idx.len(), dim)?;
            let fit = minibatch_kmeans(x, &params)?;
            let v = v_measure_score(&truth, &fit.labels)?;
            level_scores.push(v);
            experiments.push(ClusteringExperiment {
                level,
                indices: idx,
                assignment: fit.labels,
                v_measure: v,
            });
        }
        v_measures.push(level_scores);
    }
    let all: Vec<f64> = v_measures.iter().flatten().copied().collect();
    Ok(ClusteringResult {
        v_measure: numpy::mean(&all),
        v_measure_std: numpy::std(&all),
        v_measures,
        experiments,
    })
}

/// Result of [`evaluate_clustering_legacy`].
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyClusteringResult {
    pub v_measure: f64,
    pub v_measure_std: f64,
    pub v_measures: Vec<f64>,
}

/// mteb's legacy clustering (`AbsTaskClusteringLegacy` +
/// `ClusteringEvaluator`): every cluster set is clustered on its own with
/// `MiniBatchKMeans(k = distinct labels, batch_size = 500, n_init = "auto"
/// (1), random_state = seed)`; a set with at most one label scores 1.0.
/// Mean and population std over the sets.
pub fn evaluate_clustering_legacy(
    sets: &[(Vec<Vec<f32>>, Vec<usize>)],
    seed: u32,
) -> Result<LegacyClusteringResult, MetricError> {
    if sets.is_empty() {
        return Err(MetricError::Empty {
            what: "cluster sets",
        });
    }
    let mut v_measures = Vec::with_capacity(sets.len());
    for (emb, lab) in sets {
        if emb.len() != lab.len() {
            return Err(MetricError::LengthMismatch {
                what: "labels of a cluster set",
                expected: emb.len(),
                got: lab.len(),
            });
        }
        let k = lab.iter().collect::<BTreeSet<_>>().len();
        if k <= 1 {
            v_measures.push(1.0);
            continue;
        }
        let dim = check_rows("embeddings of a cluster set", emb)?;
        let flat: Vec<f32> = emb.iter().flatten().copied().collect();
        let fit = minibatch_kmeans(
            Matrix::new(&flat, emb.len(), dim)?,
            &MiniBatchKMeansParams::new(k, 500, seed),
        )?;
        v_measures.push(v_measure_score(lab, &fit.labels)?);
    }
    Ok(LegacyClusteringResult {
        v_measure: numpy::mean(&v_measures),
        v_measure_std: numpy::std(&v_measures),
        v_measures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_measure_edge_cases() {
        assert_eq!(v_measure_score(&[], &[]).unwrap(), 1.0);
        assert_eq!(v_measure_score(&[0, 0, 1, 1], &[5, 5, 3, 3]).unwrap(), 1.0);
        assert_eq!(v_measure_score(&[0, 1, 0, 1], &[0, 0, 1, 1]).unwrap(), 0.0);
        assert!(v_measure_score(&[0, 1], &[0]).is_err());
    }

    #[test]
    fn rejects_bad_clustering_input() {
        let mut rng = PyRandom::seed(42);
        let cfg = ClusteringConfig::default();
        let e = vec![vec![0.0f32, 1.0]; 3];
        assert!(evaluate_clustering(&e, &[vec![0], vec![1]], &cfg, &mut rng).is_err());
        assert!(evaluate_clustering(&[], &[], &cfg, &mut rng).is_err());
        let both = ClusteringConfig {
            max_document_to_embed: Some(3),
            ..cfg
        };
        assert!(documents_to_embed(10, &both, &mut rng).is_err());
        // 4% of 10 documents truncates to zero.
        assert!(documents_to_embed(10, &cfg, &mut rng).is_err());
    }
}
