//! The run record under `reports/<run-id>/`: `run.json`, `samples.jsonl` and the MTEB
//! results layout `mteb/<Task>.json`. Every file is written atomically (temp + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::EmbedderInfo;
use crate::error::{Error, Result};
use crate::eval::TaskResult;
use crate::spec::TaskSpec;
use crate::store::bench::{write_perf, PerfLine};

/// The model a run evaluated: an embedder or a generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelInfo {
    Embedder(EmbedderInfo),
    Generator(crate::engine::GeneratorInfo),
}

impl ModelInfo {
    /// The model reference as given (credentials removed).
    pub fn reference(&self) -> &str {
        match self {
            ModelInfo::Embedder(e) => &e.model,
            ModelInfo::Generator(g) => &g.model,
        }
    }
}

/// Version of the `run.json` layout; bump on incompatible changes.
pub const SCHEMA: &str = "assay.run/1";
/// Version of the `assay bench` record layout.
pub const BENCH_SCHEMA: &str = "assay.bench/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: String,
    pub run_id: String,
    pub tool: ToolInfo,
    pub model: ModelInfo,
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub tasks: Vec<TaskRecord>,
    /// The suite run (`--suite`) and its aggregates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<crate::eval::aggregate::SuiteResult>,
    /// Remote engines: latency and throughput of the run's requests (same measures as
    /// `assay bench`), from `perf.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::load::stats::LevelSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub result: TaskResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub git_sha: String,
}

impl ToolInfo {
    pub fn current() -> Self {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_sha: option_env!("ASSAY_GIT_SHA").unwrap_or("unknown").into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpu: String,
    pub logical_cores: usize,
    pub memory_gib: f64,
}

impl Machine {
    pub fn current() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpu,
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        }
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes the whole run record into `dir`; `perf` (one JSON object per request to a
/// remote engine) goes to `perf.jsonl` when there is any.
pub fn write(dir: &Path, record: &RunRecord, perf: &[PerfLine]) -> Result<()> {
    let json = serde_json::to_vec_pretty(record).expect("run record serialises");
    let mut samples = Vec::new();
    for task in &record.tasks {
        for sample in &task.result.samples {
            serde_json::to_writer(&mut samples, sample).expect("sample serialises");
            samples.push(b'\n');
        }
    }
    for task in &record.tasks {
        if task.spec.mteb_name.is_some() {
            let path = dir
                .join("mteb")
                .join(format!("{}.json", task.result.task_name));
            let body = serde_json::to_vec_pretty(&mteb_result(task, record)).expect("serialises");
            write_atomic(&path, &body)?;
        }
    }
    write_atomic(&dir.join("samples.jsonl"), &samples)?;
    write_perf(dir, perf)?;
    // run.json last: its presence marks a complete record.
    write_atomic(&dir.join("run.json"), &json)
}

/// A run that stopped on an error: `error.json` says why, `perf.jsonl` keeps every request
/// made (with the failed ones' reasons); no `run.json`, since there are no scores.
pub fn write_failure(dir: &Path, error: &str, perf: &[PerfLine]) -> Result<()> {
    let body = serde_json::json!({ "schema": "assay.run-error/1", "error": error });
    write_perf(dir, perf)?;
    write_atomic(
        &dir.join("error.json"),
        &serde_json::to_vec_pretty(&body).expect("serialises"),
    )
}

/// Reads a run record back (for reports, comparisons and tests).
pub fn read(dir: &Path) -> Result<RunRecord> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::input(&path, format!("not a run record: {e}")))
}

/// The MTEB results layout, so scores line up with the leaderboard's files.
fn mteb_result(task: &TaskRecord, record: &RunRecord) -> serde_json::Value {
    let r = &task.result;
    let mut split_scores = serde_json::Map::new();
    for (name, score) in &r.scores {
        split_scores.insert(name.clone(), json!(score.value));
    }
    split_scores.insert("main_score".into(), json!(r.main_value()));
    split_scores.insert("hf_subset".into(), json!("default"));
    split_scores.insert("languages".into(), json!(["eng-Latn"]));
    json!({
        "dataset_revision": task.spec.dataset.hub_revision,
        "task_name": r.task_name,
        "mteb_version": null,
        "assay_version": record.tool.version,
        "model": record.model.reference(),
        "scores": { r.split.clone(): [serde_json::Value::Object(split_scores)] },
        "evaluation_time": r.seconds,
        "kg_co2_emissions": null,
    })
}

/// `<reports>/<run-id>`.
pub fn run_dir(reports: &Path, run_id: &str) -> PathBuf {
    reports.join(run_id)
}

/// Where a run's wall time went: computing (or reading cached) vectors, ranking documents,
/// scoring (everything else inside the tasks: metrics, bootstrap, probes, k-means) and the
/// rest (loading data, the model, writing the record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallTime {
    pub total: f64,
    pub embedding: f64,
    pub search: f64,
    pub scoring: f64,
    pub other: f64,
}

impl WallTime {
    pub fn of(record: &RunRecord) -> WallTime {
        let (mut embedding, mut search, mut tasks) = (0.0, 0.0, 0.0);
        for task in &record.tasks {
            let r = &task.result;
            embedding += r.embedding.seconds;
            search += r.search_seconds;
            tasks += r.seconds;
        }
        WallTime {
            total: record.seconds,
            embedding,
            search,
            scoring: (tasks - embedding - search).max(0.0),
            other: (record.seconds - tasks).max(0.0),
        }
    }

    /// `wall time 12.3 s: embedding 10.1 s (82%), search …`.
    pub fn line(&self) -> String {
        let share = |s: f64| {
            if self.total > 0.0 {
                100.0 * s / self.total
            } else {
                0.0
            }
        };
        let part = |name: &str, s: f64| format!("{name} {s:.1} s ({:.0}%)", share(s));
        format!(
            "wall time {:.1} s: {}, {}, {}, {}",
            self.total,
            part("embedding", self.embedding),
            part("search", self.search),
            part("scoring", self.scoring),
            part("other (data, model, record)", self.other)
        )
    }
}
