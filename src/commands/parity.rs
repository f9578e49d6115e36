//! `assay parity`: the same task inputs through two engines (say the local model and an
//! endpoint claiming to serve it). Per-item cosine between the two vectors (min, p1,
//! median) and the task scores side by side show wrong pooling, quantisation or
//! truncation at once. Vectors are always computed afresh: a cache would hide a server
//! that changed.

use std::collections::HashSet;

use serde::Serialize;

use crate::cli::ParityArgs;
use crate::data::DataSource;
use crate::engine::Embedder;
use crate::error::{Error, Result};
use crate::eval::sts::cosine;
use crate::eval::{task, Engine, Needs, RunSettings, Task, TaskInput, TaskResult};
use crate::metrics::quantile::percentile_sorted;
use crate::spec;
use crate::store::cache::key_of;
use crate::store::run::write_atomic;
use crate::store::EmbeddingCache;

#[derive(Debug, Serialize)]
pub struct TaskParity {
    pub task: String,
    pub main_score: String,
    pub scores: [f64; 2],
    /// Second model's score minus the first's.
    pub score_diff: f64,
    pub items: usize,
    pub cosine_min: f64,
    pub cosine_p1: f64,
    pub cosine_median: f64,
    pub cosine_mean: f64,
    pub worst: Vec<WorstItem>,
}

#[derive(Debug, Serialize)]
pub struct WorstItem {
    pub cosine: f64,
    pub role: String,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct ParityReport {
    pub models: [String; 2],
    pub served_models: [Option<String>; 2],
    pub tasks: Vec<TaskParity>,
}

/// Returns whether every item met `--min-cosine` (true when none was given).
pub fn run(args: &ParityArgs) -> Result<bool> {
    if args.models.len() != 2 {
        return Err(Error::Usage(format!(
            "parity compares two models: give --model twice (got {})",
            args.models.len()
        )));
    }
    let loaded: Vec<Box<dyn Task>> = args
        .tasks
        .iter()
        .map(|t| {
            let spec = spec::find(&args.tasks_dir, t)?;
            let task = task::load(&spec, &DataSource::resolve(&spec.dataset, &args.data_root)?)?;
            if task.needs() != Needs::Embeddings {
                return Err(Error::Usage(format!(
                    "task {}: parity compares embeddings; this task is answered by generation",
                    spec.name
                )));
            }
            Ok(task)
        })
        .collect::<Result<_>>()?;
    let engines: Vec<Box<dyn Embedder>> = args
        .models
        .iter()
        .map(|m| super::load_embedder(m, &args.engine, args.concurrency))
        .collect::<Result<_>>()?;
    let settings = RunSettings {
        batch_size: args.engine.batch_size,
        bootstrap_resamples: 0,
        seed: 0,
        store_dtype: Default::default(),
    };

    let mut tasks = Vec::new();
    for task in &loaded {
        tasks.push(compare(task.as_ref(), &engines, &settings, args.worst)?);
    }
    let report = ParityReport {
        models: [
            engines[0].info().model.clone(),
            engines[1].info().model.clone(),
        ],
        served_models: [
            engines[0].info().served_model.clone(),
            engines[1].info().served_model.clone(),
        ],
        tasks,
    };
    print(&report);
    if let Some(out) = &args.out {
        let json =
            serde_json::to_vec_pretty(&report).map_err(|e| Error::External(e.to_string()))?;
        write_atomic(out, &json)?;
    }
    let passed = args
        .min_cosine
        .is_none_or(|min| report.tasks.iter().all(|t| t.cosine_min >= min));
    if !passed {
        eprintln!(
            "parity: an item's cosine is below --min-cosine {}",
            args.min_cosine.unwrap_or_default()
        );
    }
    Ok(passed)
}

fn compare(
    task: &dyn Task,
    engines: &[Box<dyn Embedder>],
    settings: &RunSettings,
    worst: usize,
) -> Result<TaskParity> {
    let mut results: Vec<TaskResult> = Vec::new();
    let mut caches = Vec::new();
    for engine in engines {
        // In memory only: holds the vectors the runner computed for the comparison below.
        let mut cache = EmbeddingCache::disabled(engine.info().dim);
        let result = task.run(Engine::Embedder {
            embedder: engine.as_ref(),
            cache: &mut cache,
            settings,
        })?;
        results.push(result);
        caches.push(cache);
    }
    let inputs: Vec<TaskInput> = task.inputs()?;
    let mut seen = HashSet::new();
    let mut items: Vec<(f64, &TaskInput)> = Vec::new();
    for input in inputs.iter().filter(|i| seen.insert(*i)) {
        let vector = |k: usize| {
            caches[k]
                .get(&key_of(&input.prepared(engines[k].as_ref())))
                .ok_or_else(|| Error::External("parity: a vector went missing".into()))
        };
        let (a, b) = (vector(0)?, vector(1)?);
        if a.len() != b.len() {
            return Err(Error::Usage(format!(
                "parity: the models make vectors of different sizes ({} and {})",
                a.len(),
                b.len()
            )));
        }
        items.push((cosine(&a, &b), input));
    }
    items.sort_by(|x, y| x.0.total_cmp(&y.0));
    let cosines: Vec<f64> = items.iter().map(|(c, _)| *c).collect();
    let main = results[0].main_score.clone();
    let score = |r: &TaskResult| r.main_value().unwrap_or(f64::NAN);
    let scores = [score(&results[0]), score(&results[1])];
    Ok(TaskParity {
        task: task.spec().name.clone(),
        main_score: main,
        score_diff: scores[1] - scores[0],
        scores,
        items: cosines.len(),
        cosine_min: cosines.first().copied().unwrap_or(f64::NAN),
        cosine_p1: percentile_sorted(&cosines, 1.0),
        cosine_median: percentile_sorted(&cosines, 50.0),
        cosine_mean: cosines.iter().sum::<f64>() / cosines.len().max(1) as f64,
        worst: items
            .iter()
            .take(worst)
            .map(|(c, i)| WorstItem {
                cosine: *c,
                role: format!("{:?}", i.role).to_lowercase(),
                text: i.text.clone(),
            })
            .collect(),
    })
}

fn print(report: &ParityReport) {
    for (i, model) in report.models.iter().enumerate() {
        let served = report.served_models[i]
            .as_deref()
            .map(|s| format!(" (served model {s})"))
            .unwrap_or_default();
        println!("model {}: {model}{served}", i + 1);
    }
    println!(
        "\n{:<12} {:>6}  {:>10} {:>10} {:>10} {:>10}  {:<16} {:>9} {:>9} {:>9}",
        "task",
        "items",
        "cos min",
        "cos p1",
        "cos median",
        "cos mean",
        "measure",
        "model 1",
        "model 2",
        "diff"
    );
    for t in &report.tasks {
        println!(
            "{:<12} {:>6}  {:>10.6} {:>10.6} {:>10.6} {:>10.6}  {:<16} {:>9.5} {:>9.5} {:>+9.5}",
            t.task,
            t.items,
            t.cosine_min,
            t.cosine_p1,
            t.cosine_median,
            t.cosine_mean,
            t.main_score,
            t.scores[0],
            t.scores[1],
            t.score_diff
        );
    }
    for t in report.tasks.iter().filter(|t| !t.worst.is_empty()) {
        println!("\n{}: lowest cosines", t.task);
        for w in &t.worst {
            let text: String = w.text.chars().take(70).collect();
            println!("  {:.6}  {:<8}  {text}", w.cosine, w.role);
        }
    }
}
