//! BEIR retrieval datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::data::lines::{self, json_objects, opt_str_field, str_field};
use crate::data::source::DataSource;
use crate::error::{Error, Result};
use crate::metrics::ranking::Qrels;
use crate::spec::DatasetSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct BeirDataset {
    pub corpus: Vec<Document>,
    /// Only the queries judged in the split's qrels, in file order.
    pub queries: Vec<Query>,
    pub qrels: Qrels,
    /// sha256 over the three files read.
    pub fingerprint: String,
    pub origin: String,
}

impl BeirDataset {
    pub fn load(dataset: &DatasetSpec, source: &DataSource) -> Result<BeirDataset> {
        let corpus_path = source.file("corpus.jsonl")?;
        let queries_path = source.file("queries.jsonl")?;
        let qrels_path = source.file(&format!("qrels/{}.tsv", dataset.split))?;
        let corpus_bytes = lines::read_bytes(&corpus_path)?;
        let queries_bytes = lines::read_bytes(&queries_path)?;
        let qrels_bytes = lines::read_bytes(&qrels_path)?;

        let corpus = parse_corpus(&corpus_path, &corpus_bytes)?;
        let all_queries = parse_queries(&queries_path, &queries_bytes)?;
        let qrels = parse_qrels(&qrels_path, &qrels_bytes, &corpus, &all_queries)?;
        let queries = all_queries
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();

        let mut hash = Sha256::new();
        for bytes in [&corpus_bytes, &queries_bytes, &qrels_bytes] {
            hash.update(Sha256::digest(bytes));
        }
        Ok(BeirDataset {
            corpus,
            queries,
            qrels,
            fingerprint: hex::encode(hash.finalize()),
            origin: source.describe(),
        })
    }
}

/// The record's `_id`, refused if an earlier record of the file had it.
fn new_id(
    path: &Path,
    line: usize,
    obj: &serde_json::Map<String, serde_json::Value>,
    seen: &mut HashSet<String>,
) -> Result<String> {
    let id = str_field(path, line, obj, "_id")?;
    if !seen.insert(id.clone()) {
        return Err(Error::record(
            path,
            line,
            "_id",
            format!("duplicate id `{id}`"),
        ));
    }
    Ok(id)
}

/// The documents of a `corpus.jsonl`'s bytes (`path` names it in errors).
pub fn parse_corpus(path: &Path, bytes: &[u8]) -> Result<Vec<Document>> {
    let mut seen = HashSet::new();
    let mut corpus = Vec::new();
    for (line, obj) in json_objects(path, bytes)? {
        let id = new_id(path, line, &obj, &mut seen)?;
        corpus.push(Document {
            title: opt_str_field(path, line, &obj, "title")?,
            text: str_field(path, line, &obj, "text")?,
            id,
        });
    }
    if corpus.is_empty() {
        return Err(Error::input(path, "empty corpus: no documents"));
    }
    Ok(corpus)
}

/// The queries of a `queries.jsonl`'s bytes.
pub fn parse_queries(path: &Path, bytes: &[u8]) -> Result<Vec<Query>> {
    let mut seen = HashSet::new();
    let mut queries = Vec::new();
    for (line, obj) in json_objects(path, bytes)? {
        let id = new_id(path, line, &obj, &mut seen)?;
        queries.push(Query {
            text: str_field(path, line, &obj, "text")?,
            id,
        });
    }
    Ok(queries)
}

/// `query-id <TAB> corpus-id <TAB> score`, with a header line; every id must exist.
pub fn parse_qrels(
    path: &Path,
    bytes: &[u8],
    corpus: &[Document],
    queries: &[Query],
) -> Result<Qrels> {
    let doc_ids: HashSet<&str> = corpus.iter().map(|d| d.id.as_str()).collect();
    let query_ids: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let mut qrels: Qrels = HashMap::new();
    for (line, text) in lines::utf8_lines(path, bytes)? {
        let fields: Vec<&str> = text.split('\t').map(str::trim).collect();
        if line == 1 && fields.first() == Some(&"query-id") {
            continue;
        }
        let [query, doc, score] = fields[..] else {
            return Err(Error::record(
                path,
                line,
                "<line>",
                format!(
                    "expected 3 tab-separated columns (query-id, corpus-id, score), found {}",
                    fields.len()
                ),
            ));
        };
        if !query_ids.contains(query) {
            return Err(Error::record(
                path,
                line,
                "query-id",
                format!("unknown query `{query}` (not in queries.jsonl)"),
            ));
        }
        if !doc_ids.contains(doc) {
            return Err(Error::record(
                path,
                line,
                "corpus-id",
                format!("unknown document `{doc}` (not in corpus.jsonl)"),
            ));
        }
        let score: i32 = score.parse().map_err(|_| {
            Error::record(
                path,
                line,
                "score",
                format!("expected an integer relevance, found `{score}`"),
            )
        })?;
        qrels
            .entry(query.to_string())
            .or_default()
            .insert(doc.to_string(), score);
    }
    if qrels.is_empty() {
        return Err(Error::input(path, "no relevance judgments"));
    }
    Ok(qrels)
}
