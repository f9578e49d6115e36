//! Clustering: mteb's current evaluator. Optionally embed a random share of the documents,
//! then in each experiment draw `max_documents_per_cluster` of them with replacement
//! (Python's `random.Random(seed)`), run mini-batch k-means with k = number of labels, and
//! score the clusters by v-measure against the labels. Main score: mean v-measure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use crate::data::table::Table;
use crate::data::DataSource;
use crate::error::Result;
use crate::eval::task::{Embedded, Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{interval, mean_replicates, Interval};
use crate::metrics::clustering::{documents_to_embed, evaluate_clustering, ClusteringConfig};
use crate::metrics::rng::PyRandom;
use crate::spec::{ClusteringSpec, TaskSpec};

pub struct ClusteringTask {
    spec: TaskSpec,
    section: ClusteringSpec,
    texts: Vec<String>,
    /// Index into `label_names` of each text.
    labels: Vec<usize>,
    label_names: Vec<String>,
    fingerprint: String,
    origin: String,
}

impl ClusteringTask {
    pub fn load(
        spec: &TaskSpec,
        section: &ClusteringSpec,
        source: &DataSource,
    ) -> Result<ClusteringTask> {
        let table = Table::load(source, &spec.dataset, &spec.dataset.split, None)?;
        let mut texts = Vec::with_capacity(table.rows.len());
        let mut names = Vec::with_capacity(table.rows.len());
        for row in &table.rows {
            texts.push(table.text(row, &section.text)?);
            names.push(table.text(row, &section.label)?);
        }
        let label_names: Vec<String> = names
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<&str, usize> = label_names
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let labels = names.iter().map(|l| index[l.as_str()]).collect();
        Ok(ClusteringTask {
            spec: spec.clone(),
            section: section.clone(),
            texts,
            labels,
            label_names,
            fingerprint: table.fingerprint.clone(),
            origin: format!("{} ({})", source.describe(), table.path.display()),
        })
    }

    fn config(&self) -> ClusteringConfig {
        ClusteringConfig {
            seed: u64::from(self.section.seed),
            max_fraction_of_documents_to_embed: self.section.max_fraction_of_documents_to_embed,
            max_document_to_embed: None,
            max_documents_per_cluster: self.section.max_documents_per_cluster,
            n_clusters: self.section.n_experiments,
            k_mean_batch_size: self.section.k_mean_batch_size,
            max_depth: None,
        }
    }

    /// The documents embedded, in mteb's order, and the generator state after choosing
    /// them (the experiments continue the same stream).
    fn embedded(&self) -> Result<(Vec<usize>, PyRandom)> {
        let mut rng = PyRandom::seed(u64::from(self.section.seed));
        let chosen = documents_to_embed(self.texts.len(), &self.config(), &mut rng)?;
        Ok((
            chosen.unwrap_or_else(|| (0..self.texts.len()).collect()),
            rng,
        ))
    }

    /// The chosen documents as inputs, in order.
    fn inputs_of(&self, chosen: &[usize]) -> Vec<TaskInput> {
        chosen
            .iter()
            .map(|&i| TaskInput::query(&self.texts[i], &self.section.instruction))
            .collect()
    }
}

impl Task for ClusteringTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        vec![
            Measure::higher("v_measure"),
            Measure::lower("v_measure_std"),
        ]
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    fn inputs(&self) -> Result<Vec<TaskInput>> {
        Ok(self.inputs_of(&self.embedded()?.0))
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let started = Instant::now();
        let (chosen, mut rng) = self.embedded()?;
        let Embedded {
            vectors,
            stats,
            settings,
        } = engine.embed(&self.spec, &self.inputs_of(&chosen))?;
        let labels: Vec<Vec<usize>> = chosen.iter().map(|&i| vec![self.labels[i]]).collect();
        let result = evaluate_clustering(&vectors, &labels, &self.config(), &mut rng)?;

        // The CI resamples the experiments (each is already a bootstrap draw of items).
        let per_experiment: Vec<f64> = result.experiments.iter().map(|e| e.v_measure).collect();
        let replicates =
            mean_replicates(&per_experiment, settings.bootstrap_resamples, settings.seed);
        let mut scores = BTreeMap::new();
        scores.insert(
            "v_measure".to_string(),
            Score {
                value: result.v_measure,
                ci95: interval(&replicates),
            },
        );
        scores.insert(
            "v_measure_std".to_string(),
            Score {
                value: result.v_measure_std,
                ci95: Interval::NAN,
            },
        );
        let samples = result
            .experiments
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "task": self.spec.name,
                    "id": format!("experiment-{i}"),
                    "experiment": i,
                    "v_measure": e.v_measure,
                    "scores": {"v_measure": e.v_measure},
                    "assignment": e.assignment,
                })
            })
            .collect();
        Ok(TaskResult {
            task: self.spec.name.clone(),
            task_name: self.spec.display_name().to_string(),
            family: self.spec.family().into(),
            split: self.spec.dataset.split.clone(),
            main_score: "v_measure".into(),
            scores,
            measures: Vec::new(),
            dataset: DatasetRecord {
                origin: self.origin.clone(),
                fingerprint: self.fingerprint.clone(),
                items: self.texts.len(),
                corpus_size: None,
                selection: Some(json!({
                    "embedded": chosen.len(),
                    "labels": self.label_names.len(),
                    "documents_per_experiment": self.section.max_documents_per_cluster,
                    "experiments": self.section.n_experiments,
                    "seed": self.section.seed,
                })),
            },
            replicates,
            embedding: stats,
            search_seconds: 0.0,
            seconds: started.elapsed().as_secs_f64(),
            samples,
        })
    }
}
