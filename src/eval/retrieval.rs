//! BEIR-style retrieval: embed corpus and queries, exact top-k by cosine, then the
//! ranking measures with trec_eval semantics (as MTEB computes them with pytrec_eval).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use crate::data::{lines, BeirDataset, DataSource};
use crate::engine::{Embedder, Role};
use crate::error::{Error, Result};
use crate::eval::embed::{embed_all, embed_streamed, EmbedStats};
use crate::eval::shard::{RankedQuery, Shard, ShardWork};
use crate::eval::task::{Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, RunSettings, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::{mean_ci, mean_replicates};
use crate::metrics::ranking::{evaluate, mean_scores, Run};
use crate::search::{merge_ranked, top_k};
use crate::spec::{RetrievalSpec, TaskSpec};
use crate::store::cache::Key;
use crate::store::vectors::{VectorStore, VectorWriter};
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

    fn dataset_fingerprint(&self) -> String {
        self.data.fingerprint.clone()
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

    fn run_shard(&self, engine: Engine<'_>, shard: &Shard, work: &mut ShardWork) -> Result<()> {
        let (embedder, cache, settings) = engine.embedder(&self.spec)?;
        self.share(embedder, cache, settings, shard, work)
    }

    /// From the shards' top-k lists alone: no vector is needed again.
    fn merge(&self, engine: Engine<'_>, ranked: &[Vec<RankedQuery>]) -> Result<TaskResult> {
        let (_, _, settings) = engine.embedder(&self.spec)?;
        let started = Instant::now();
        self.scored(
            self.merged(ranked)?,
            EmbedStats::default(),
            0.0,
            started,
            settings,
        )
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
    let started = Instant::now();
    let (_, queries) = inputs(&task.section, &task.data, task.candidates.as_ref());
    let label = format!("{} corpus", task.spec.name);
    let (corpus, mut stats) = task.embed_corpus(embedder, cache, settings, &label, &|_| true)?;
    let (query_vectors, query_stats) = task.embed_queries(&queries, embedder, cache, settings)?;
    stats.add(&query_stats);
    let searching = Instant::now();
    let ranked = task.search(&query_vectors, &corpus)?;
    let search_seconds = searching.elapsed().as_secs_f64();
    task.scored(ranked, stats, search_seconds, started, settings)
}

/// Corpus vectors in a memory-mapped store (a temporary file beside the cache), and the
/// positions in the ranked document list of its rows: all documents, or a shard's.
struct CorpusStore {
    store: Option<VectorStore>,
    positions: Vec<usize>,
    _dir: tempfile::TempDir,
}

/// Each query's ranked documents: `(doc id, score)`, best first.
type Ranked = Vec<Vec<(String, f32)>>;

impl RetrievalTask {
    /// The ids of the documents ranked, in input order.
    fn doc_ids(&self) -> Vec<String> {
        match &self.candidates {
            Some(c) => c
                .docs
                .iter()
                .map(|&i| self.data.corpus[i].id.clone())
                .collect(),
            None => self.data.corpus.iter().map(|d| d.id.clone()).collect(),
        }
    }

    /// Ranking depth: the largest k reported.
    fn depth(&self) -> usize {
        self.section.k_values.iter().copied().max().unwrap_or(10)
    }

    fn embed_queries(
        &self,
        queries: &[TaskInput],
        embedder: &dyn Embedder,
        cache: &mut EmbeddingCache,
        settings: &RunSettings,
    ) -> Result<(Vec<Vec<f32>>, EmbedStats)> {
        let texts: Vec<String> = queries.iter().map(|i| i.prepared(embedder)).collect();
        embed_all(
            embedder,
            cache,
            &texts,
            settings.batch_size,
            &format!("{} queries", self.spec.name),
        )
    }

    /// Embeds the documents whose batches `owns` accepts into a store, one vector at a
    /// time from the cache, so the corpus is never whole in memory.
    fn embed_corpus(
        &self,
        embedder: &dyn Embedder,
        cache: &mut EmbeddingCache,
        settings: &RunSettings,
        label: &str,
        owns: &dyn Fn(&Key) -> bool,
    ) -> Result<(CorpusStore, EmbedStats)> {
        let (docs, _) = inputs(&self.section, &self.data, self.candidates.as_ref());
        let texts: Vec<String> = docs.iter().map(|i| i.prepared(embedder)).collect();
        let root = cache
            .path()
            .and_then(Path::parent)
            .map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let dir = tempfile::Builder::new()
            .prefix(".assay-corpus-")
            .tempdir_in(&root)
            .map_err(|e| Error::io(&root, e))?;
        let path = dir.path().join("corpus.vectors");
        let mut writer: Option<VectorWriter> = None;
        let mut positions = Vec::new();
        let stats = embed_streamed(
            embedder,
            cache,
            &texts,
            settings.batch_size,
            label,
            owns,
            &mut |i, vector| {
                if writer.is_none() {
                    writer = Some(VectorWriter::create(
                        &path,
                        vector.len(),
                        settings.store_dtype,
                    )?);
                }
                positions.push(i);
                writer.as_mut().expect("created above").push(&vector)
            },
        )?;
        let store = match writer {
            Some(w) => {
                w.finish()?;
                Some(VectorStore::open(&path)?)
            }
            None => None,
        };
        Ok((
            CorpusStore {
                store,
                positions,
                _dir: dir,
            },
            stats,
        ))
    }

    /// Every query's top-k over the documents in `corpus`.
    fn search(&self, query_vectors: &[Vec<f32>], corpus: &CorpusStore) -> Result<Ranked> {
        let Some(store) = &corpus.store else {
            return Ok(vec![Vec::new(); query_vectors.len()]);
        };
        let positions = &corpus.positions;
        let all_ids = self.doc_ids();
        let ids: Vec<String> = positions.iter().map(|&p| all_ids[p].clone()).collect();
        let ignore_identical = self.section.ignore_identical_ids;
        let candidates = self.candidates.as_ref();
        let queries = &self.data.queries;
        let hits = top_k(query_vectors, store, &ids, self.depth(), |q, d| {
            let outside = candidates.is_some_and(|c| !c.per_query[q].contains(&positions[d]));
            outside || (ignore_identical && queries[q].id == ids[d])
        })?;
        Ok(hits
            .into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|h| (ids[h.doc].clone(), h.score))
                    .collect()
            })
            .collect())
    }

    /// A shard: all queries, and the documents in the corpus batches this shard owns;
    /// records each query's top-k over them.
    fn share(
        &self,
        embedder: &dyn Embedder,
        cache: &mut EmbeddingCache,
        settings: &RunSettings,
        shard: &Shard,
        work: &mut ShardWork,
    ) -> Result<()> {
        let (_, queries) = inputs(&self.section, &self.data, self.candidates.as_ref());
        let label = format!("{} corpus, shard {shard}", self.spec.name);
        let (corpus, stats) =
            self.embed_corpus(embedder, cache, settings, &label, &|key| shard.owns(key))?;
        work.embedding.add(&stats);
        let (query_vectors, query_stats) =
            self.embed_queries(&queries, embedder, cache, settings)?;
        work.embedding.add(&query_stats);
        let ranked = self.search(&query_vectors, &corpus)?;
        let lists = self
            .data
            .queries
            .iter()
            .zip(ranked)
            .map(|(q, hits)| RankedQuery {
                query: q.id.clone(),
                hits,
            })
            .collect();
        work.ranked.push((self.spec.name.clone(), lists));
        Ok(())
    }

    /// Every shard's lists for each query, united and cut to the ranking depth again:
    /// the top-k of a union is within the union of the top-ks, so this is exact.
    fn merged(&self, shards: &[Vec<RankedQuery>]) -> Result<Ranked> {
        let mut by_query: HashMap<&str, Vec<Vec<(String, f32)>>> = HashMap::new();
        for list in shards.iter().flatten() {
            by_query
                .entry(list.query.as_str())
                .or_default()
                .push(list.hits.clone());
        }
        self.data
            .queries
            .iter()
            .map(|q| {
                let lists = by_query.remove(q.id.as_str()).ok_or_else(|| {
                    Error::Usage(format!(
                        "task {}: no shard ranked query `{}`",
                        self.spec.name, q.id
                    ))
                })?;
                Ok(merge_ranked(lists, self.depth()))
            })
            .collect()
    }

    /// The measures of a ranking, with per-query samples.
    fn scored(
        &self,
        ranked: Ranked,
        stats: EmbedStats,
        search_seconds: f64,
        started: Instant,
        settings: &RunSettings,
    ) -> Result<TaskResult> {
        let (spec, retrieval, data) = (&self.spec, &self.section, &self.data);
        let run: Run = data
            .queries
            .iter()
            .zip(&ranked)
            .map(|(q, hits)| {
                let hits = hits.iter().map(|(d, s)| (d.clone(), *s as f64)).collect();
                (q.id.clone(), hits)
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
            .zip(&ranked)
            .map(|(q, hits)| {
                let top: Vec<_> = hits
                    .iter()
                    .take(SAMPLE_HITS)
                    .map(|(d, s)| json!([d, s]))
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
                corpus_size: Some(self.doc_ids().len()),
                selection: None,
            },
            replicates,
            embedding: stats,
            search_seconds,
            seconds: started.elapsed().as_secs_f64(),
            samples,
        })
    }
}
