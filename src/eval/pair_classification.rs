//! Pair classification: for each sentence pair, cosine, dot, euclidean and manhattan
//! scores of the two embeddings; per score, sklearn's average precision and the best
//! threshold's accuracy and F1, as mteb's evaluator computes them. Main score `max_ap`,
//! the best AP over the score functions.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::data::table::Table;
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::eval::task::{Embedded, Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{interval, replicates, Interval};
use crate::metrics::classification::average_precision;
use crate::metrics::pair_classification::{
    evaluate_pair_scores, pair_scores, ModelSimilarity, PairScores,
};
use crate::spec::{PairClassificationSpec, PairLabelFormat, TaskSpec};

struct Pair {
    sentence1: String,
    sentence2: String,
    label: u8,
}

pub struct PairClassificationTask {
    spec: TaskSpec,
    section: PairClassificationSpec,
    pairs: Vec<Pair>,
    /// Rows left out (ties under the votes format).
    dropped: usize,
    fingerprint: String,
    origin: String,
}

impl PairClassificationTask {
    pub fn load(
        spec: &TaskSpec,
        section: &PairClassificationSpec,
        source: &DataSource,
    ) -> Result<PairClassificationTask> {
        let table = Table::load(source, &spec.dataset, &spec.dataset.split, None)?;
        let mut pairs = Vec::new();
        let mut dropped = 0;
        for row in &table.rows {
            // mteb's hub layout keeps the whole split in one row of three lists.
            if matches!(row.fields.get(&section.sentence1), Some(Value::Array(_))) {
                let s1 = table.texts(row, &section.sentence1)?;
                let s2 = table.texts(row, &section.sentence2)?;
                let labels = table.list(row, &section.label, |v, name| {
                    label_of(&table, row.line, name, v, section.label_format)
                })?;
                if s2.len() != s1.len() || labels.len() != s1.len() {
                    return Err(Error::record(
                        &table.path,
                        row.line,
                        &section.sentence2,
                        format!(
                            "lists of different lengths: {} {}, {} {}, {} {}",
                            s1.len(),
                            section.sentence1,
                            s2.len(),
                            section.sentence2,
                            labels.len(),
                            section.label
                        ),
                    ));
                }
                for ((sentence1, sentence2), label) in s1.into_iter().zip(s2).zip(labels) {
                    match label {
                        Some(label) => pairs.push(Pair {
                            sentence1,
                            sentence2,
                            label,
                        }),
                        None => dropped += 1,
                    }
                }
                continue;
            }
            let value = row.fields.get(&section.label).unwrap_or(&Value::Null);
            match label_of(
                &table,
                row.line,
                &section.label,
                value,
                section.label_format,
            )? {
                Some(label) => pairs.push(Pair {
                    sentence1: table.text(row, &section.sentence1)?,
                    sentence2: table.text(row, &section.sentence2)?,
                    label,
                }),
                None => dropped += 1,
            }
        }
        if !pairs.iter().any(|p| p.label == 1) || !pairs.iter().any(|p| p.label == 0) {
            return Err(Error::input(
                &table.path,
                "pair classification needs both positive (1) and negative (0) pairs",
            ));
        }
        Ok(PairClassificationTask {
            spec: spec.clone(),
            section: section.clone(),
            pairs,
            dropped,
            fingerprint: table.fingerprint.clone(),
            origin: format!("{} ({})", source.describe(), table.path.display()),
        })
    }
}

/// A pair's label: 0 or 1, or `None` for a row the format leaves out.
fn label_of(
    table: &Table,
    line: usize,
    field: &str,
    value: &Value,
    format: PairLabelFormat,
) -> Result<Option<u8>> {
    let text = match value {
        Value::Null => return Err(Error::record(&table.path, line, field, "missing")),
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => u8::from(*b).to_string(),
        _ => String::new(),
    };
    match format {
        PairLabelFormat::Binary => match text.as_str() {
            "0" | "0.0" => Ok(Some(0)),
            "1" | "1.0" => Ok(Some(1)),
            _ => Err(Error::record(
                &table.path,
                line,
                field,
                format!("expected 0 or 1, found `{text}`"),
            )),
        },
        PairLabelFormat::Votes if text == "0" || text == "1" => Ok(Some(u8::from(text == "1"))),
        PairLabelFormat::Votes => {
            let votes = text
                .strip_prefix('(')
                .and_then(|t| t.strip_suffix(')'))
                .and_then(|t| t.split_once(','))
                .and_then(|(n, of)| {
                    Some((
                        n.trim().parse::<u32>().ok()?,
                        of.trim().parse::<u32>().ok()?,
                    ))
                })
                .filter(|(n, of)| n <= of);
            match votes {
                Some((n, _)) if n >= 4 => Ok(Some(1)),
                Some((n, _)) if n <= 2 => Ok(Some(0)),
                Some(_) => Ok(None),
                None => Err(Error::record(
                    &table.path,
                    line,
                    field,
                    format!("expected annotator votes like `(4,6)`, found `{text}`"),
                )),
            }
        }
    }
}

impl Task for PairClassificationTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        let mut out = vec![
            Measure::higher("max_ap"),
            Measure::higher("max_accuracy").headline(),
            Measure::higher("max_f1").headline(),
            Measure::higher("max_precision"),
            Measure::higher("max_recall"),
        ];
        for f in ["similarity", "cosine", "manhattan", "euclidean", "dot"] {
            for m in ["accuracy", "f1", "precision", "recall", "ap"] {
                out.push(Measure::higher(format!("{f}_{m}")));
            }
        }
        out
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    fn inputs(&self) -> Result<Vec<TaskInput>> {
        let input = |text: &String| TaskInput::query(text, &self.section.instruction);
        let mut all: Vec<TaskInput> = self.pairs.iter().map(|p| input(&p.sentence1)).collect();
        all.extend(self.pairs.iter().map(|p| input(&p.sentence2)));
        Ok(all)
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let started = Instant::now();
        let Embedded {
            vectors,
            stats,
            settings,
        } = engine.embed(&self.spec, &self.inputs()?)?;
        let (left, right) = vectors.split_at(self.pairs.len());
        let labels: Vec<u8> = self.pairs.iter().map(|p| p.label).collect();
        let pair = pair_scores(left, right, ModelSimilarity::Cosine)?;
        let result = evaluate_pair_scores(&pair, &labels)?;

        // max_ap on each resample of the pairs.
        let resampled = replicates(
            labels.len(),
            settings.bootstrap_resamples,
            settings.seed,
            |idx| max_ap_of(&pair, &labels, idx),
        );
        let mut scores = BTreeMap::new();
        for (name, value) in result.mteb_scores() {
            let ci95 = if name == "max_ap" {
                interval(&resampled)
            } else {
                Interval::NAN
            };
            scores.insert(name, Score { value, ci95 });
        }
        for (name, m) in result.per_function() {
            for (what, value) in [
                ("accuracy_threshold", m.accuracy_threshold),
                ("f1_threshold", m.f1_threshold),
            ] {
                scores.insert(
                    format!("{name}_{what}"),
                    Score {
                        value,
                        ci95: Interval::NAN,
                    },
                );
            }
        }
        let samples = self
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "task": self.spec.name,
                    "id": format!("{}-{i}", self.spec.dataset.split),
                    "label": p.label,
                    "cosine": pair.cosine[i],
                    "dot": pair.dot[i],
                    "euclidean": pair.euclidean[i],
                    "manhattan": pair.manhattan[i],
                })
            })
            .collect();
        Ok(TaskResult {
            task: self.spec.name.clone(),
            task_name: self.spec.display_name().to_string(),
            family: self.spec.family().into(),
            split: self.spec.dataset.split.clone(),
            main_score: "max_ap".into(),
            scores,
            measures: Vec::new(),
            dataset: DatasetRecord {
                origin: self.origin.clone(),
                fingerprint: self.fingerprint.clone(),
                items: self.pairs.len(),
                corpus_size: None,
                selection: (self.dropped > 0)
                    .then(|| json!({"rows_left_out": self.dropped, "why": "tied votes"})),
            },
            replicates: resampled,
            embedding: stats,
            search_seconds: 0.0,
            seconds: started.elapsed().as_secs_f64(),
            samples,
        })
    }
}

/// The best average precision over the five score lists on one resample (distances
/// rank ascending, so they are negated).
fn max_ap_of(scores: &PairScores, labels: &[u8], idx: &[usize]) -> f64 {
    let positive: Vec<bool> = idx.iter().map(|&i| labels[i] == 1).collect();
    let lists: [(&Vec<f64>, f64); 5] = [
        (&scores.similarity, 1.0),
        (&scores.cosine, 1.0),
        (&scores.manhattan, -1.0),
        (&scores.euclidean, -1.0),
        (&scores.dot, 1.0),
    ];
    lists
        .iter()
        .filter_map(|(list, sign)| {
            let s: Vec<f64> = idx.iter().map(|&i| sign * list[i]).collect();
            average_precision(&s, &positive).ok()
        })
        .fold(f64::NAN, f64::max)
}
