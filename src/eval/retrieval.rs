//! BEIR-style retrieval: embed corpus and queries, exact top-k by cosine, then the
//! ranking measures with trec_eval semantics (as MTEB computes them with pytrec_eval).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use serde_json::{json, Value};

use crate::data::{lines, BeirDataset, DataSource};
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

/// A BEIR-style retrieval task with its corpus, queries and judgments; a reranking task
/// when each query ranks only its own candidates.
pub struct RetrievalTask {
    spec: TaskSpec,
    section: RetrievalSpec,
    data: BeirDataset,
    candidates: Option<Candidates>,
}

/// Reranking: the documents any query ranks, and each query's own candidates (positions
/// in `docs`).
struct Candidates {
    docs: Vec<usize>,
    per_query: Vec<HashSet<usize>>,
}

impl Candidates {
    /// Reads `{"query-id": ..., "corpus-ids": [...]}` lines; every judged query needs a
    /// list and every id must be in the corpus.
    fn load(
        file: &str,
        data: &BeirDataset,
        spec: &TaskSpec,
        source: &DataSource,
    ) -> Result<Candidates> {
        let path = source.file(&file.replace("{split}", &spec.dataset.split))?;
        let bytes = lines::read_bytes(&path)?;
        let doc_index: HashMap<&str, usize> = data
            .corpus
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), i))
            .collect();
        let mut lists: HashMap<String, Vec<usize>> = HashMap::new();
        for (line, obj) in lines::json_objects(&path, &bytes)? {
            let query = lines::str_field(&path, line, &obj, "query-id")?;
            let Some(Value::Array(ids)) = obj.get("corpus-ids") else {
                return Err(Error::record(
                    &path,
                    line,
                    "corpus-ids",
                    "missing or not a list",
                ));
            };
            let mut docs = Vec::with_capacity(ids.len());
            for id in ids {
                let id = match id {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(Error::record(&path, line, "corpus-ids", "expected ids")),
                };
                let d = doc_index.get(id.as_str()).ok_or_else(|| {
                    Error::record(
                        &path,
                        line,
                        "corpus-ids",
                        format!("`{id}` is not in the corpus"),
                    )
                })?;
                docs.push(*d);
            }
            lists.insert(query, docs);
        }
        let all: BTreeSet<usize> = lists.values().flatten().copied().collect();
        let docs: Vec<usize> = all.into_iter().collect();
        let position: HashMap<usize, usize> =
            docs.iter().enumerate().map(|(p, &d)| (d, p)).collect();
        let per_query = data
            .queries
            .iter()
            .map(|q| {
                lists
                    .get(&q.id)
                    .map(|l| l.iter().map(|d| position[d]).collect())
                    .ok_or_else(|| {
                        Error::input(
                            &path,
                            format!("judged query `{}` has no candidate list", q.id),
                        )
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Candidates { docs, per_query })
    }
}

impl RetrievalTask {
    pub fn load(
        spec: &TaskSpec,
        section: &RetrievalSpec,
        source: &DataSource,
    ) -> Result<RetrievalTask> {
        let data = BeirDataset::load(&spec.dataset, source)?;
        let candidates = section
            .top_ranked
            .as_deref()
            .map(|file| Candidates::load(file, &data, spec, source))
            .transpose()?;
        Ok(RetrievalTask {
            spec: spec.clone(),
            section: section.clone(),
            data,
            candidates,
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
        let (docs, queries) = inputs(&self.section, &self.data, self.candidates.as_ref());
        Ok(queries.into_iter().chain(docs).collect())
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let (embedder, cache, settings) = engine.embedder(&self.spec)?;
        run(self, embedder, cache, settings)
    }
}

/// The documents (MTEB: `title + separator + text`, stripped) and the queries (with the
/// task's instruction).
fn inputs(
    retrieval: &RetrievalSpec,
    data: &BeirDataset,
    candidates: Option<&Candidates>,
) -> (Vec<TaskInput>, Vec<TaskInput>) {
    let sep = &retrieval.title_separator;
    let ranked: Vec<usize> = match candidates {
        Some(c) => c.docs.clone(),
        None => (0..data.corpus.len()).collect(),
    };
    let docs = ranked
        .iter()
        .map(|&i| &data.corpus[i])
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
    task: &RetrievalTask,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    settings: &RunSettings,
) -> Result<TaskResult> {
    let (spec, retrieval, data) = (&task.spec, &task.section, &task.data);
    let candidates = task.candidates.as_ref();
    let started = Instant::now();
    let (docs, queries) = inputs(retrieval, data, candidates);
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
    let doc_ids: Vec<String> = match candidates {
        Some(c) => c.docs.iter().map(|&i| data.corpus[i].id.clone()).collect(),
        None => data.corpus.iter().map(|d| d.id.clone()).collect(),
    };
    let ignore_identical = retrieval.ignore_identical_ids;
    let hits = top_k(&query_vectors, &doc_vectors, &doc_ids, k, |q, d| {
        let outside = candidates.is_some_and(|c| !c.per_query[q].contains(&d));
        outside || (ignore_identical && data.queries[q].id == doc_ids[d])
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
        family: spec.family().into(),
        split: spec.dataset.split.clone(),
        main_score: retrieval.main_score.clone(),
        scores,
        measures: Vec::new(),
        dataset: DatasetRecord {
            origin: data.origin.clone(),
            fingerprint: data.fingerprint.clone(),
            items: data.queries.len(),
            corpus_size: Some(doc_ids.len()),
            selection: None,
        },
        replicates,
        embedding: stats,
        seconds: started.elapsed().as_secs_f64(),
        samples,
    })
}
