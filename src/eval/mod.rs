//! One runner per task family: (spec, dataset, engine) -> TaskResult. Runners never know
//! whether the engine is local or remote.

pub mod embed;
pub mod generation;
pub mod image_text;
pub mod retrieval;
pub mod sts;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Embedder, Role};
use crate::metrics::bootstrap::Interval;
pub use embed::EmbedStats;

/// One score with its bootstrap 95% confidence interval over items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
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
    pub dataset: DatasetRecord,
    pub embedding: EmbedStats,
    pub seconds: f64,
    /// One JSON object per item (pair, query); written to `samples.jsonl`, not `run.json`.
    #[serde(skip)]
    pub samples: Vec<serde_json::Value>,
}

impl TaskResult {
    pub fn main_value(&self) -> Option<f64> {
        self.scores.get(&self.main_score).map(|s| s.value)
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
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub batch_size: usize,
    pub bootstrap_resamples: usize,
    pub seed: u64,
}

/// One text a task embeds, before the model's own prompt is applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskInput {
    pub text: String,
    pub role: Role,
    pub instruction: Option<String>,
}

impl TaskInput {
    /// The exact text this embedder sees.
    pub fn prepared(&self, embedder: &dyn Embedder) -> String {
        embedder.prepare(&self.text, self.role, self.instruction.as_deref())
    }
}
