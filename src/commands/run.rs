//! `assay run`: evaluate one model on one or more tasks and write the run record.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::cli::RunArgs;
use crate::data::generation::{self, Loaded};
use crate::data::image_text::{load_coco, load_karpathy, ImageTextDataset};
use crate::data::{BeirDataset, DataSource, StsDataset};
use crate::engine::openai::RequestRecord;
use crate::error::{Error, Result};
use crate::eval::generation::{GenerationSettings, PromptStyle};
use crate::eval::{self, RunSettings, TaskResult};
use crate::load::stats::{self, LevelSummary, Slo};
use crate::spec::{self, TaskFamily, TaskSpec};
use crate::store::run::{self as record, Machine, ModelInfo, RunRecord, TaskRecord, ToolInfo};
use crate::store::EmbeddingCache;

/// Runs the tasks and returns the folder the record was written to.
pub fn run(args: &RunArgs) -> Result<PathBuf> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    // Check the model reference, every spec and every dataset before spending time on
    // the model.
    super::parse_model(&args.model)?;
    let specs: Vec<TaskSpec> = args
        .tasks
        .iter()
        .map(|t| spec::find(&args.tasks_dir, t))
        .collect::<Result<_>>()?;
    let sources: Vec<DataSource> = specs
        .iter()
        .map(|s| DataSource::resolve(&s.dataset, &args.data_root))
        .collect::<Result<_>>()?;

    let datasets: Vec<Dataset> = specs
        .iter()
        .zip(&sources)
        .map(|(spec, source)| Dataset::load(spec, source))
        .collect::<Result<_>>()?;

    let generating = specs.iter().filter(|s| s.family().generates()).count();
    if generating == specs.len() {
        return run_generation(args, &specs, &datasets, started_at, clock);
    }
    if generating > 0 {
        return Err(Error::Usage(
            "a run evaluates embedding tasks or generation tasks, not both: split the --task list"
                .into(),
        ));
    }

    let embedder = super::load_embedder(&args.model, &args.engine, args.concurrency)?;
    let info = embedder.info().clone();
    let mut cache = if args.no_cache {
        EmbeddingCache::disabled(info.dim)
    } else {
        EmbeddingCache::open(&cache_dir(args)?, &info.fingerprint, info.dim)?
    };
    let settings = RunSettings {
        batch_size: args.engine.batch_size,
        bootstrap_resamples: args.bootstrap,
        seed: args.seed,
    };

    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| default_run_id(&info.model));
    let dir = record::run_dir(&args.reports, &run_id);

    let mut tasks = Vec::new();
    for (spec, data) in specs.iter().zip(&datasets) {
        let outcome = match data {
            Dataset::Sts(d) => eval::sts::run(spec, d, embedder.as_ref(), &mut cache, &settings),
            Dataset::Beir(d) => {
                eval::retrieval::run(spec, d, embedder.as_ref(), &mut cache, &settings)
            }
            Dataset::ImageText(d) => {
                eval::image_text::run(spec, d, embedder.as_ref(), &mut cache, &settings)
            }
            Dataset::Generation(_) => unreachable!("generation tasks run in run_generation"),
        };
        let result = match outcome {
            Ok(result) => result,
            Err(e) => {
                // Finished batches are in the cache already; keep the request log too.
                let message = format!("task {}: {e}", spec.name);
                if let Err(w) =
                    record::write_failure(&dir, &message, &requests_json(embedder.request_log()))
                {
                    tracing::warn!("could not write the failure record: {w}");
                }
                return Err(e);
            }
        };
        tasks.push(TaskRecord {
            spec: spec.clone(),
            result,
        });
    }

    let records = embedder.request_log();
    let settings = json!({
        "batch_size": settings.batch_size,
        "threads": args.engine.threads,
        "bootstrap_resamples": settings.bootstrap_resamples,
        "seed": settings.seed,
        "data_root": args.data_root,
        "cache": cache.path(),
    });
    let run = Finished {
        dir,
        run_id,
        model: ModelInfo::Embedder(info),
        started_at,
        clock,
        settings,
    };
    run.write(tasks, records)
}

/// Generation tasks (MMLU-Pro, GSM8K) through a chat / completion model.
fn run_generation(
    args: &RunArgs,
    specs: &[TaskSpec],
    datasets: &[Dataset],
    started_at: chrono::DateTime<chrono::Utc>,
    clock: Instant,
) -> Result<PathBuf> {
    let generator = super::load_generator(&args.model, &args.engine, args.concurrency)?;
    let generator = generator.as_ref();
    let info = generator.info().clone();
    let style = match args.prompt_style.as_str() {
        "chat" => PromptStyle::Chat,
        "completion" => PromptStyle::Completion,
        other => {
            return Err(Error::Usage(format!(
                "--prompt-style `{other}`: expected chat or completion"
            )))
        }
    };
    let settings = GenerationSettings {
        limit: args.limit,
        seed: args.seed,
        style,
        max_tokens: args.max_new_tokens,
        bootstrap_resamples: args.bootstrap,
        loglikelihood: match args.scoring.as_str() {
            "generate" => false,
            "loglikelihood" => true,
            other => {
                return Err(Error::Usage(format!(
                    "--scoring `{other}`: expected generate or loglikelihood"
                )))
            }
        },
    };
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| default_run_id(&info.model));
    let dir = record::run_dir(&args.reports, &run_id);
    let mut tasks = Vec::new();
    for (spec, data) in specs.iter().zip(datasets) {
        let Dataset::Generation(loaded) = data else {
            unreachable!("only generation tasks reach here")
        };
        match eval::generation::run(spec, loaded, generator, &settings) {
            Ok(result) => tasks.push(TaskRecord {
                spec: spec.clone(),
                result,
            }),
            Err(e) => {
                let message = format!("task {}: {e}", spec.name);
                let perf = requests_json(generator.request_log());
                if let Err(w) = record::write_failure(&dir, &message, &perf) {
                    tracing::warn!("could not write the failure record: {w}");
                }
                return Err(e);
            }
        }
    }
    let settings = json!({
        "limit": args.limit,
        "seed": args.seed,
        "prompt_style": args.prompt_style,
        "max_new_tokens": args.max_new_tokens,
        "concurrency": args.concurrency,
        "bootstrap_resamples": args.bootstrap,
        "data_root": args.data_root,
    });
    let run = Finished {
        dir,
        run_id,
        model: ModelInfo::Generator(info),
        started_at,
        clock,
        settings,
    };
    run.write(tasks, generator.request_log())
}

/// What every run record carries besides its tasks.
struct Finished {
    dir: PathBuf,
    run_id: String,
    model: ModelInfo,
    started_at: chrono::DateTime<chrono::Utc>,
    clock: Instant,
    settings: serde_json::Value,
}

impl Finished {
    /// Summarises the requests, writes the record, prints the table.
    fn write(self, tasks: Vec<TaskRecord>, requests: Vec<RequestRecord>) -> Result<PathBuf> {
        let summary = (!requests.is_empty())
            .then(|| stats::summarize(&requests.iter().collect::<Vec<_>>(), &Slo::default()));
        let record = RunRecord {
            schema: record::SCHEMA.into(),
            run_id: self.run_id,
            tool: ToolInfo::current(),
            model: self.model,
            started: self.started_at.to_rfc3339(),
            finished: chrono::Utc::now().to_rfc3339(),
            seconds: self.clock.elapsed().as_secs_f64(),
            machine: Machine::current(),
            settings: self.settings,
            tasks,
            requests: summary,
        };
        record::write(&self.dir, &record, &requests_json(requests))?;
        print_table(&record);
        if let Some(r) = &record.requests {
            print_requests(r);
        }
        println!("\nrun record: {}", self.dir.display());
        Ok(self.dir)
    }
}

fn requests_json(records: Vec<RequestRecord>) -> Vec<serde_json::Value> {
    records
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

/// A task's data, loaded and checked before the model is.
pub(crate) enum Dataset {
    Sts(StsDataset),
    Beir(BeirDataset),
    ImageText(ImageTextDataset),
    Generation(Loaded),
}

impl Dataset {
    pub(crate) fn load(spec: &TaskSpec, source: &DataSource) -> Result<Dataset> {
        tracing::info!(task = %spec.name, source = %source.describe(), "loading dataset");
        Ok(match spec.family() {
            TaskFamily::Sts => {
                let sts = spec.sts.as_ref().expect("family Sts has an [sts] section");
                Dataset::Sts(StsDataset::load(&spec.dataset, sts, source)?)
            }
            TaskFamily::Retrieval => Dataset::Beir(BeirDataset::load(&spec.dataset, source)?),
            TaskFamily::MmluPro => {
                let section = spec
                    .mmlu_pro
                    .as_ref()
                    .expect("family MmluPro has [mmlu_pro]");
                Dataset::Generation(generation::load_mmlu_pro(&spec.dataset, source, section)?)
            }
            TaskFamily::Gsm8k => {
                Dataset::Generation(generation::load_gsm8k(&spec.dataset, source)?)
            }
            TaskFamily::Math => Dataset::Generation(generation::load_math(&spec.dataset, source)?),
            TaskFamily::ImageText => Dataset::ImageText(load_image_text(spec, source)?),
        })
    }
}

/// Image-text data is read from a local folder (hub copies keep images inside Parquet).
fn load_image_text(spec: &TaskSpec, source: &DataSource) -> Result<ImageTextDataset> {
    let DataSource::Local(dir) = source else {
        return Err(Error::Usage(format!(
            "task {}: image-text datasets are read from a local folder; put `{}` under --data-root",
            spec.name, spec.dataset.local
        )));
    };
    let section = spec
        .image_text
        .as_ref()
        .expect("family ImageText has [image_text]");
    match (spec.dataset.format, &section.file) {
        (crate::spec::DatasetFormat::Karpathy, Some(file)) => {
            let images = dir.join(section.images.as_deref().unwrap_or("."));
            load_karpathy(&dir.join(file), &images, &spec.dataset.split)
        }
        _ => load_coco(dir, &spec.dataset.split),
    }
}

fn cache_dir(args: &RunArgs) -> Result<PathBuf> {
    if let Some(dir) = &args.cache_dir {
        return Ok(dir.clone());
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            Error::Usage("no --cache-dir given and neither XDG_CACHE_HOME nor HOME is set".into())
        })?;
    Ok(home.join("assay"))
}

/// `20261122T170412-all-MiniLM-L6-v2`: sortable, and says which model.
fn default_run_id(model: &str) -> String {
    let name: String = model
        .rsplit(['/', ':'])
        .find(|s| !s.is_empty())
        .unwrap_or("model")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{name}", chrono::Utc::now().format("%Y%m%dT%H%M%S"))
}

/// The headline measures first, then the rest the family is known for.
fn shown_measures(result: &TaskResult) -> Vec<&str> {
    let mut names = vec![result.main_score.as_str()];
    let extra: &[&str] = match result.family.as_str() {
        "retrieval" => &["map_at_10", "mrr_at_10", "recall_at_100", "precision_at_1"],
        "mmlu-pro" => &[
            "accuracy_l1",
            "unparsed_rate_l2",
            "accuracy_l2_random_fallback",
            "accuracy_lm_eval_strict",
        ],
        "gsm8k" => &["exact_match_flexible"],
        "math" => &["accuracy_hendrycks", "unboxed_rate"],
        _ => &["cosine_pearson"],
    };
    names.extend(
        extra
            .iter()
            .filter(|m| **m != result.main_score && result.scores.contains_key(**m)),
    );
    names
}

fn print_table(record: &RunRecord) {
    match &record.model {
        ModelInfo::Embedder(m) => println!(
            "\nmodel {}  ({} engine, {} pooling, max {} tokens)",
            m.model, m.engine, m.pooling, m.max_tokens
        ),
        ModelInfo::Generator(g) => println!("\nmodel {}  ({} engine)", g.model, g.engine),
    }
    println!(
        "{:<14} {:<16} {:>9}  {:<19}  {:>6}  {:>8}",
        "task", "measure", "value", "95% CI (bootstrap)", "items", "seconds"
    );
    for task in &record.tasks {
        let r = &task.result;
        for (i, name) in shown_measures(r).into_iter().enumerate() {
            let score = &r.scores[name];
            let (task_col, items, secs) = if i == 0 {
                (
                    r.task.as_str(),
                    r.dataset.items.to_string(),
                    format!("{:.1}", r.seconds),
                )
            } else {
                ("", String::new(), String::new())
            };
            println!(
                "{task_col:<14} {name:<16} {:>9.5}  [{:.5}, {:.5}]  {items:>6}  {secs:>8}",
                score.value, score.ci95.low, score.ci95.high
            );
        }
    }
}

fn print_requests(r: &LevelSummary) {
    let ms = |d: &Option<stats::Distribution>, pick: fn(&stats::Distribution) -> f64| {
        d.as_ref()
            .map_or("-".into(), |d| format!("{:.1} ms", pick(d) * 1e3))
    };
    println!(
        "\nrequests: {} ({} failed, {} attempts retried), {:.1} req/s, {:.1} items/s; latency p50 {}, p90 {}, p99 {}, max {}",
        r.requests,
        r.requests - r.ok,
        r.retried.values().sum::<usize>(),
        r.requests_per_second,
        r.items_per_second,
        ms(&r.latency, |d| d.p50),
        ms(&r.latency, |d| d.p90),
        ms(&r.latency, |d| d.p99),
        ms(&r.latency, |d| d.max),
    );
}
