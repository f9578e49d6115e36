//! Task families: each implements [`Task`] (spec + dataset -> inputs, run through an
//! engine, scores, declared measures). Tasks never know whether the engine is local or
//! remote.

pub mod aggregate;
pub mod classification;
pub mod clustering;
pub mod code;
pub mod embed;
pub mod generation;
pub mod grade;
pub mod image_text;
pub mod merge;
pub mod pair_classification;
pub mod retrieval;
pub mod shard;
pub mod sts;
pub mod suite;
pub mod summarization;
pub mod task;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Embedder, Role};
use crate::metrics::bootstrap::Interval;
pub use embed::EmbedStats;
pub use task::{Engine, Measure, Needs, Task};

/// One score with its bootstrap 95% confidence interval over items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    #[serde(deserialize_with = "crate::metrics::bootstrap::null_as_nan")]
    pub value: f64,
    pub ci95: Interval,
}

/// What a task run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    /// Name in the MTEB layout (e.g. `STSBenchmark`).
    pub task_name: String,
    pub family: String,
    pub split: String,
    pub main_score: String,
    pub scores: BTreeMap<String, Score>,
    /// The task's declared measures (direction, headline), main first: what `compare`,
    /// `gate` and `report` read.
    #[serde(default)]
    pub measures: Vec<Measure>,
    pub dataset: DatasetRecord,
    /// The main score on each bootstrap resample of the items (the run's seed and
    /// resample count): what a suite's aggregate CI combines across tasks, and what a
    /// gate pairs across two runs. Empty for families that do not provide it.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::metrics::bootstrap::nulls_as_nan"
    )]
    pub replicates: Vec<f64>,
    pub embedding: EmbedStats,
    /// Time spent ranking documents for queries (retrieval's exact top-k search); the rest
    /// of `seconds` beyond embedding is scoring.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub search_seconds: f64,
    pub seconds: f64,
    /// One JSON object per item (pair, query); written to `samples.jsonl`, not `run.json`.
    #[serde(skip)]
    pub samples: Vec<serde_json::Value>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl TaskResult {
    pub fn main_value(&self) -> Option<f64> {
        self.scores.get(&self.main_score).map(|s| s.value)
    }

    /// Whether more of `measure` is better, as the task declared it.
    pub fn higher_is_better(&self, measure: &str) -> bool {
        task::higher_is_better(&self.measures, measure)
    }

    /// The measures for a summary table: the main score, then the declared headlines.
    pub fn headline_measures(&self) -> Vec<&str> {
        let mut names = vec![self.main_score.as_str()];
        names.extend(
            self.measures
                .iter()
                .filter(|m| m.headline && m.name != self.main_score)
                .filter(|m| self.scores.contains_key(&m.name))
                .map(|m| m.name.as_str()),
        );
        names
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub origin: String,
    pub fingerprint: String,
    pub items: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_size: Option<usize>,
    /// How the items were chosen when not all were run (`--limit`), and prompt settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<serde_json::Value>,
}

/// Settings shared by every runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub batch_size: usize,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// How retrieval keeps corpus vectors in its memory-mapped store (f16 halves it).
    #[serde(default)]
    pub store_dtype: crate::store::vectors::StoreDtype,
}

/// One text a task embeds, before the model's own prompt is applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskInput {
    pub text: String,
    pub role: Role,
    pub instruction: Option<String>,
}

impl TaskInput {
    /// A text embedded as a query, with the task's instruction (symmetric tasks embed
    /// both sides this way, as MTEB does).
    pub fn query(text: &str, instruction: &Option<String>) -> TaskInput {
        TaskInput {
            text: text.to_string(),
            role: Role::Query,
            instruction: instruction.clone(),
        }
    }

    /// The exact text this embedder sees.
    pub fn prepared(&self, embedder: &dyn Embedder) -> String {
        embedder.prepare(&self.text, self.role, self.instruction.as_deref())
    }
}
