//! Drives a list of tasks through one model and writes the run record: the library side
//! of `assay run` (commands only translate flags and print).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::engine::{Embedder, Generator, RequestRecord};
use crate::error::{Error, Result};
use crate::eval::aggregate::aggregate;
use crate::eval::generation::GenerationSettings;
use crate::eval::shard::{Shard, ShardGenerator, ShardWork};
use crate::eval::task::{Engine, Needs, Task};
use crate::eval::RunSettings;
use crate::load::stats::{self, Slo};
use crate::spec::SuiteSpec;
use crate::store::bench::PerfLine;
use crate::store::partial::{self, PartialRecord, PartialTask, Scoring};
use crate::store::run::{self as record, Machine, ModelInfo, RunRecord, TaskRecord, ToolInfo};
use crate::store::EmbeddingCache;

/// The model a run evaluates, with what its tasks need beside it.
pub enum Model {
    Embedder {
        embedder: Box<dyn Embedder>,
        cache: EmbeddingCache,
        settings: RunSettings,
    },
    Generator {
        generator: Box<dyn Generator>,
        settings: GenerationSettings,
    },
}

impl Model {
    fn info(&self) -> ModelInfo {
        match self {
            Model::Embedder { embedder, .. } => ModelInfo::Embedder(embedder.info().clone()),
            Model::Generator { generator, .. } => ModelInfo::Generator(generator.info().clone()),
        }
    }

    fn request_log(&self) -> Vec<RequestRecord> {
        match self {
            Model::Embedder { embedder, .. } => embedder.request_log(),
            Model::Generator { generator, .. } => generator.request_log(),
        }
    }

    /// The settings that shape the scores (what the shards of a run must share).
    fn scoring(&self) -> Scoring {
        match self {
            Model::Embedder { settings, .. } => Scoring::Embedding(settings.clone()),
            Model::Generator { settings, .. } => Scoring::Generation(settings.clone()),
        }
    }

    pub(crate) fn engine(&mut self) -> Engine<'_> {
        match self {
            Model::Embedder {
                embedder,
                cache,
                settings,
            } => Engine::Embedder {
                embedder: &**embedder,
                cache,
                settings,
            },
            Model::Generator {
                generator,
                settings,
            } => Engine::Generator {
                generator: &**generator,
                settings,
            },
        }
    }
}

/// What every task of a run needs: embeddings or generations, never both.
pub fn needs(tasks: &[Box<dyn Task>]) -> Result<Needs> {
    let first = tasks
        .first()
        .map(|t| t.needs())
        .ok_or_else(|| Error::Usage("no task to run: give --task or --suite".into()))?;
    if tasks.iter().any(|t| t.needs() != first) {
        return Err(Error::Usage(
            "a run evaluates embedding tasks or generation tasks, not both: split the --task list"
                .into(),
        ));
    }
    Ok(first)
}

/// Where and when a run records itself.
pub struct RunMeta {
    pub dir: PathBuf,
    pub run_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub clock: Instant,
    /// The flags that shaped the run, as recorded in `run.json`.
    pub settings: serde_json::Value,
    /// The suite being run, whose aggregates go in the record.
    pub suite: Option<SuiteSpec>,
}

/// Runs every task in order and writes `run.json`, `samples.jsonl`, `perf.jsonl` and the
/// MTEB layout under `meta.dir`. A task that fails stops the run: what its engine
/// finished is already in the cache, and the request log is kept beside a failure note.
pub fn run(tasks: &[Box<dyn Task>], mut model: Model, meta: RunMeta) -> Result<RunRecord> {
    let mut records = Vec::new();
    for task in tasks {
        match task.run(model.engine()) {
            Ok(mut result) => {
                result.measures = task.measures();
                result.family = task.spec().family().into();
                records.push(TaskRecord {
                    spec: task.spec().clone(),
                    result,
                });
            }
            Err(e) => {
                let message = format!("task {}: {e}", task.spec().name);
                let perf = requests_json(model.request_log());
                if let Err(w) = record::write_failure(&meta.dir, &message, &perf) {
                    tracing::warn!("could not write the failure record: {w}");
                }
                return Err(e);
            }
        }
    }
    let suite = meta
        .suite
        .as_ref()
        .map(|suite| aggregate(suite, &records))
        .transpose()?;
    let requests = model.request_log();
    let summary = (!requests.is_empty())
        .then(|| stats::summarize(&requests.iter().collect::<Vec<_>>(), &Slo::default()));
    let run = RunRecord {
        schema: record::SCHEMA.into(),
        run_id: meta.run_id,
        tool: ToolInfo::current(),
        model: model.info(),
        started: meta.started_at.to_rfc3339(),
        finished: chrono::Utc::now().to_rfc3339(),
        seconds: meta.clock.elapsed().as_secs_f64(),
        machine: Machine::current(),
        settings: meta.settings,
        tasks: records,
        suite,
        requests: summary,
    };
    record::write(&meta.dir, &run, &requests_json(requests))?;
    Ok(run)
}

/// Runs this shard's share of every task and writes its partial record under
/// `<meta.dir>/shard-<i>-of-<n>/` (what `merge` combines); returns that folder. A rerun of
/// the same shard starts its folder afresh and takes its vectors from the cache.
pub fn run_shard(
    tasks: &[Box<dyn Task>],
    model: Model,
    meta: RunMeta,
    shard: Shard,
) -> Result<PathBuf> {
    let dir = partial::shard_dir(&meta.dir, &shard);
    partial::clear(&dir)?;
    let info = model.info();
    let (mut model, answers) = match model {
        Model::Generator {
            generator,
            settings,
        } => {
            let (generator, answers) = ShardGenerator::new(generator, shard);
            let generator = Box::new(generator);
            (
                Model::Generator {
                    generator,
                    settings,
                },
                Some(answers),
            )
        }
        embedder => (embedder, None),
    };
    let mut work = ShardWork::default();
    let mut done = Vec::new();
    for task in tasks {
        let started = Instant::now();
        work.embedding = Default::default();
        let lists = work.ranked.len();
        if let Err(e) = task.run_shard(model.engine(), &shard, &mut work) {
            let message = format!("shard {shard}, task {}: {e}", task.spec().name);
            let perf = requests_json(model.request_log());
            if let Err(w) = record::write_failure(&dir, &message, &perf) {
                tracing::warn!("could not write the failure record: {w}");
            }
            return Err(e);
        }
        done.push(PartialTask {
            spec: task.spec().clone(),
            dataset_fingerprint: task.dataset_fingerprint(),
            embedding: work.embedding.clone(),
            seconds: started.elapsed().as_secs_f64(),
            ranked: work.ranked.len() > lists,
        });
    }
    let answers = answers
        .map(|a| std::mem::take(&mut *a.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();
    let record = PartialRecord {
        schema: partial::SCHEMA.into(),
        run_id: meta.run_id,
        shard,
        tool: ToolInfo::current(),
        model: info,
        machine: Machine::current(),
        started: meta.started_at.to_rfc3339(),
        finished: chrono::Utc::now().to_rfc3339(),
        seconds: meta.clock.elapsed().as_secs_f64(),
        settings: meta.settings,
        scoring: model.scoring(),
        suite: meta.suite,
        tasks: done,
        vectors: work.vectors.len(),
    };
    partial::write(
        &dir,
        &record,
        &work,
        &answers,
        &requests_json(model.request_log()),
    )?;
    Ok(dir)
}

pub(crate) fn requests_json(records: Vec<RequestRecord>) -> Vec<PerfLine> {
    records
        .into_iter()
        .map(|r| PerfLine::new(None, false, r))
        .collect()
}

/// The default cache folder: `$XDG_CACHE_HOME/assay`, else `~/.cache/assay`.
pub fn default_cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .ok_or_else(|| {
            Error::Usage("no --cache-dir given and neither XDG_CACHE_HOME nor HOME is set".into())
        })?;
    Ok(home.join("assay"))
}
