//! STS: Spearman (the MTEB main score) and Pearson of cosine similarity against gold.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::data::{DataSource, StsDataset};
use crate::engine::Embedder;
use crate::error::Result;
use crate::eval::embed::embed_all;
use crate::eval::task::{Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, RunSettings, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{interval, replicates};
use crate::metrics::correlation::{pearson, spearman};
use crate::spec::StsSpec;
use crate::spec::TaskSpec;
use crate::store::EmbeddingCache;

/// An STS task with its pairs.
pub struct StsTask {
    spec: TaskSpec,
    section: StsSpec,
    data: StsDataset,
}

impl StsTask {
    pub fn load(spec: &TaskSpec, section: &StsSpec, source: &DataSource) -> Result<StsTask> {
        Ok(StsTask {
            spec: spec.clone(),
            section: section.clone(),
            data: StsDataset::load(&spec.dataset, section, source)?,
        })
    }
}

impl Task for StsTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.data.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        vec![
            Measure::higher("cosine_spearman"),
            Measure::higher("cosine_pearson").headline(),
        ]
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    fn inputs(&self) -> Result<Vec<TaskInput>> {
        Ok(inputs(&self.section, &self.data))
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let (embedder, cache, settings) = engine.embedder(&self.spec)?;
        run(
            &self.spec,
            &self.section,
            &self.data,
            embedder,
            cache,
            settings,
        )
    }
}

/// Every first sentence, then every second sentence. STS is symmetric: both sides are
/// embedded as queries, as MTEB does.
fn inputs(section: &StsSpec, data: &StsDataset) -> Vec<TaskInput> {
    let input = |text: &String| TaskInput::query(text, &section.instruction);
    let mut all: Vec<TaskInput> = data.pairs.iter().map(|p| input(&p.sentence1)).collect();
    all.extend(data.pairs.iter().map(|p| input(&p.sentence2)));
    all
}

fn run(
    spec: &TaskSpec,
    section: &StsSpec,
    data: &StsDataset,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    settings: &RunSettings,
) -> Result<TaskResult> {
    let started = Instant::now();
    let texts: Vec<String> = inputs(section, data)
        .iter()
        .map(|i| i.prepared(embedder))
        .collect();
    let (vectors, stats) = embed_all(embedder, cache, &texts, settings.batch_size, &spec.name)?;
    let (left, right) = vectors.split_at(data.pairs.len());

    let cosines: Vec<f64> = left.iter().zip(right).map(|(a, b)| cosine(a, b)).collect();
    let gold: Vec<f64> = data.pairs.iter().map(|p| p.score).collect();

    let resampled = |stat: fn(&[f64], &[f64]) -> f64| {
        replicates(
            gold.len(),
            settings.bootstrap_resamples,
            settings.seed,
            |idx| {
                let x: Vec<f64> = idx.iter().map(|&i| cosines[i]).collect();
                let y: Vec<f64> = idx.iter().map(|&i| gold[i]).collect();
                stat(&x, &y)
            },
        )
    };
    let spearman_replicates = resampled(spearman);
    let mut scores = BTreeMap::new();
    scores.insert(
        "cosine_spearman".to_string(),
        Score {
            value: spearman(&cosines, &gold),
            ci95: interval(&spearman_replicates),
        },
    );
    scores.insert(
        "cosine_pearson".to_string(),
        Score {
            value: pearson(&cosines, &gold),
            ci95: interval(&resampled(pearson)),
        },
    );
    let samples = data
        .pairs
        .iter()
        .zip(&cosines)
        .map(|(p, c)| json!({"task": spec.name, "id": p.id, "gold": p.score, "cosine": c}))
        .collect();
    Ok(TaskResult {
        task: spec.name.clone(),
        task_name: spec.display_name().to_string(),
        family: "sts".into(),
        split: spec.dataset.split.clone(),
        main_score: "cosine_spearman".into(),
        scores,
        measures: Vec::new(),
        dataset: DatasetRecord {
            origin: data.origin.clone(),
            fingerprint: data.fingerprint.clone(),
            items: data.pairs.len(),
            corpus_size: None,
            selection: None,
        },
        replicates: spearman_replicates,
        embedding: stats,
        search_seconds: 0.0,
        seconds: started.elapsed().as_secs_f64(),
        samples,
    })
}

/// Cosine similarity in f64 (inputs need not be normalised).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
