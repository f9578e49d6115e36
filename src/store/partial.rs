//! A shard's partial record under `<reports>/<run-id>/shard-<i>-of-<n>/`: `partial.json`
//! (what the shard ran, with what), the work it recorded for `merge` (vectors in
//! `embeddings/shard.bin`, generation answers in `answers.jsonl`, retrieval top-k lists in
//! `ranked/<task>.jsonl`) and its requests in `perf.jsonl`. `partial.json` is written
//! last: its presence marks a finished shard.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::lines;
use crate::error::{Error, Result};
use crate::eval::embed::EmbedStats;
use crate::eval::generation::GenerationSettings;
use crate::eval::shard::{Answer, RankedQuery, Shard, ShardWork};
use crate::eval::RunSettings;
use crate::spec::{SuiteSpec, TaskSpec};
use crate::store::bench::{write_perf, PerfLine};
use crate::store::run::{write_atomic, Machine, ModelInfo, ToolInfo};
use crate::store::EmbeddingCache;

/// Version of the `partial.json` layout.
pub const SCHEMA: &str = "assay.partial/1";
const RECORD: &str = "partial.json";
const ANSWERS: &str = "answers.jsonl";
/// The vector store is an embedding-cache file under this name.
const VECTORS: &str = "shard";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialRecord {
    pub schema: String,
    pub run_id: String,
    pub shard: Shard,
    pub tool: ToolInfo,
    pub model: ModelInfo,
    pub machine: Machine,
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    /// The flags that shaped the run, as `run.json` records them.
    pub settings: serde_json::Value,
    /// What shapes the scores: every shard of a run must agree on it.
    pub scoring: Scoring,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<SuiteSpec>,
    pub tasks: Vec<PartialTask>,
    /// Vectors in `embeddings/shard.bin`: a merge checks the file still holds them all.
    #[serde(default)]
    pub vectors: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    Embedding(RunSettings),
    Generation(GenerationSettings),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialTask {
    pub spec: TaskSpec,
    pub dataset_fingerprint: String,
    /// What this shard embedded (for the merged record's totals).
    pub embedding: EmbedStats,
    pub seconds: f64,
    /// Whether `ranked/<task>.jsonl` holds this task's top-k lists.
    #[serde(default)]
    pub ranked: bool,
}

/// `<run dir>/shard-<i>-of-<n>`.
pub fn shard_dir(run_dir: &Path, shard: &Shard) -> PathBuf {
    run_dir.join(shard.dir_name())
}

/// Clears what an earlier attempt of this shard left, so a rerun starts clean (its
/// vectors come back from the embedding cache).
pub fn clear(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Writes a finished shard: the recorded work, the requests, then `partial.json`.
pub fn write(
    dir: &Path,
    record: &PartialRecord,
    work: &ShardWork,
    answers: &[Answer],
    perf: &[PerfLine],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let Some((_, first)) = work.vectors.first() {
        let mut store = EmbeddingCache::open(dir, VECTORS, first.len())?;
        store.insert_batch(work.vectors.clone())?;
    }
    if !answers.is_empty() {
        write_jsonl(&dir.join(ANSWERS), answers)?;
    }
    for (task, lists) in &work.ranked {
        write_jsonl(&ranked_path(dir, task), lists)?;
    }
    write_perf(dir, perf)?;
    let json = serde_json::to_vec_pretty(record).expect("partial record serialises");
    write_atomic(&dir.join(RECORD), &json)
}

fn ranked_path(dir: &Path, task: &str) -> PathBuf {
    dir.join("ranked").join(format!("{task}.jsonl"))
}

fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).expect("records serialise");
        out.push(b'\n');
    }
    write_atomic(path, &out)
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let bytes = lines::read_bytes(path)?;
    lines::utf8_lines(path, &bytes)?
        .into_iter()
        .map(|(line, text)| {
            serde_json::from_str(text).map_err(|e| Error::record(path, line, what, e.to_string()))
        })
        .collect()
}

/// Reads `partial.json` of a shard folder.
pub fn read(dir: &Path) -> Result<PartialRecord> {
    let path = dir.join(RECORD);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let record: PartialRecord = serde_json::from_str(&text)
        .map_err(|e| Error::input(&path, format!("not a shard record: {e}")))?;
    if record.schema != SCHEMA {
        return Err(Error::input(
            &path,
            format!("schema `{}`, expected `{SCHEMA}`", record.schema),
        ));
    }
    Ok(record)
}

/// The generation answers a shard recorded.
pub fn read_answers(dir: &Path) -> Result<Vec<Answer>> {
    let path = dir.join(ANSWERS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_jsonl(&path, "(answer)")
}

/// A task's top-k lists from one shard.
pub fn read_ranked(dir: &Path, task: &str) -> Result<Vec<RankedQuery>> {
    read_jsonl(&ranked_path(dir, task), "(ranked query)")
}

/// The vectors a shard recorded (an empty store if it recorded none); an error naming the
/// file when it holds fewer than the shard wrote (truncated or damaged).
pub fn open_vectors(dir: &Path, record: &PartialRecord, dim: usize) -> Result<EmbeddingCache> {
    if record.vectors == 0 {
        return Ok(EmbeddingCache::disabled(dim));
    }
    let store = EmbeddingCache::open(dir, VECTORS, dim)?;
    if store.len() < record.vectors {
        let path = store
            .path()
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        return Err(Error::input(
            &path,
            format!(
                "holds {} whole vectors of the {} this shard recorded (truncated or damaged): \
                 run the shard again",
                store.len(),
                record.vectors
            ),
        ));
    }
    Ok(store)
}
