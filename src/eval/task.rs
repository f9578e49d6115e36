//! The one abstraction every task family implements: a spec with its loaded data that
//! lists what it sends to a model, runs through an engine and scores, and declares its
//! measures (name, direction, main). Runners, `compare`, `gate` and `report` learn
//! everything family-specific from here.

use serde::{Deserialize, Serialize};

use crate::data::DataSource;
use crate::engine::{Embedder, Generator};
use crate::error::{Error, Result};
use crate::eval::embed::{embed_all, EmbedStats};
use crate::eval::generation::GenerationSettings;
use crate::eval::shard::{self, RankedQuery, Shard, ShardWork};
use crate::eval::{RunSettings, TaskInput, TaskResult};
use crate::spec::{TaskKind, TaskSpec};
use crate::store::EmbeddingCache;

/// One measure a task reports, and which way is better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measure {
    pub name: String,
    pub higher_is_better: bool,
    /// Printed in the run's summary table (the main score always is).
    #[serde(default)]
    pub headline: bool,
}

impl Measure {
    /// A score where more is better (accuracy, nDCG, correlation).
    pub fn higher(name: impl Into<String>) -> Measure {
        Measure {
            name: name.into(),
            higher_is_better: true,
            headline: false,
        }
    }

    /// A rate where less is better (unparsed answers, errors).
    pub fn lower(name: impl Into<String>) -> Measure {
        Measure {
            higher_is_better: false,
            ..Measure::higher(name)
        }
    }

    /// Shown in the summary table.
    pub fn headline(self) -> Measure {
        Measure {
            headline: true,
            ..self
        }
    }
}

/// The model a task runs through, with what the task family needs beside it.
pub enum Engine<'a> {
    Embedder {
        embedder: &'a dyn Embedder,
        cache: &'a mut EmbeddingCache,
        settings: &'a RunSettings,
    },
    Generator {
        generator: &'a dyn Generator,
        settings: &'a GenerationSettings,
    },
}

impl<'a> Engine<'a> {
    /// The embedder and what goes with it; an error naming the task if this is a generator.
    pub fn embedder(
        self,
        spec: &TaskSpec,
    ) -> Result<(&'a dyn Embedder, &'a mut EmbeddingCache, &'a RunSettings)> {
        match self {
            Engine::Embedder {
                embedder,
                cache,
                settings,
            } => Ok((embedder, cache, settings)),
            Engine::Generator { .. } => Err(wrong_engine(spec, Needs::Embeddings)),
        }
    }

    /// Embeds a task's inputs (prepared for the model, through the cache, batched): one
    /// vector per input, in order, with the run's settings.
    pub fn embed(self, spec: &TaskSpec, inputs: &[TaskInput]) -> Result<Embedded<'a>> {
        let (embedder, cache, settings) = self.embedder(spec)?;
        let texts: Vec<String> = inputs.iter().map(|i| i.prepared(embedder)).collect();
        let (vectors, stats) = embed_all(embedder, cache, &texts, settings.batch_size, &spec.name)?;
        Ok(Embedded {
            vectors,
            stats,
            settings,
        })
    }

    /// The generator and its settings; an error naming the task if this is an embedder.
    pub fn generator(self, spec: &TaskSpec) -> Result<(&'a dyn Generator, &'a GenerationSettings)> {
        match self {
            Engine::Generator {
                generator,
                settings,
            } => Ok((generator, settings)),
            Engine::Embedder { .. } => Err(wrong_engine(spec, Needs::Generations)),
        }
    }
}

/// A task's inputs embedded: what [`Engine::embed`] returns.
pub struct Embedded<'a> {
    pub vectors: Vec<Vec<f32>>,
    pub stats: EmbedStats,
    pub settings: &'a RunSettings,
}

/// What a task needs a model to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Embeddings,
    Generations,
}

/// A task family's behaviour over one spec and its loaded dataset.
pub trait Task: Send + Sync {
    fn spec(&self) -> &TaskSpec;

    /// Every measure it reports, the main score first.
    fn measures(&self) -> Vec<Measure>;

    fn needs(&self) -> Needs;

    /// The texts it sends to a model, before the model's own prompt is applied (what
    /// `parity` compares and `bench --inputs-from-task` sends).
    fn inputs(&self) -> Result<Vec<TaskInput>>;

    /// Runs every item through the engine and scores the results.
    fn run(&self, engine: Engine<'_>) -> Result<TaskResult>;

    /// Fingerprint of the loaded dataset: the shards of one run must agree on it.
    fn dataset_fingerprint(&self) -> String;

    /// This shard's share of the work, recorded in `work` for `merge`. By default an
    /// embedding task's inputs split by batch, or a generation task run over the shard's
    /// generator (see [`shard::default_share`]).
    fn run_shard(&self, engine: Engine<'_>, shard: &Shard, work: &mut ShardWork) -> Result<()> {
        shard::default_share(self, engine, shard, work)
    }

    /// The result from every shard's recorded work. By default the task's own `run` over
    /// the merge's engine, which replays the recorded vectors or answers; `ranked` holds
    /// each shard's top-k lists for tasks that record them (retrieval).
    fn merge(&self, engine: Engine<'_>, ranked: &[Vec<RankedQuery>]) -> Result<TaskResult> {
        let _ = ranked;
        self.run(engine)
    }
}

/// Loads a spec's dataset into the task its family defines. The one place that maps
/// family to implementation.
pub fn load(spec: &TaskSpec, source: &DataSource) -> Result<Box<dyn Task>> {
    tracing::info!(task = %spec.name, source = %source.describe(), "loading dataset");
    Ok(match &spec.kind {
        TaskKind::Sts(section) => Box::new(super::sts::StsTask::load(spec, section, source)?),
        TaskKind::Retrieval(section) | TaskKind::Reranking(section) => Box::new(
            super::retrieval::RetrievalTask::load(spec, section, source)?,
        ),
        TaskKind::ImageText(section) => Box::new(super::image_text::ImageTextTask::load(
            spec, section, source,
        )?),
        TaskKind::Classification(section) => Box::new(
            super::classification::ClassificationTask::load(spec, section, source)?,
        ),
        TaskKind::PairClassification(section) => Box::new(
            super::pair_classification::PairClassificationTask::load(spec, section, source)?,
        ),
        TaskKind::Clustering(section) => Box::new(super::clustering::ClusteringTask::load(
            spec, section, source,
        )?),
        TaskKind::Summarization(section) => Box::new(
            super::summarization::SummarizationTask::load(spec, section, source)?,
        ),
        TaskKind::MmluPro(_) | TaskKind::Gsm8k(_) | TaskKind::Math(_) | TaskKind::Gpqa(_) => {
            Box::new(super::generation::GenerationTask::load(spec, source)?)
        }
        TaskKind::Code(section) => Box::new(super::code::CodeTask::load(spec, section, source)?),
    })
}

/// The error for a task given an engine of the other kind.
fn wrong_engine(spec: &TaskSpec, needs: Needs) -> Error {
    let what = match needs {
        Needs::Embeddings => "an embedding model",
        Needs::Generations => "a chat or completion model",
    };
    Error::Usage(format!("task {} needs {what}", spec.name))
}

/// A measure's direction as the task declared it in a record; higher is better for one
/// it did not declare (records written before measures were).
pub fn higher_is_better(measures: &[Measure], name: &str) -> bool {
    measures
        .iter()
        .find(|m| m.name == name)
        .is_none_or(|m| m.higher_is_better)
}
