//! `assay merge` for evaluation runs: checks that a run folder's shards are one run (same
//! model, settings, task specs and data; every shard once), then computes each task's
//! result from the shards' recorded work with the task's own scoring, and writes one run
//! record equal to what an unsharded run writes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::eval::aggregate::aggregate;
use crate::eval::embed::EmbedStats;
use crate::eval::shard::{ReplayEmbedder, ReplayGenerator, Shard};
use crate::eval::suite::Model;
use crate::eval::task::{self, Task};
use crate::load::stats::{self, Slo};
use crate::store::bench::read_perf;
use crate::store::partial::{self, PartialRecord, Scoring};
use crate::store::run::{self as record, Machine, ModelInfo, RunRecord, TaskRecord, ToolInfo};
use crate::store::EmbeddingCache;

/// One finished shard: its folder and record.
pub struct ShardRecord {
    pub dir: PathBuf,
    pub record: PartialRecord,
}

impl ShardRecord {
    fn name(&self) -> String {
        self.record.shard.dir_name()
    }
}

/// `shard-<i>-of-<n>` → the shard it names.
fn parse_dir_name(name: &str) -> Option<Shard> {
    let rest = name.strip_prefix("shard-")?;
    let (index, count) = rest.split_once("-of-")?;
    Some(Shard {
        index: index.parse().ok()?,
        count: count.parse().ok()?,
    })
}

/// The shard folders under a run folder, in shard order, each checked for a finished
/// record and the full set checked for gaps and duplicates.
pub fn shards(run_dir: &Path) -> Result<Vec<ShardRecord>> {
    let mut found = Vec::new();
    for (named, dir) in shard_dirs(run_dir, "partial.json")? {
        let record = partial::read(&dir)?;
        check_named(&dir, &named, &record.shard)?;
        found.push(ShardRecord { dir, record });
    }
    Ok(found)
}

/// A record must be in the folder named for its shard: a copied folder would count twice.
pub fn check_named(dir: &Path, named: &Shard, recorded: &Shard) -> Result<()> {
    if named == recorded {
        return Ok(());
    }
    Err(Error::input(
        dir,
        format!(
            "the folder is named for shard {named} but holds the record of shard {recorded} \
             (a copied folder?): that shard would count twice"
        ),
    ))
}

/// The `shard-<i>-of-<n>` folders under `run_dir` in shard order: every one finished
/// (holding `marker`), all of one split, none missing.
pub fn shard_dirs(run_dir: &Path, marker: &str) -> Result<Vec<(Shard, PathBuf)>> {
    let entries = std::fs::read_dir(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(named) = parse_dir_name(&name) else {
            continue;
        };
        let dir = entry.path();
        if !dir.join(marker).exists() {
            let why = std::fs::read_to_string(dir.join("error.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .map_or_else(
                    || " (still running, or killed)".to_string(),
                    |e| format!(": {e}"),
                );
            return Err(Error::input(
                &dir,
                format!("shard {named} did not finish (no {marker}){why}"),
            ));
        }
        found.push((named, dir));
    }
    if found.is_empty() {
        return Err(Error::input(
            run_dir,
            "no shard folders (shard-<i>-of-<n>/) here: give the folder a sharded run wrote \
             (--reports R --run-id X → R/X)",
        ));
    }
    found.sort_by_key(|(s, _)| (s.count, s.index));
    let count = found[0].0.count;
    if let Some((other, _)) = found.iter().find(|(s, _)| s.count != count) {
        return Err(Error::input(
            run_dir,
            format!(
                "shards of runs split differently: {} and {} (delete the folders of the other \
                 split)",
                found[0].0.dir_name(),
                other.dir_name()
            ),
        ));
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !found.iter().any(|(s, _)| s.index == *i))
        .map(|i| format!("shard-{i}-of-{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::input(
            run_dir,
            format!(
                "{} of {count} shards missing: {}",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    Ok(found)
}

/// Whether the shards under `run_dir` are generators of a bench (else an evaluation).
pub fn is_bench(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_str().and_then(parse_dir_name).is_some()
                && std::fs::read_to_string(e.path().join("run.json"))
                    .is_ok_and(|t| t.contains(crate::store::run::BENCH_SCHEMA))
        })
    })
}

/// Every shard must be the same run as the first: model, score-shaping settings, tasks,
/// their specs and their data. The error names the field and both values.
pub fn check_same_run(run_dir: &Path, shards: &[ShardRecord]) -> Result<()> {
    let first = &shards[0];
    let differs = |other: &ShardRecord, what: String| {
        Error::input(
            run_dir,
            format!(
                "not one run: {} and {} differ in {what}",
                first.name(),
                other.name()
            ),
        )
    };
    for other in &shards[1..] {
        let (a, b) = (&first.record, &other.record);
        if a.run_id != b.run_id {
            return Err(differs(
                other,
                format!("run id (`{}` vs `{}`)", a.run_id, b.run_id),
            ));
        }
        if let Some(model) = model_difference(&a.model, &b.model) {
            return Err(differs(other, model));
        }
        if a.scoring != b.scoring {
            let fields = json_difference(&json(&a.scoring), &json(&b.scoring));
            return Err(differs(other, format!("settings ({fields})")));
        }
        let names = |r: &PartialRecord| -> Vec<String> {
            r.tasks.iter().map(|t| t.spec.name.clone()).collect()
        };
        if names(a) != names(b) {
            return Err(differs(
                other,
                format!("tasks ({:?} vs {:?})", names(a), names(b)),
            ));
        }
        for (ta, tb) in a.tasks.iter().zip(&b.tasks) {
            let (sa, sb) = (json(&ta.spec), json(&tb.spec));
            if sa != sb {
                return Err(differs(
                    other,
                    format!(
                        "the spec of task {} ({})",
                        ta.spec.name,
                        json_difference(&sa, &sb)
                    ),
                ));
            }
            if ta.dataset_fingerprint != tb.dataset_fingerprint {
                return Err(differs(
                    other,
                    format!(
                        "the data of task {} (fingerprint {} vs {})",
                        ta.spec.name, ta.dataset_fingerprint, tb.dataset_fingerprint
                    ),
                ));
            }
        }
        let suite = |r: &PartialRecord| r.suite.as_ref().map(|s| s.name.clone());
        if suite(a) != suite(b) {
            return Err(differs(
                other,
                format!("suite ({:?} vs {:?})", suite(a), suite(b)),
            ));
        }
    }
    Ok(())
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("records serialise")
}

/// The model fields that make two shards' work incompatible, if any differ.
fn model_difference(a: &ModelInfo, b: &ModelInfo) -> Option<String> {
    match (a, b) {
        (ModelInfo::Embedder(x), ModelInfo::Embedder(y)) => {
            (x.fingerprint != y.fingerprint).then(|| {
                format!(
                    "model (`{}`, fingerprint {} vs `{}`, fingerprint {})",
                    x.model, x.fingerprint, y.model, y.fingerprint
                )
            })
        }
        (ModelInfo::Generator(x), ModelInfo::Generator(y)) => {
            let key = |g: &crate::engine::GeneratorInfo| {
                (g.model.clone(), g.engine.clone(), g.arithmetic.clone())
            };
            (key(x) != key(y)).then(|| {
                format!(
                    "model (`{}` on {} vs `{}` on {})",
                    x.model, x.engine, y.model, y.engine
                )
            })
        }
        _ => Some(format!(
            "model kind (`{}` vs `{}`)",
            a.reference(),
            b.reference()
        )),
    }
}

/// `field: a vs b` for each differing top-level field (or the whole values).
fn json_difference(a: &Value, b: &Value) -> String {
    let (Some(ma), Some(mb)) = (flatten(a), flatten(b)) else {
        return format!("{a} vs {b}");
    };
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| ma.get(*k) != mb.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("absent".into(), Value::to_string);
            format!("{k}: {} vs {}", show(ma.get(k)), show(mb.get(k)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// An object's leaves by dotted path (enums are tagged objects, so settings flatten too).
fn flatten(value: &Value) -> Option<std::collections::BTreeMap<String, Value>> {
    fn walk(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, Value>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    value.as_object()?;
    walk("", value, &mut out);
    Some(out)
}

/// Merges the shards under `run_dir` into one run record in `out`. Datasets are read
/// again (from `data_root`, else where the shards read them) to score; their
/// fingerprints must match the shards'.
pub fn merge(run_dir: &Path, out: &Path, data_root: Option<&Path>) -> Result<RunRecord> {
    let clock = Instant::now();
    let shards = shards(run_dir)?;
    check_same_run(run_dir, &shards)?;
    let first = &shards[0].record;
    let recorded_root = first.settings["data_root"].as_str().map(PathBuf::from);
    let data_root = data_root
        .map(Path::to_path_buf)
        .or(recorded_root)
        .unwrap_or_else(|| PathBuf::from("datasets"));
    let mut tasks: Vec<Box<dyn Task>> = Vec::new();
    for done in &first.tasks {
        let source = DataSource::resolve(&done.spec.dataset, &data_root)?;
        let task = task::load(&done.spec, &source)?;
        if task.dataset_fingerprint() != done.dataset_fingerprint {
            return Err(Error::input(
                &data_root,
                format!(
                    "task {}: the data here has fingerprint {}, the shards ran on {} \
                     (give --data-root where the shards read it)",
                    done.spec.name,
                    task.dataset_fingerprint(),
                    done.dataset_fingerprint
                ),
            ));
        }
        tasks.push(task);
    }
    let mut model = replay_model(&shards)?;

    let mut records = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let name = &first.tasks[i].spec.name;
        let ranked = if first.tasks[i].ranked {
            shards
                .iter()
                .map(|s| partial::read_ranked(&s.dir, name))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let mut result = task.merge(model.engine(), &ranked)?;
        result.measures = task.measures();
        result.family = task.spec().family().into();
        // What the shards did, not what the replay did.
        let mut embedding = EmbedStats::default();
        for s in &shards {
            embedding.add(&s.record.tasks[i].embedding);
        }
        result.embedding = embedding;
        result.seconds = shards.iter().map(|s| s.record.tasks[i].seconds).sum();
        records.push(TaskRecord {
            spec: task.spec().clone(),
            result,
        });
    }
    let suite = first
        .suite
        .as_ref()
        .map(|suite| aggregate(suite, &records))
        .transpose()?;

    let mut perf = Vec::new();
    for s in &shards {
        perf.extend(read_perf(&s.dir.join("perf.jsonl"))?);
    }
    let requests: Vec<_> = perf.iter().map(|p| &p.record).collect();
    let summary = (!requests.is_empty()).then(|| stats::summarize(&requests, &Slo::default()));
    let started = shards.iter().map(|s| s.record.started.clone()).min();
    let finished = shards.iter().map(|s| s.record.finished.clone()).max();
    let mut settings = first.settings.clone();
    settings["shards"] = serde_json::json!({
        "count": shards.len(),
        "machines": shards.iter().map(|s| s.record.machine.hostname.clone()).collect::<Vec<_>>(),
        "seconds": shards.iter().map(|s| s.record.seconds).collect::<Vec<_>>(),
        "merge_seconds": clock.elapsed().as_secs_f64(),
    });
    let run = RunRecord {
        schema: record::SCHEMA.into(),
        run_id: first.run_id.clone(),
        tool: ToolInfo::current(),
        model: first.model.clone(),
        started: started.unwrap_or_default(),
        finished: finished.unwrap_or_default(),
        seconds: shards.iter().map(|s| s.record.seconds).fold(0.0, f64::max),
        machine: Machine::current(),
        settings,
        tasks: records,
        suite,
        requests: summary,
    };
    record::write(out, &run, &perf)?;
    Ok(run)
}

/// The engine a merge scores through: the recorded vectors or answers of every shard.
fn replay_model(shards: &[ShardRecord]) -> Result<Model> {
    let first = &shards[0].record;
    match (&first.model, &first.scoring) {
        (ModelInfo::Embedder(info), Scoring::Embedding(settings)) => {
            let stores = shards
                .iter()
                .map(|s| partial::open_vectors(&s.dir, &s.record, info.dim))
                .collect::<Result<Vec<_>>>()?;
            Ok(Model::Embedder {
                embedder: Box::new(ReplayEmbedder::new(info.clone(), stores)),
                cache: EmbeddingCache::disabled(info.dim),
                settings: settings.clone(),
            })
        }
        (ModelInfo::Generator(info), Scoring::Generation(settings)) => {
            let mut answers = Vec::new();
            for s in shards {
                answers.extend(partial::read_answers(&s.dir)?);
            }
            Ok(Model::Generator {
                generator: Box::new(ReplayGenerator::new(info.clone(), answers)),
                settings: settings.clone(),
            })
        }
        _ => Err(Error::input(
            shards[0].dir.join("partial.json"),
            "the model and its settings are of different kinds (embedder vs generator)",
        )),
    }
}
