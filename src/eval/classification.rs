//! Classification: MTEB's linear probe. Each experiment draws `samples_per_label` training
//! rows per label (mteb's undersampling with numpy's `RandomState`), fits sklearn's
//! default logistic regression on their embeddings and scores the whole test split;
//! scores are means over experiments. Subsets (languages) are scored separately and the
//! task's score is their mean.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use crate::data::table::Table;
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::eval::task::{Embedded, Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{interval, mean_replicates};
use crate::metrics::classification::{probe, undersample_experiments, ProbeConfig};
use crate::spec::{ClassificationSpec, TaskSpec};

/// The scores mteb reports for a probe, main first; `ap` only for binary labels.
const SCORES: [&str; 9] = [
    "accuracy",
    "f1",
    "f1_weighted",
    "precision",
    "precision_weighted",
    "recall",
    "recall_weighted",
    "ap",
    "ap_weighted",
];

/// A row as read: text, label name, line.
type Labelled = (String, String, usize);

/// Texts with labels encoded as indices into the subset's sorted label names.
struct Split {
    texts: Vec<String>,
    labels: Vec<i64>,
    fingerprint: String,
    origin: String,
}

struct Subset {
    name: Option<String>,
    label_names: Vec<String>,
    train: Split,
    test: Split,
    /// Labels with fewer training rows than `samples_per_label` (mteb uses them all).
    short_labels: Vec<(String, usize)>,
}

pub struct ClassificationTask {
    spec: TaskSpec,
    section: ClassificationSpec,
    subsets: Vec<Subset>,
}

impl ClassificationTask {
    pub fn load(
        spec: &TaskSpec,
        section: &ClassificationSpec,
        source: &DataSource,
    ) -> Result<ClassificationTask> {
        let mut subsets = Vec::new();
        for subset in spec.subsets() {
            let read = |split: &str| -> Result<(Table, Vec<Labelled>)> {
                let table = Table::load(source, &spec.dataset, split, subset)?;
                let rows = table
                    .rows
                    .iter()
                    .map(|row| {
                        Ok((
                            table.text(row, &section.text)?,
                            table.text(row, &section.label)?,
                            row.line,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((table, rows))
            };
            let (train_table, train_rows) = read(&section.train_split)?;
            let (test_table, test_rows) = read(&spec.dataset.split)?;
            // Labels are numbered in sorted order of the names seen in training.
            let label_names: Vec<String> = train_rows
                .iter()
                .map(|(_, l, _)| l.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let index: BTreeMap<&str, i64> = label_names
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as i64))
                .collect();
            let mut test_labels = Vec::with_capacity(test_rows.len());
            for (_, label, line) in &test_rows {
                let Some(&i) = index.get(label.as_str()) else {
                    return Err(Error::record(
                        &test_table.path,
                        *line,
                        &section.label,
                        format!(
                            "label `{label}` never occurs in the {} split ({}), so the probe cannot predict it",
                            section.train_split,
                            train_table.path.display()
                        ),
                    ));
                };
                test_labels.push(i);
            }
            let train_labels: Vec<i64> = train_rows
                .iter()
                .map(|(_, l, _)| index[l.as_str()])
                .collect();
            let mut counts = vec![0usize; label_names.len()];
            for &l in &train_labels {
                counts[l as usize] += 1;
            }
            let short_labels: Vec<(String, usize)> = counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c < section.samples_per_label)
                .map(|(i, &c)| (label_names[i].clone(), c))
                .collect();
            for (label, count) in &short_labels {
                tracing::warn!(
                    "{}: label `{label}` has {count} training rows, fewer than samples_per_label = {}; \
                     every experiment uses all of them (as mteb does)",
                    train_table.path.display(),
                    section.samples_per_label
                );
            }
            let split = |table: &Table, rows: Vec<Labelled>, labels| Split {
                texts: rows.into_iter().map(|(t, _, _)| t).collect(),
                labels,
                fingerprint: table.fingerprint.clone(),
                origin: table.path.display().to_string(),
            };
            subsets.push(Subset {
                name: subset.map(|s| s.name.clone()),
                label_names,
                train: split(&train_table, train_rows, train_labels),
                test: split(&test_table, test_rows, test_labels),
                short_labels,
            });
        }
        Ok(ClassificationTask {
            spec: spec.clone(),
            section: section.clone(),
            subsets,
        })
    }

    fn config(&self) -> ProbeConfig {
        ProbeConfig {
            samples_per_label: self.section.samples_per_label,
            n_experiments: self.section.n_experiments,
            seed: self.section.seed,
            max_iter: self.section.max_iter,
            ..ProbeConfig::default()
        }
    }

    /// Each subset's training rows that some experiment draws (only these are embedded).
    fn drawn(&self, subset: &Subset) -> Vec<usize> {
        let c = self.config();
        undersample_experiments(
            &subset.train.labels,
            c.samples_per_label,
            c.n_experiments,
            c.seed,
        )
        .into_iter()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
    }

    fn input(&self, text: &str) -> TaskInput {
        TaskInput::query(text, &self.section.instruction)
    }

    fn binary(&self) -> bool {
        self.subsets.iter().all(|s| s.label_names.len() == 2)
    }
}

impl Task for ClassificationTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        let parts: Vec<&str> = self
            .subsets
            .iter()
            .flat_map(|s| [s.train.fingerprint.as_str(), s.test.fingerprint.as_str()])
            .collect();
        crate::data::lines::sha256_hex(parts.join(",").as_bytes())
    }

    fn measures(&self) -> Vec<Measure> {
        let mut out: Vec<Measure> = SCORES
            .iter()
            .filter(|s| self.binary() || !s.starts_with("ap"))
            .map(|s| Measure::higher(*s))
            .collect();
        out[1] = Measure::higher("f1").headline();
        for subset in self.subsets.iter().filter_map(|s| s.name.as_ref()) {
            out.push(Measure::higher(format!("accuracy[{subset}]")).headline());
        }
        out
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    fn inputs(&self) -> Result<Vec<TaskInput>> {
        let mut inputs = Vec::new();
        for subset in &self.subsets {
            for i in self.drawn(subset) {
                inputs.push(self.input(&subset.train.texts[i]));
            }
            inputs.extend(subset.test.texts.iter().map(|t| self.input(t)));
        }
        Ok(inputs)
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let started = Instant::now();
        let Embedded {
            vectors,
            stats,
            settings,
        } = engine.embed(&self.spec, &self.inputs()?)?;
        let dim = vectors.first().map_or(0, Vec::len);
        let mut vectors = vectors.into_iter();

        let config = self.config();
        let mut per_subset: Vec<BTreeMap<&str, f64>> = Vec::new();
        let mut subset_replicates: Vec<Vec<f64>> = Vec::new();
        let mut scores = BTreeMap::new();
        let mut samples = Vec::new();
        for subset in &self.subsets {
            let drawn = self.drawn(subset);
            let zero = vec![0f32; dim];
            let mut train: Vec<&[f32]> = vec![zero.as_slice(); subset.train.texts.len()];
            let drawn_vectors: Vec<Vec<f32>> = vectors.by_ref().take(drawn.len()).collect();
            for (&i, v) in drawn.iter().zip(&drawn_vectors) {
                train[i] = v;
            }
            let test_vectors: Vec<Vec<f32>> =
                vectors.by_ref().take(subset.test.texts.len()).collect();
            let test: Vec<&[f32]> = test_vectors.iter().map(Vec::as_slice).collect();
            let result = probe(
                &train,
                &subset.train.labels,
                &test,
                &subset.test.labels,
                &config,
            )?;
            let m = &result.mean;
            let mut values = BTreeMap::from([
                ("accuracy", m.accuracy),
                ("f1", m.f1),
                ("f1_weighted", m.f1_weighted),
                ("precision", m.precision),
                ("precision_weighted", m.precision_weighted),
                ("recall", m.recall),
                ("recall_weighted", m.recall_weighted),
            ]);
            if let (Some(ap), Some(apw)) = (m.ap, m.ap_weighted) {
                values.insert("ap", ap);
                values.insert("ap_weighted", apw);
            }
            // Each test item's share of experiments that classified it correctly: their
            // mean is the mean accuracy, so resampling them gives its CI.
            let correct: Vec<f64> = (0..subset.test.labels.len())
                .map(|i| {
                    result
                        .experiments
                        .iter()
                        .filter(|e| e.predictions[i] == subset.test.labels[i])
                        .count() as f64
                        / result.experiments.len() as f64
                })
                .collect();
            let replicates = mean_replicates(&correct, settings.bootstrap_resamples, settings.seed);
            let prefix = subset
                .name
                .as_deref()
                .map_or(String::new(), |n| format!("{n}/"));
            for (i, c) in correct.iter().enumerate() {
                samples.push(json!({
                    "task": self.spec.name,
                    "id": format!("{prefix}{}-{i}", self.spec.dataset.split),
                    "label": subset.label_names[subset.test.labels[i] as usize],
                    "correct": c,
                    "scores": {"accuracy": c},
                }));
            }
            if let Some(name) = &subset.name {
                scores.insert(
                    format!("accuracy[{name}]"),
                    Score {
                        value: m.accuracy,
                        ci95: interval(&replicates),
                    },
                );
            }
            subset_replicates.push(replicates);
            per_subset.push(values);
        }

        // The task's scores: means over subsets (one subset: its own).
        let replicates: Vec<f64> = (0..settings.bootstrap_resamples)
            .map(|b| {
                subset_replicates.iter().map(|r| r[b]).sum::<f64>() / subset_replicates.len() as f64
            })
            .collect();
        for name in SCORES {
            if per_subset.iter().all(|v| v.contains_key(name)) {
                let value =
                    per_subset.iter().map(|v| v[name]).sum::<f64>() / per_subset.len() as f64;
                let ci95 = if name == "accuracy" {
                    interval(&replicates)
                } else {
                    crate::metrics::bootstrap::Interval::NAN
                };
                scores.insert(name.to_string(), Score { value, ci95 });
            }
        }

        let short: Vec<_> = self
            .subsets
            .iter()
            .flat_map(|s| {
                s.short_labels
                    .iter()
                    .map(move |(l, c)| json!({"subset": s.name, "label": l, "train_rows": c}))
            })
            .collect();
        let first = &self.subsets[0];
        Ok(TaskResult {
            task: self.spec.name.clone(),
            task_name: self.spec.display_name().to_string(),
            family: self.spec.family().into(),
            split: self.spec.dataset.split.clone(),
            main_score: "accuracy".into(),
            scores,
            measures: Vec::new(),
            dataset: DatasetRecord {
                origin: if self.subsets.len() == 1 {
                    first.test.origin.clone()
                } else {
                    format!(
                        "{} (+{} subsets)",
                        first.test.origin,
                        self.subsets.len() - 1
                    )
                },
                fingerprint: self.dataset_fingerprint(),
                items: self.subsets.iter().map(|s| s.test.texts.len()).sum(),
                corpus_size: None,
                selection: Some(json!({
                    "train_split": self.section.train_split,
                    "samples_per_label": self.section.samples_per_label,
                    "n_experiments": self.section.n_experiments,
                    "seed": self.section.seed,
                    "subsets": self.subsets.iter().map(|s| &s.name).collect::<Vec<_>>(),
                    "labels_with_fewer_train_rows": short,
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
