//! A suite's aggregates: MTEB's mean per task type and over types, or a plain mean over
//! tasks, each with a bootstrap CI. Tasks are independent, so resample b of the aggregate
//! combines resample b of every task (items resampled within each task).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::Score;
use crate::metrics::bootstrap::interval;
use crate::spec::{Aggregate, SuiteSpec};
use crate::store::run::TaskRecord;

/// What a suite adds to a run record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteResult {
    pub name: String,
    pub aggregate: Aggregate,
    /// `mean` (the headline), and for MTEB's aggregate `mean_task` and `mean[<type>]`.
    pub scores: BTreeMap<String, Score>,
    /// The task types and the tasks each one averages (MTEB's aggregate).
    #[serde(default)]
    pub types: BTreeMap<String, Vec<String>>,
    /// `mean` on each bootstrap resample: a gate pairs these across two runs.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::metrics::bootstrap::nulls_as_nan"
    )]
    pub replicates: Vec<f64>,
}

/// An aggregate as a function of one value per task.
type Formula = Box<dyn Fn(&[f64]) -> f64>;

/// One task's value and replicates of the measure being aggregated.
struct Part<'a> {
    task: &'a str,
    family: &'a str,
    value: f64,
    replicates: Option<&'a [f64]>,
}

/// The suite's aggregates over the tasks a run scored.
pub fn aggregate(suite: &SuiteSpec, tasks: &[TaskRecord]) -> Result<SuiteResult> {
    let mut parts = Vec::new();
    for name in &suite.tasks {
        let record = tasks.iter().find(|t| &t.spec.name == name).ok_or_else(|| {
            Error::Usage(format!("suite {}: task {name} was not run", suite.name))
        })?;
        let r = &record.result;
        let measure = suite.measure.as_deref().unwrap_or(&r.main_score);
        let value = r.scores.get(measure).map(|s| s.value).ok_or_else(|| {
            Error::Usage(format!(
                "suite {}: task {name} has no score `{measure}`",
                suite.name
            ))
        })?;
        let replicates = (measure == r.main_score && !r.replicates.is_empty())
            .then_some(r.replicates.as_slice());
        parts.push(Part {
            task: name,
            family: &r.family,
            value,
            replicates,
        });
    }

    let mut types: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &parts {
        types
            .entry(p.family.to_string())
            .or_default()
            .push(p.task.to_string());
    }
    // Every aggregate as a function of one value per task (the score or a replicate).
    let mut formulas: Vec<(String, Formula)> = Vec::new();
    let mean_of = |idx: Vec<usize>| {
        move |v: &[f64]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64
    };
    let all: Vec<usize> = (0..parts.len()).collect();
    match suite.aggregate {
        Aggregate::Mean => formulas.push(("mean".into(), Box::new(mean_of(all)))),
        Aggregate::Mteb => {
            let groups: Vec<Vec<usize>> = types
                .keys()
                .map(|family| {
                    (0..parts.len())
                        .filter(|&i| parts[i].family == family)
                        .collect()
                })
                .collect();
            for (family, idx) in types.keys().zip(&groups) {
                formulas.push((format!("mean[{family}]"), Box::new(mean_of(idx.clone()))));
            }
            let type_means = groups.clone();
            formulas.push((
                "mean".into(),
                Box::new(move |v: &[f64]| {
                    type_means
                        .iter()
                        .map(|idx| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64)
                        .sum::<f64>()
                        / type_means.len() as f64
                }),
            ));
            formulas.push(("mean_task".into(), Box::new(mean_of(all))));
        }
    }

    let values: Vec<f64> = parts.iter().map(|p| p.value).collect();
    let resamples: Option<Vec<&[f64]>> = parts.iter().map(|p| p.replicates).collect();
    let resamples = resamples.filter(|r| r.windows(2).all(|w| w[0].len() == w[1].len()));
    let mut scores = BTreeMap::new();
    let mut mean_replicates = Vec::new();
    for (name, formula) in &formulas {
        let replicates: Vec<f64> = match &resamples {
            Some(r) if !r.is_empty() => (0..r[0].len())
                .map(|b| formula(&r.iter().map(|task| task[b]).collect::<Vec<_>>()))
                .collect(),
            _ => Vec::new(),
        };
        scores.insert(
            name.clone(),
            Score {
                value: formula(&values),
                ci95: interval(&replicates),
            },
        );
        if name == "mean" {
            mean_replicates = replicates;
        }
    }
    Ok(SuiteResult {
        name: suite.name.clone(),
        aggregate: suite.aggregate,
        scores,
        types: if suite.aggregate == Aggregate::Mteb {
            types
        } else {
            BTreeMap::new()
        },
        replicates: mean_replicates,
    })
}
