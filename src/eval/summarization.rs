//! Summarization: each machine summary is scored by its highest cosine (and dot) to the
//! article's human summaries; per article, Spearman and Pearson of those scores against
//! the expert scores (min-max normalised; articles whose experts gave one score to every
//! summary are skipped), then the mean over articles. Main score `cosine_spearman`
//! (mteb's fixed evaluator, `SummEvalSummarization.v2`).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::data::table::Table;
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::eval::task::{Embedded, Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{interval, mean_replicates, Interval};
use crate::metrics::correlation::spearman;
use crate::metrics::pair_classification::ModelSimilarity;
use crate::metrics::summarization::{evaluate_summarization, Aggregation, SummarizationOptions};
use crate::spec::{SummarizationSpec, TaskSpec};

struct Article {
    id: String,
    human: Vec<String>,
    machine: Vec<String>,
    scores: Vec<f64>,
}

pub struct SummarizationTask {
    spec: TaskSpec,
    section: SummarizationSpec,
    articles: Vec<Article>,
    fingerprint: String,
    origin: String,
}

impl SummarizationTask {
    pub fn load(
        spec: &TaskSpec,
        section: &SummarizationSpec,
        source: &DataSource,
    ) -> Result<SummarizationTask> {
        let table = Table::load(source, &spec.dataset, &spec.dataset.split, None)?;
        let [lo, hi] = section.score_range;
        let mut articles = Vec::with_capacity(table.rows.len());
        for (i, row) in table.rows.iter().enumerate() {
            let human = table.texts(row, &section.human_summaries)?;
            let machine = table.texts(row, &section.machine_summaries)?;
            let scores = table.numbers(row, &section.score)?;
            let bad =
                |field: &str, message: String| Error::record(&table.path, row.line, field, message);
            if human.is_empty() {
                return Err(bad(&section.human_summaries, "no human summaries".into()));
            }
            if machine.is_empty() {
                return Err(bad(
                    &section.machine_summaries,
                    "no machine summaries".into(),
                ));
            }
            if scores.len() != machine.len() {
                return Err(bad(
                    &section.score,
                    format!(
                        "{} scores for {} machine summaries: one score per summary",
                        scores.len(),
                        machine.len()
                    ),
                ));
            }
            if let Some(s) = scores.iter().find(|s| !(lo..=hi).contains(*s)) {
                return Err(bad(
                    &section.score,
                    format!("score {s} outside the range [{lo}, {hi}] set in the task spec"),
                ));
            }
            let id = match row.fields.get("id") {
                Some(_) => table.text(row, "id")?,
                None => format!("{}-{i}", spec.dataset.split),
            };
            articles.push(Article {
                id,
                human,
                machine,
                scores,
            });
        }
        Ok(SummarizationTask {
            spec: spec.clone(),
            section: section.clone(),
            articles,
            fingerprint: table.fingerprint.clone(),
            origin: format!("{} ({})", source.describe(), table.path.display()),
        })
    }
}

impl Task for SummarizationTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        vec![
            Measure::higher("cosine_spearman"),
            Measure::higher("cosine_pearson").headline(),
            Measure::higher("dot_spearman"),
            Measure::higher("dot_pearson"),
            Measure::higher("spearman"),
            Measure::higher("pearson"),
        ]
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    /// Every article's human summaries, then its machine summaries.
    fn inputs(&self) -> Result<Vec<TaskInput>> {
        let input = |text: &String| TaskInput::query(text, &self.section.instruction);
        Ok(self
            .articles
            .iter()
            .flat_map(|a| a.human.iter().chain(&a.machine).map(input))
            .collect())
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let started = Instant::now();
        let Embedded {
            vectors,
            stats,
            settings,
        } = engine.embed(&self.spec, &self.inputs()?)?;
        let mut vectors = vectors.into_iter();
        let (mut human, mut machine) = (Vec::new(), Vec::new());
        for a in &self.articles {
            human.push(vectors.by_ref().take(a.human.len()).collect::<Vec<_>>());
            machine.push(vectors.by_ref().take(a.machine.len()).collect::<Vec<_>>());
        }
        let expert: Vec<Vec<f64>> = self.articles.iter().map(|a| a.scores.clone()).collect();
        let [min_score, max_score] = self.section.score_range;
        let result = evaluate_summarization(
            &human,
            &machine,
            &expert,
            &SummarizationOptions {
                min_score,
                max_score,
                model_similarity: ModelSimilarity::Cosine,
                aggregation: Aggregation::MeanStatistic,
            },
        )?;

        // Per-article Spearman: the main score is their mean, so resampling articles
        // gives its CI.
        let per_article: Vec<f64> = result
            .articles
            .iter()
            .map(|a| spearman(&a.cosine, &a.human_scores))
            .collect();
        let replicates = mean_replicates(&per_article, settings.bootstrap_resamples, settings.seed);
        let mut scores = BTreeMap::new();
        for (name, value) in result.mteb_scores() {
            let ci95 = if name == "cosine_spearman" {
                interval(&replicates)
            } else {
                Interval::NAN
            };
            scores.insert(name.to_string(), Score { value, ci95 });
        }
        let samples = result
            .articles
            .iter()
            .zip(&per_article)
            .map(|(a, s)| {
                json!({
                    "task": self.spec.name,
                    "id": self.articles[a.article_index].id,
                    "cosine_spearman": s,
                    "scores": {"cosine_spearman": s},
                    "cosine": a.cosine,
                    "expert": a.human_scores,
                })
            })
            .collect();
        Ok(TaskResult {
            task: self.spec.name.clone(),
            task_name: self.spec.display_name().to_string(),
            family: self.spec.family().into(),
            split: self.spec.dataset.split.clone(),
            main_score: "cosine_spearman".into(),
            scores,
            measures: Vec::new(),
            dataset: DatasetRecord {
                origin: self.origin.clone(),
                fingerprint: self.fingerprint.clone(),
                items: self.articles.len(),
                corpus_size: None,
                selection: (!result.skipped.is_empty()).then(|| {
                    json!({
                        "articles_skipped": result.skipped.len(),
                        "why": "every machine summary has the same expert score",
                    })
                }),
            },
            replicates,
            embedding: stats,
            search_seconds: 0.0,
            seconds: started.elapsed().as_secs_f64(),
            samples,
        })
    }
}
