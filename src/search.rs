//! Exact top-k search by cosine similarity over embeddings, chunked over the corpus so
//! memory stays bounded, with trec_eval's tie order (score desc, then doc id desc).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Corpus rows scored per matrix product: bounds memory at queries × this many scores.
const CORPUS_CHUNK: usize = 16_384;
/// Queries per matrix product.
const QUERY_CHUNK: usize = 1_024;

/// One hit: index into the corpus and cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: usize,
    pub score: f32,
}

/// Heap entry ordered so the *worst* hit is at the top (to be evicted first).
struct Worst<'a> {
    hit: Hit,
    ids: &'a [String],
}

impl PartialEq for Worst<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst<'_> {}
impl PartialOrd for Worst<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // "Greater" = ranks lower: smaller score, or equal score and smaller doc id.
        rank_order(self.ids, &self.hit, &other.hit)
    }
}

/// Ranking order: Less means `a` ranks before `b`.
fn rank_order(ids: &[String], a: &Hit, b: &Hit) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| ids[b.doc].cmp(&ids[a.doc]))
}

/// L2-normalised copy of each row (zero rows stay zero).
fn normalized(rows: &[Vec<f32>]) -> Vec<f32> {
    rows.iter()
        .flat_map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter().map(move |v| v / norm)
        })
        .collect()
}

/// For each query, its `k` best corpus rows, best first. `skip(query, doc)` drops a
/// candidate (for `ignore_identical_ids`).
pub fn top_k(
    queries: &[Vec<f32>],
    corpus: &[Vec<f32>],
    corpus_ids: &[String],
    k: usize,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Result<Vec<Vec<Hit>>> {
    let dim = corpus.first().or(queries.first()).map_or(0, Vec::len);
    let mut heaps: Vec<BinaryHeap<Worst>> = (0..queries.len())
        .map(|_| BinaryHeap::with_capacity(k + 1))
        .collect();
    if dim == 0 || k == 0 {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    for (c_chunk, c_rows) in corpus.chunks(CORPUS_CHUNK).enumerate() {
        let c_offset = c_chunk * CORPUS_CHUNK;
        let c = Tensor::from_vec(normalized(c_rows), (c_rows.len(), dim), &Device::Cpu)?;
        for (q_chunk, q_rows) in queries.chunks(QUERY_CHUNK).enumerate() {
            let q_offset = q_chunk * QUERY_CHUNK;
            let q = Tensor::from_vec(normalized(q_rows), (q_rows.len(), dim), &Device::Cpu)?;
            let scores: Vec<Vec<f32>> = q.matmul(&c.t()?)?.to_vec2()?;
            for (qi, row) in scores.iter().enumerate() {
                let query = q_offset + qi;
                let heap = &mut heaps[query];
                for (ci, &score) in row.iter().enumerate() {
                    let doc = c_offset + ci;
                    if skip(query, doc) {
                        continue;
                    }
                    let entry = Worst {
                        hit: Hit { doc, score },
                        ids: corpus_ids,
                    };
                    if heap.len() < k {
                        heap.push(entry);
                    } else if heap.peek().is_some_and(|worst| entry < *worst) {
                        heap.pop();
                        heap.push(entry);
                    }
                }
            }
        }
    }
    Ok(heaps
        .into_iter()
        .map(|heap| heap.into_sorted_vec().into_iter().map(|w| w.hit).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_cosine_then_doc_id_descending() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        // b and c tie with the query; d is best; a is orthogonal.
        let corpus = vec![
            vec![0.0, 1.0],
            vec![1.0, 1.0],
            vec![2.0, 2.0],
            vec![1.0, 0.0],
        ];
        let queries = vec![vec![1.0, 0.0]];
        let hits = top_k(&queries, &corpus, &ids, 3, |_, _| false).unwrap();
        let order: Vec<&str> = hits[0].iter().map(|h| ids[h.doc].as_str()).collect();
        assert_eq!(order, ["d", "c", "b"]);
        let skipped = top_k(&queries, &corpus, &ids, 2, |_, d| d == 3).unwrap();
        let order: Vec<&str> = skipped[0].iter().map(|h| ids[h.doc].as_str()).collect();
        assert_eq!(order, ["c", "b"]);
    }
}
