//! Run records read back for reports: `assay run` records (scores, per-item samples, the
//! requests made) and `assay bench` records (load levels, every request). Only what the
//! reports use is read, so older records with extra fields still load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::engine::RequestRecord;
use crate::error::{Error, Result};
use crate::load::stats::LevelSummary;
use crate::store::bench::read_perf;
pub use crate::store::bench::{BenchRecord, Level, PerfLine};
use crate::store::run::{RunRecord, TaskRecord};

/// One run directory, loaded.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub run_id: String,
    /// The model reference as recorded (`dir:...`, `hf:...`, `openai:...#name`).
    pub model: String,
    pub engine: String,
    /// Short name for tables and legends: unique among the runs of one report.
    pub label: String,
    pub kind: RunKind,
    /// Every request the run made (`perf.jsonl`), warm-up included and marked.
    pub perf: Vec<PerfLine>,
}

#[derive(Debug, Clone)]
pub enum RunKind {
    Eval(Box<EvalRun>),
    Bench(Box<BenchRecord>),
}

#[derive(Debug, Clone)]
pub struct EvalRun {
    pub tasks: Vec<TaskRecord>,
    /// The suite's aggregates, when the run was a suite.
    pub suite: Option<crate::eval::aggregate::SuiteResult>,
    /// `samples.jsonl`, by task name, in file order.
    pub samples: BTreeMap<String, Vec<Value>>,
    /// Latency and throughput of a remote engine's requests.
    pub requests: Option<LevelSummary>,
    /// Model settings that change scores (pooling, truncation, dtype), for labels.
    pub model_info: Value,
}

impl Run {
    /// Measured requests (warm-up excluded) of one bench level, or of the whole run.
    pub fn measured(&self, level: Option<usize>) -> impl Iterator<Item = &RequestRecord> {
        self.perf
            .iter()
            .filter(move |p| !p.warmup && (level.is_none() || p.level == level))
            .map(|p| &p.record)
    }

    pub fn eval(&self) -> Option<&EvalRun> {
        match &self.kind {
            RunKind::Eval(e) => Some(e),
            RunKind::Bench(_) => None,
        }
    }

    pub fn bench(&self) -> Option<&BenchRecord> {
        match &self.kind {
            RunKind::Bench(b) => Some(b),
            RunKind::Eval(_) => None,
        }
    }
}

/// Loads run directories and gives each a unique label: the model's short name and
/// engine, then what differs (pooling, truncation, workload), then the run id.
pub fn load_all(dirs: &[PathBuf]) -> Result<Vec<Run>> {
    if dirs.is_empty() {
        return Err(Error::Usage("name at least one run directory".into()));
    }
    let mut runs = dirs.iter().map(|d| load(d)).collect::<Result<Vec<_>>>()?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        *seen.entry(run.label.clone()).or_default() += 1;
    }
    for run in &mut runs {
        if seen[&run.label] > 1 {
            run.label = format!("{} [{}]", run.label, run.run_id);
        }
    }
    Ok(runs)
}

/// Reads one run directory: `run.json` decides the kind by its `schema`.
pub fn load(dir: &Path) -> Result<Run> {
    let path = dir.join("run.json");
    if !path.exists() {
        let why = if dir.join("error.json").exists() {
            "the run failed (see error.json); it has no scores"
        } else {
            "no run.json: not a run directory (or the run has not finished)"
        };
        return Err(Error::input(dir, why));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::record(&path, e.line(), "(json)", e.to_string()))?;
    let field = |name: &str| -> Result<String> {
        value[name]
            .as_str()
            .map(String::from)
            .ok_or_else(|| Error::record(&path, 1, name, "missing or not a string"))
    };
    let schema = field("schema")?;
    let run_id = field("run_id")?;
    let model = &value["model"];
    let model_ref = model["model"].as_str().unwrap_or("unknown").to_string();
    let engine = model["engine"].as_str().unwrap_or("unknown").to_string();
    let perf = read_perf(&dir.join("perf.jsonl"))?;
    let (kind, detail) = match schema.as_str() {
        crate::store::run::SCHEMA => {
            let record: RunRecord = serde_json::from_value(value.clone())
                .map_err(|e| Error::record(&path, 1, "(run record)", e.to_string()))?;
            let only_task = match record.tasks.as_slice() {
                [one] => Some(one.result.task.as_str()),
                _ => None,
            };
            let samples = read_samples(&dir.join("samples.jsonl"), only_task)?;
            let detail = eval_detail(model);
            let eval = EvalRun {
                tasks: record.tasks,
                suite: record.suite,
                samples,
                requests: record.requests,
                model_info: model.clone(),
            };
            (RunKind::Eval(Box::new(eval)), detail)
        }
        crate::store::run::BENCH_SCHEMA => {
            let bench: BenchRecord = serde_json::from_value(value.clone())
                .map_err(|e| Error::record(&path, 1, "(bench record)", e.to_string()))?;
            let detail = bench.workload.kind.to_string();
            (RunKind::Bench(Box::new(bench)), detail)
        }
        other => {
            return Err(Error::record(
                &path,
                1,
                "schema",
                format!("`{other}` is not a run record this version reads"),
            ))
        }
    };
    let mut label = format!("{} ({engine})", short_name(&model_ref));
    if !detail.is_empty() {
        label = format!("{label} {detail}");
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        run_id,
        model: model_ref,
        engine,
        label,
        kind,
        perf,
    })
}

/// What sets an embedder run apart from the model's defaults, e.g. `cls, 16 tokens`.
fn eval_detail(model: &Value) -> String {
    // Remote embedders report `server` (the endpoint decides) and 0 tokens: nothing to show.
    let set = |v: &Value| v.as_str().filter(|s| *s != "server").map(String::from);
    let mut parts = Vec::new();
    if let Some(p) = set(&model["pooling"]) {
        parts.push(p);
    }
    if let Some(t) = model["max_tokens"].as_u64().filter(|&t| t > 0) {
        parts.push(format!("{t} tok"));
    }
    if let Some(d) = set(&model["dtype"]).filter(|d| d != "f32") {
        parts.push(d);
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

/// `dir:/models/all-MiniLM-L6-v2` → `all-MiniLM-L6-v2`; `openai:http://h/v1#name` → `name`;
/// `hf:org/name@rev` → `name`.
pub fn short_name(model: &str) -> String {
    if let Some((_, name)) = model.rsplit_once('#') {
        return name.to_string();
    }
    let body = model.split_once(':').map_or(model, |(_, rest)| rest);
    let body = body.split('@').next().unwrap_or(body);
    let trimmed = body.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    let name = name.strip_suffix(".gguf").unwrap_or(name);
    if name.is_empty() {
        model.to_string()
    } else {
        name.to_string()
    }
}

/// Samples by task; a record of one task may leave `task` out of its samples.
fn read_samples(path: &Path, only_task: Option<&str>) -> Result<BTreeMap<String, Vec<Value>>> {
    let mut by_task: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    if !path.exists() {
        return Ok(by_task);
    }
    let bytes = crate::data::lines::read_bytes(path)?;
    for (line, object) in crate::data::lines::json_objects(path, &bytes)? {
        let task = match (object.get("task"), only_task) {
            (None, Some(task)) => task.to_string(),
            _ => crate::data::lines::str_field(path, line, &object, "task")?,
        };
        by_task.entry(task).or_default().push(Value::Object(object));
    }
    Ok(by_task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name("dir:/m/all-MiniLM-L6-v2/"), "all-MiniLM-L6-v2");
        assert_eq!(
            short_name("openai:http://127.0.0.1:8080/v1#smollm2"),
            "smollm2"
        );
        assert_eq!(
            short_name("hf:intfloat/e5-mistral-7b-instruct@main"),
            "e5-mistral-7b-instruct"
        );
        assert_eq!(short_name("dir:/m/SmolLM2.Q4_1.gguf"), "SmolLM2.Q4_1");
    }

    #[test]
    fn missing_run_json_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no run.json"), "{err}");
        std::fs::write(
            dir.path().join("run.json"),
            "{\"schema\": \"other/1\", \"run_id\": \"x\"}",
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("run.json:1: field `schema`"), "{err}");
    }
}
