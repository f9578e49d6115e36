//! BEIR-style retrieval: embed corpus and queries, exact top-k by cosine, then the
//! ranking measures with trec_eval semantics (as MTEB computes them with pytrec_eval).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::json;

use crate::data::{BeirDataset, DataSource};
use crate::engine::{Embedder, Role};
use crate::error::{Error, Result};
use crate::eval::embed::embed_all;
use crate::eval::task::{Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, RunSettings, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{mean_ci, mean_replicates};
use crate::metrics::ranking::{evaluate, mean_scores, Run};
use crate::search::top_k;
use crate::spec::{RetrievalSpec, TaskSpec};
use crate::store::EmbeddingCache;

/// Retrieved ids kept per query in `samples.jsonl`.
const SAMPLE_HITS: usize = 10;

/// A BEIR-style retrieval task with its corpus, queries and judgments.
pub struct RetrievalTask {
    spec: TaskSpec,
    section: RetrievalSpec,
    data: BeirDataset,
}

impl RetrievalTask {
    pub fn load(
        spec: &TaskSpec,
        section: &RetrievalSpec,
        source: &DataSource,
    ) -> Result<RetrievalTask> {
        Ok(RetrievalTask {
            spec: spec.clone(),
            section: section.clone(),
            data: BeirDataset::load(&spec.dataset, source)?,
        })
    }
}

impl Task for RetrievalTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn measures(&self) -> Vec<Measure> {
        let main = &self.section.main_score;
        let headline = ["map_at_10", "mrr_at_10", "recall_at_100", "precision_at_1"];
        let mut all = vec![Measure::higher(main.clone())];
        for measure in ["ndcg", "map", "mrr", "recall", "precision"] {
            for k in &self.section.k_values {
                let name = format!("{measure}_at_{k}");
                if &name != main {
                    let m = Measure::higher(name.clone());
                    all.push(if headline.contains(&name.as_str()) {
                        m.headline()
                    } else {
                        m
                    });
                }
            }
        }
        all
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    /// The queries, then the documents.
    fn inputs(&self) -> Result<Vec<TaskInput>> {
        let (docs, queries) = inputs(&self.section, &self.data);
        Ok(queries.into_iter().chain(docs).collect())
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

/// The documents (MTEB: `title + separator + text`, stripped) and the queries (with the
/// task's instruction).
fn inputs(retrieval: &RetrievalSpec, data: &BeirDataset) -> (Vec<TaskInput>, Vec<TaskInput>) {
    let sep = &retrieval.title_separator;
    let docs = data
        .corpus
        .iter()
        .map(|d| TaskInput {
            text: format!("{}{sep}{}", d.title, d.text).trim().to_string(),
            role: Role::Document,
            instruction: None,
        })
        .collect();
    let queries = data
        .queries
        .iter()
        .map(|q| TaskInput {
            text: q.text.clone(),
            role: Role::Query,
            instruction: retrieval.query_instruction.clone(),
        })
        .collect();
    (docs, queries)
}

fn run(
    spec: &TaskSpec,
    retrieval: &RetrievalSpec,
    data: &BeirDataset,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    settings: &RunSettings,
) -> Result<TaskResult> {
    let started = Instant::now();
    let (docs, queries) = inputs(retrieval, data);
    let doc_texts: Vec<String> = docs.iter().map(|i| i.prepared(embedder)).collect();
    let query_texts: Vec<String> = queries.iter().map(|i| i.prepared(embedder)).collect();
    let (doc_vectors, mut stats) = embed_all(
        embedder,
        cache,
        &doc_texts,
        settings.batch_size,
        &format!("{} corpus", spec.name),
    )?;
    let (query_vectors, query_stats) = embed_all(
        embedder,
        cache,
        &query_texts,
        settings.batch_size,
        &format!("{} queries", spec.name),
    )?;
    stats.add(&query_stats);

    let k = retrieval.k_values.iter().copied().max().unwrap_or(10);
    let doc_ids: Vec<String> = data.corpus.iter().map(|d| d.id.clone()).collect();
    let ignore_identical = retrieval.ignore_identical_ids;
    let hits = top_k(&query_vectors, &doc_vectors, &doc_ids, k, |q, d| {
        ignore_identical && data.queries[q].id == doc_ids[d]
    })?;

    let run: Run = data
        .queries
        .iter()
        .zip(&hits)
        .map(|(q, hits)| {
            let ranked = hits
                .iter()
                .map(|h| (doc_ids[h.doc].clone(), h.score as f64))
                .collect();
            (q.id.clone(), ranked)
        })
        .collect::<HashMap<_, _>>();
    let per_query = evaluate(&data.qrels, &run, &retrieval.k_values);
    let means = mean_scores(&per_query);

    // Per-query values in the dataset's query order, so resamples (and their pairing
    // across runs) do not depend on hash order.
    let per_query_values = |measure: &str| -> Vec<f64> {
        data.queries
            .iter()
            .filter_map(|q| per_query.get(&q.id)?.get(measure).copied())
            .collect()
    };
    let mut scores = BTreeMap::new();
    for (measure, value) in &means {
        let values = per_query_values(measure);
        scores.insert(
            measure.clone(),
            Score {
                value: *value,
                ci95: mean_ci(&values, settings.bootstrap_resamples, settings.seed),
            },
        );
    }
    let replicates = mean_replicates(
        &per_query_values(&retrieval.main_score),
        settings.bootstrap_resamples,
        settings.seed,
    );
    if !scores.contains_key(&retrieval.main_score) {
        return Err(Error::Spec {
            path: format!("tasks/{}.toml", spec.name).into(),
            message: format!(
                "main_score `{}` is not a computed measure (check k_values)",
                retrieval.main_score
            ),
        });
    }

    let samples = data
        .queries
        .iter()
        .zip(&hits)
        .map(|(q, hits)| {
            let top: Vec<_> = hits
                .iter()
                .take(SAMPLE_HITS)
                .map(|h| json!([doc_ids[h.doc], h.score]))
                .collect();
            json!({
                "task": spec.name,
                "id": q.id,
                "retrieved": top,
                "scores": per_query.get(&q.id),
            })
        })
        .collect();

    Ok(TaskResult {
        task: spec.name.clone(),
        task_name: spec.display_name().to_string(),
        family: "retrieval".into(),
        split: spec.dataset.split.clone(),
        main_score: retrieval.main_score.clone(),
        scores,
        measures: Vec::new(),
        dataset: DatasetRecord {
            origin: data.origin.clone(),
            fingerprint: data.fingerprint.clone(),
            items: data.queries.len(),
            corpus_size: Some(data.corpus.len()),
            selection: None,
        },
        replicates,
        embedding: stats,
        seconds: started.elapsed().as_secs_f64(),
        samples,
    })
}
