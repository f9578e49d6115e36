//! `assay run`: evaluate one model on one or more tasks and write the run record.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::cli::RunArgs;
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::eval::generation::{CodeSettings, GenerationSettings, PromptStyle};
use crate::eval::shard::Shard;
use crate::eval::suite::{self, Model, RunMeta};
use crate::eval::{task, Needs, RunSettings, Task};
use crate::load::stats::{self, LevelSummary};
use crate::spec::{self};
use crate::store::run::{self as record, ModelInfo, RunRecord};
use crate::store::EmbeddingCache;

/// Runs the tasks and returns the folder the record was written to.
pub fn run(args: &RunArgs) -> Result<PathBuf> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    // Check every spec and every dataset before spending time on the model.
    let suite = args
        .suite
        .as_deref()
        .map(|s| spec::find_suite(&args.tasks_dir, s))
        .transpose()?;
    let mut specs = match &suite {
        Some(suite) => suite.task_specs(&args.tasks_dir)?,
        None => Vec::new(),
    };
    for t in &args.tasks {
        let spec = spec::find(&args.tasks_dir, t)?;
        if !specs.iter().any(|s| s.name == spec.name) {
            specs.push(spec);
        }
    }
    let tasks: Vec<Box<dyn Task>> = specs
        .iter()
        .map(|spec| task::load(spec, &DataSource::resolve(&spec.dataset, &args.data_root)?))
        .collect::<Result<_>>()?;
    let needs = suite::needs(&tasks)?;
    // Code tasks fail before the model loads when their programs cannot run.
    if specs
        .iter()
        .any(|s| matches!(s.kind, spec::TaskKind::Code(_)))
    {
        crate::sandbox::Sandbox::new(
            &args.sandbox,
            args.python.clone(),
            crate::sandbox::Limits::default(),
        )?;
    }
    // A bad --shard fails before the model loads.
    if let Some(text) = &args.shard {
        Shard::parse(text, |name| std::env::var(name).ok())?;
        if args.run_id.is_none() {
            return Err(Error::Usage(
                "--shard needs --run-id: every shard of a run writes under the same run folder"
                    .into(),
            ));
        }
    }
    let (model, settings) = match needs {
        Needs::Embeddings => embedding_model(args)?,
        Needs::Generations => generation_model(args)?,
    };
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        default_run_id(match &model {
            Model::Embedder { embedder, .. } => &embedder.info().model,
            Model::Generator { generator, .. } => &generator.info().model,
        })
    });
    let meta = RunMeta {
        dir: record::run_dir(&args.reports, &run_id),
        run_id,
        started_at,
        clock,
        settings,
        suite,
    };
    if let Some(text) = &args.shard {
        let shard = Shard::parse(text, |name| std::env::var(name).ok())?;
        let dir = suite::run_shard(&tasks, model, meta, shard)?;
        println!("shard {shard} recorded: {}", dir.display());
        return Ok(dir);
    }
    let dir = meta.dir.clone();
    let record = suite::run(&tasks, model, meta)?;
    print_table(&record);
    println!("\n{}", crate::store::run::WallTime::of(&record).line());
    if let Some(r) = &record.requests {
        print_requests(r);
    }
    println!("\nrun record: {}", dir.display());
    Ok(dir)
}

/// The embedder with its cache and settings, and the settings the record keeps.
fn embedding_model(args: &RunArgs) -> Result<(Model, serde_json::Value)> {
    let embedder = super::load_embedder(&args.model, &args.engine, args.concurrency)?;
    let info = embedder.info().clone();
    let cache = if args.no_cache {
        EmbeddingCache::disabled(info.dim)
    } else {
        let dir = match &args.cache_dir {
            Some(dir) => dir.clone(),
            None => suite::default_cache_dir()?,
        };
        EmbeddingCache::open(&dir, &info.fingerprint, info.dim)?
    };
    let settings = RunSettings {
        batch_size: args.engine.batch_size,
        bootstrap_resamples: args.bootstrap,
        seed: args.seed,
        store_dtype: args.store_dtype,
    };
    let recorded = json!({
        "batch_size": settings.batch_size,
        "threads": args.engine.threads,
        "bootstrap_resamples": settings.bootstrap_resamples,
        "seed": settings.seed,
        "store_dtype": settings.store_dtype,
        "data_root": args.data_root,
        "cache": cache.path(),
    });
    Ok((
        Model::Embedder {
            embedder,
            cache,
            settings,
        },
        recorded,
    ))
}

/// The chat / completion model with its answer settings, and what the record keeps.
fn generation_model(args: &RunArgs) -> Result<(Model, serde_json::Value)> {
    let generator = super::load_generator(&args.model, &args.engine, args.concurrency)?;
    let style = PromptStyle::parse(&args.prompt_style)?;
    if args.samples == 0 {
        return Err(Error::Usage("--samples must be at least 1".into()));
    }
    if args.sandbox == "none" {
        eprintln!("{}", crate::sandbox::NO_ISOLATION_WARNING);
    }
    let settings = GenerationSettings {
        code: CodeSettings {
            samples: args.samples,
            temperature: args.temperature,
            sandbox: args.sandbox.clone(),
            python: args.python.clone(),
        },
        limit: args.limit,
        repeats: args.repeats,
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
    let recorded = json!({
        "limit": args.limit,
        "seed": args.seed,
        "prompt_style": args.prompt_style,
        "max_new_tokens": args.max_new_tokens,
        "samples": args.samples,
        "repeats": args.repeats,
        "temperature": args.temperature,
        "sandbox": args.sandbox,
        "concurrency": args.concurrency,
        "bootstrap_resamples": args.bootstrap,
        "data_root": args.data_root,
    });
    Ok((
        Model::Generator {
            generator,
            settings,
        },
        recorded,
    ))
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

pub(crate) fn print_table(record: &RunRecord) {
    match &record.model {
        ModelInfo::Embedder(m) => println!(
            "\nmodel {}  ({} engine, {} pooling, max {} tokens)",
            m.model, m.engine, m.pooling, m.max_tokens
        ),
        ModelInfo::Generator(g) => println!("\nmodel {}  ({} engine)", g.model, g.engine),
    }
    let wide = record
        .tasks
        .iter()
        .map(|t| t.result.task.len())
        .chain(record.suite.iter().map(|s| s.name.len() + 6))
        .max()
        .unwrap_or(4)
        .max(14);
    let measure_w = record
        .tasks
        .iter()
        .flat_map(|t| t.result.headline_measures().into_iter().map(str::len))
        .chain(
            record
                .suite
                .iter()
                .flat_map(|s| s.scores.keys().map(String::len)),
        )
        .max()
        .unwrap_or(7)
        .max(16);
    println!(
        "{:<wide$} {:<measure_w$} {:>9}  {:<19}  {:>6}  {:>8}",
        "task", "measure", "value", "95% CI (bootstrap)", "items", "seconds"
    );
    for task in &record.tasks {
        let r = &task.result;
        for (i, name) in r.headline_measures().into_iter().enumerate() {
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
                "{task_col:<wide$} {name:<measure_w$} {:>9.5}  {:<19}  {items:>6}  {secs:>8}",
                score.value,
                show_ci(&score.ci95)
            );
        }
    }
    if let Some(suite) = &record.suite {
        println!();
        let label = format!("suite {}", suite.name);
        for (i, (name, score)) in suite.scores.iter().enumerate() {
            let first = if i == 0 { label.as_str() } else { "" };
            println!(
                "{first:<wide$} {name:<measure_w$} {:>9.5}  {}",
                score.value,
                show_ci(&score.ci95)
            );
        }
    }
}

/// `[low, high]`, or blank for a measure without a CI.
fn show_ci(ci: &crate::metrics::bootstrap::Interval) -> String {
    if ci.low.is_finite() && ci.high.is_finite() {
        format!("[{:.5}, {:.5}]", ci.low, ci.high)
    } else {
        String::new()
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
