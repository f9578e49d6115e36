//! A candidate run against a baseline: per-metric deltas with a paired bootstrap 95% CI
//! over the items both scored (queries, pairs, questions), and latency deltas per
//! percentile with a two-sample bootstrap CI over requests (requests are not paired).
//!
//! A difference is significant when its CI excludes zero. Runs over different item sets
//! are refused: a delta between different questions says nothing about the models.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::eval::TaskResult;
use crate::metrics::bootstrap::{statistic_ci, two_sample_ci, Interval};
use crate::metrics::correlation::{pearson, spearman};
use crate::metrics::quantile::percentile_sorted;
use crate::report::runs::{EvalRun, Run, RunKind};

#[derive(Debug, Clone, Serialize)]
pub struct MetricDelta {
    pub task: String,
    pub metric: String,
    pub baseline: f64,
    pub candidate: f64,
    /// candidate − baseline.
    pub delta: f64,
    /// Paired bootstrap 95% CI of the delta; NaN when the metric has no per-item values.
    pub ci95: Interval,
    pub significant: bool,
    /// Items both runs scored for this metric.
    pub items: usize,
    pub higher_is_better: bool,
}

impl MetricDelta {
    /// How much worse the candidate is (positive: worse), in the metric's own direction.
    pub fn drop(&self) -> f64 {
        if self.higher_is_better {
            -self.delta
        } else {
            self.delta
        }
    }

    /// The CI lies wholly on the worse side of zero.
    pub fn significantly_worse(&self) -> bool {
        self.significant && self.drop() > 0.0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyDelta {
    /// The bench level (`concurrency 8`) or `whole run`.
    pub level: String,
    /// `latency`, `ttft` or `tpot`.
    pub measure: String,
    pub percentile: f64,
    pub baseline_ms: f64,
    pub candidate_ms: f64,
    pub delta_ms: f64,
    pub ci95_ms: Interval,
    pub significant: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: String,
    pub candidate: String,
    pub metrics: Vec<MetricDelta>,
    pub latency: Vec<LatencyDelta>,
    /// Tasks or levels only one run has.
    pub unmatched: Vec<String>,
}

/// The measure's direction as the task declared it in the candidate's record, else in
/// the baseline's (records older than declared measures: higher is better).
fn higher_is_better(base: &TaskResult, cand: &TaskResult, metric: &str) -> bool {
    let declared = |r: &TaskResult| {
        r.measures
            .iter()
            .find(|m| m.name == metric)
            .map(|m| m.higher_is_better)
    };
    declared(cand).or_else(|| declared(base)).unwrap_or(true)
}

pub fn compare(base: &Run, cand: &Run, resamples: usize, seed: u64) -> Result<Comparison> {
    let mut unmatched = Vec::new();
    let metrics = match (&base.kind, &cand.kind) {
        (RunKind::Eval(a), RunKind::Eval(b)) => {
            metric_deltas(a, b, resamples, seed, &mut unmatched)?
        }
        _ => Vec::new(),
    };
    let latency = latency_deltas(base, cand, resamples, seed, &mut unmatched);
    if metrics.is_empty() && latency.is_empty() {
        return Err(Error::Usage(format!(
            "{} and {} have nothing in common to compare (no shared task, no shared load level)",
            base.dir.display(),
            cand.dir.display()
        )));
    }
    Ok(Comparison {
        baseline: base.label.clone(),
        candidate: cand.label.clone(),
        metrics,
        latency,
        unmatched,
    })
}

fn metric_deltas(
    a: &EvalRun,
    b: &EvalRun,
    resamples: usize,
    seed: u64,
    unmatched: &mut Vec<String>,
) -> Result<Vec<MetricDelta>> {
    let mut out = Vec::new();
    for ta in &a.tasks {
        let name = &ta.result.task;
        let Some(tb) = b.tasks.iter().find(|t| &t.result.task == name) else {
            unmatched.push(format!("task {name}: baseline only"));
            continue;
        };
        let items = paired_items(name, a, b)?;
        for (metric, score) in &ta.result.scores {
            let Some(other) = tb.result.scores.get(metric) else {
                continue;
            };
            let (ci95, n) = paired_ci(metric, &items, resamples, seed);
            let delta = other.value - score.value;
            out.push(MetricDelta {
                task: name.clone(),
                metric: metric.clone(),
                baseline: score.value,
                candidate: other.value,
                delta,
                significant: ci95.low > 0.0 || ci95.high < 0.0,
                ci95,
                items: n,
                higher_is_better: higher_is_better(&ta.result, &tb.result, metric),
            });
        }
    }
    if let (Some(sa), Some(sb)) = (&a.suite, &b.suite) {
        if sa.name == sb.name {
            out.extend(sa.scores.keys().filter_map(|key| suite_delta(a, b, key)));
        }
    }
    for tb in &b.tasks {
        if !a.tasks.iter().any(|t| t.result.task == tb.result.task) {
            unmatched.push(format!("task {}: candidate only", tb.result.task));
        }
    }
    Ok(out)
}

/// The change in one suite aggregate (`mean`, `mean[sts]`, ...), reported as task
/// `suite.<name>`. Its CI pairs the two runs' bootstrap replicates of `mean` (same seed
/// and items draw the same resamples); other aggregates get no CI.
pub fn suite_delta(a: &EvalRun, b: &EvalRun, key: &str) -> Option<MetricDelta> {
    let (sa, sb) = (a.suite.as_ref()?, b.suite.as_ref()?);
    let (base, cand) = (sa.scores.get(key)?, sb.scores.get(key)?);
    let paired =
        key == "mean" && !sa.replicates.is_empty() && sa.replicates.len() == sb.replicates.len();
    let ci95 = if paired {
        let deltas: Vec<f64> = sb
            .replicates
            .iter()
            .zip(&sa.replicates)
            .map(|(c, b)| c - b)
            .collect();
        crate::metrics::bootstrap::interval(&deltas)
    } else {
        Interval {
            low: f64::NAN,
            high: f64::NAN,
        }
    };
    Some(MetricDelta {
        task: format!("suite.{}", sa.name),
        metric: key.to_string(),
        baseline: base.value,
        candidate: cand.value,
        delta: cand.value - base.value,
        significant: ci95.low > 0.0 || ci95.high < 0.0,
        ci95,
        items: b.tasks.iter().map(|t| t.result.dataset.items).sum(),
        higher_is_better: true,
    })
}

/// Each item's sample in both runs, by id; an error unless both ran exactly the same items.
fn paired_items<'a>(
    task: &str,
    a: &'a EvalRun,
    b: &'a EvalRun,
) -> Result<Vec<(&'a Value, &'a Value)>> {
    let by_id = |run: &'a EvalRun| -> BTreeMap<String, &'a Value> {
        run.samples
            .get(task)
            .map(|s| s.iter().map(|v| (id_of(v), v)).collect())
            .unwrap_or_default()
    };
    let (ia, ib) = (by_id(a), by_id(b));
    let ka: BTreeSet<&String> = ia.keys().collect();
    let kb: BTreeSet<&String> = ib.keys().collect();
    if ka != kb {
        let only_a: Vec<&&String> = ka.difference(&kb).collect();
        let only_b: Vec<&&String> = kb.difference(&ka).collect();
        let example = |ids: &[&&String]| {
            ids.first()
                .map_or(String::new(), |i| format!(", e.g. `{i}`"))
        };
        return Err(Error::Usage(format!(
            "task {task}: the runs scored different items ({} only in the baseline{}, {} only in the candidate{}); \
             a paired comparison needs the same items: run both with the same --limit and --seed",
            only_a.len(),
            example(&only_a),
            only_b.len(),
            example(&only_b),
        )));
    }
    Ok(ia.iter().map(|(id, va)| (*va, ib[id])).collect())
}

fn id_of(sample: &Value) -> String {
    match &sample["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Paired bootstrap CI of candidate − baseline for one metric, and how many items it
/// covers. Means use each item's own value (`scores` in the sample); STS correlations are
/// recomputed on every resample from the gold scores and both runs' cosines.
fn paired_ci(
    metric: &str,
    items: &[(&Value, &Value)],
    resamples: usize,
    seed: u64,
) -> (Interval, usize) {
    let per_item: Vec<(f64, f64)> = items
        .iter()
        .filter_map(|(a, b)| Some((a["scores"][metric].as_f64()?, b["scores"][metric].as_f64()?)))
        .collect();
    if !per_item.is_empty() {
        let ci = statistic_ci(per_item.len(), resamples, seed, |idx| {
            idx.iter()
                .map(|&i| per_item[i].1 - per_item[i].0)
                .sum::<f64>()
                / idx.len() as f64
        });
        return (ci, per_item.len());
    }
    type Correlation = fn(&[f64], &[f64]) -> f64;
    let correlation: Option<Correlation> = match metric {
        "cosine_spearman" => Some(spearman),
        "cosine_pearson" => Some(pearson),
        _ => None,
    };
    let triples: Vec<(f64, f64, f64)> = items
        .iter()
        .filter_map(|(a, b)| {
            Some((
                a["gold"].as_f64()?,
                a["cosine"].as_f64()?,
                b["cosine"].as_f64()?,
            ))
        })
        .collect();
    match correlation {
        Some(corr) if !triples.is_empty() => {
            let ci = statistic_ci(triples.len(), resamples, seed, |idx| {
                let gold: Vec<f64> = idx.iter().map(|&i| triples[i].0).collect();
                let ca: Vec<f64> = idx.iter().map(|&i| triples[i].1).collect();
                let cb: Vec<f64> = idx.iter().map(|&i| triples[i].2).collect();
                corr(&cb, &gold) - corr(&ca, &gold)
            });
            (ci, triples.len())
        }
        _ => (
            Interval {
                low: f64::NAN,
                high: f64::NAN,
            },
            0,
        ),
    }
}

const PERCENTILES: [f64; 3] = [50.0, 90.0, 99.0];

type Measure = (
    &'static str,
    fn(&crate::engine::RequestRecord) -> Option<f64>,
);

const MEASURES: [Measure; 3] = [
    ("latency", |r| {
        r.error.is_none().then(|| crate::load::stats::latency(r))
    }),
    ("ttft", |r| {
        r.error
            .is_none()
            .then(|| crate::load::stats::ttft(r))
            .flatten()
    }),
    ("tpot", |r| {
        r.error
            .is_none()
            .then(|| crate::load::stats::tpot(r))
            .flatten()
    }),
];

/// Latency, TTFT and TPOT percentiles of matching levels (bench levels by label; the whole
/// run for evaluation runs against endpoints).
fn latency_deltas(
    base: &Run,
    cand: &Run,
    resamples: usize,
    seed: u64,
    unmatched: &mut Vec<String>,
) -> Vec<LatencyDelta> {
    let levels = |run: &Run| -> Vec<(String, Option<usize>)> {
        match &run.kind {
            RunKind::Bench(b) => b
                .levels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.label.clone(), Some(i)))
                .collect(),
            RunKind::Eval(_) if !run.perf.is_empty() => vec![("whole run".to_string(), None)],
            RunKind::Eval(_) => Vec::new(),
        }
    };
    let (la, lb) = (levels(base), levels(cand));
    let mut out = Vec::new();
    for (label, ia) in &la {
        let Some((_, ib)) = lb.iter().find(|(l, _)| l == label) else {
            unmatched.push(format!("level {label}: baseline only"));
            continue;
        };
        for (measure, read) in MEASURES {
            let sorted = |run: &Run, level: Option<usize>| -> Vec<f64> {
                let mut v: Vec<f64> = run
                    .measured(level)
                    .filter_map(read)
                    .map(|s| s * 1e3)
                    .collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let (a, b) = (sorted(base, *ia), sorted(cand, *ib));
            if a.is_empty() || b.is_empty() {
                continue;
            }
            for p in PERCENTILES {
                let ci95_ms = two_sample_ci(a.len(), b.len(), resamples, seed, |ra, rb| {
                    resampled_percentile(&b, rb, p) - resampled_percentile(&a, ra, p)
                });
                let (pa, pb) = (percentile_sorted(&a, p), percentile_sorted(&b, p));
                out.push(LatencyDelta {
                    level: label.clone(),
                    measure: measure.into(),
                    percentile: p,
                    baseline_ms: pa,
                    candidate_ms: pb,
                    delta_ms: pb - pa,
                    significant: ci95_ms.low > 0.0 || ci95_ms.high < 0.0,
                    ci95_ms,
                })
            }
        }
    }
    for (label, _) in &lb {
        if !la.iter().any(|(l, _)| l == label) {
            unmatched.push(format!("level {label}: candidate only"));
        }
    }
    out
}

fn resampled_percentile(sorted: &[f64], idx: &[usize], p: f64) -> f64 {
    // Indices into a sorted vector: sorting them sorts the resample.
    let mut idx = idx.to_vec();
    idx.sort_unstable();
    let values: Vec<f64> = idx.iter().map(|&i| sorted[i]).collect();
    percentile_sorted(&values, p)
}

/// The metric deltas as a frame (for the terminal, Markdown and CSV).
pub fn metrics_frame(c: &Comparison) -> Result<DataFrame> {
    let m = &c.metrics;
    let col = |f: fn(&MetricDelta) -> f64| -> Vec<Option<f64>> {
        m.iter()
            .map(|d| Some(f(d)).filter(|v| v.is_finite()))
            .collect()
    };
    df!(
        "task" => m.iter().map(|d| d.task.clone()).collect::<Vec<_>>(),
        "metric" => m.iter().map(|d| d.metric.clone()).collect::<Vec<_>>(),
        "baseline" => col(|d| d.baseline),
        "candidate" => col(|d| d.candidate),
        "delta" => col(|d| d.delta),
        "ci95_low" => col(|d| d.ci95.low),
        "ci95_high" => col(|d| d.ci95.high),
        "significant" => m.iter().map(|d| verdict(d.significant, d.delta, d.higher_is_better)).collect::<Vec<_>>(),
        "items" => m.iter().map(|d| d.items as u64).collect::<Vec<_>>(),
    )
    .map_err(|source| Error::Polars {
        context: "comparison".into(),
        source,
    })
}

/// The latency deltas as a frame.
pub fn latency_frame(c: &Comparison) -> Result<DataFrame> {
    let l = &c.latency;
    let col = |f: fn(&LatencyDelta) -> f64| -> Vec<Option<f64>> {
        l.iter()
            .map(|d| Some(f(d)).filter(|v| v.is_finite()))
            .collect()
    };
    df!(
        "level" => l.iter().map(|d| d.level.clone()).collect::<Vec<_>>(),
        "measure" => l.iter().map(|d| format!("{} p{}", d.measure, d.percentile)).collect::<Vec<_>>(),
        "baseline_ms" => col(|d| d.baseline_ms),
        "candidate_ms" => col(|d| d.candidate_ms),
        "delta_ms" => col(|d| d.delta_ms),
        "ci95_low_ms" => col(|d| d.ci95_ms.low),
        "ci95_high_ms" => col(|d| d.ci95_ms.high),
        "significant" => l.iter().map(|d| verdict(d.significant, d.delta_ms, false)).collect::<Vec<_>>(),
    )
    .map_err(|source| Error::Polars {
        context: "latency comparison".into(),
        source,
    })
}

fn verdict(significant: bool, delta: f64, higher_is_better: bool) -> String {
    match (significant, (delta > 0.0) == higher_is_better) {
        (false, _) => "no".into(),
        (true, true) => "better".into(),
        (true, false) => "worse".into(),
    }
}
