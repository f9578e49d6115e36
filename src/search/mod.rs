//! Exact top-k search by cosine similarity, streamed over the corpus in chunks so memory
//! stays bounded (a chunk of rows and `k` hits per query, never a normalised copy of the
//! corpus), with trec_eval's tie order (score desc, then doc id desc).
//!
//! A score's bits depend only on the query and the document (see `kernel`): a corpus split
//! into shards, each searched alone and the lists joined with `merge_ranked`, gives the
//! same ranking as one search over the whole corpus, on any CPU.

mod corpus;
mod heap;
mod kernel;

use std::cmp::Ordering;
use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::{Error, Result};

pub use corpus::Corpus;
use heap::TopK;
pub use kernel::Kernel;
use kernel::{normalize, LANES, MR, NR};

/// Bytes of normalised corpus rows held at once.
const CHUNK_BYTES: usize = 8 << 20;
/// Corpus rows scored against a query block while they stay in the L2 cache.
const DOC_BLOCK: usize = 128;
/// Micro-kernel tiles (of `MR` queries) per parallel task: small enough that the tasks
/// balance across threads, large enough to reuse each document block from L2.
const TILES_PER_TASK: usize = 4;
/// Corpus rows read and normalised per parallel task.
const FILL_ROWS: usize = 256;

/// One hit: index into the corpus and cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: usize,
    pub score: f32,
}

/// For each query, its `k` best corpus rows, best first. `skip(query, doc)` drops a
/// candidate (for `ignore_identical_ids`, or to keep reranking to its candidates); it is
/// asked only about candidates good enough to enter the list.
pub fn top_k<C: Corpus + ?Sized>(
    queries: &[Vec<f32>],
    corpus: &C,
    corpus_ids: &[String],
    k: usize,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Result<Vec<Vec<Hit>>> {
    top_k_with(Kernel::detect(), queries, corpus, corpus_ids, k, skip)
}

/// `top_k` with a chosen kernel (every kernel gives the same bits).
pub fn top_k_with<C: Corpus + ?Sized>(
    kernel: Kernel,
    queries: &[Vec<f32>],
    corpus: &C,
    corpus_ids: &[String],
    k: usize,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Result<Vec<Vec<Hit>>> {
    corpus.check()?;
    if corpus_ids.len() != corpus.len() {
        return Err(Error::Usage(format!(
            "search: {} corpus ids for {} corpus rows",
            corpus_ids.len(),
            corpus.len()
        )));
    }
    let dim = corpus.dim();
    if let Some((i, q)) = queries
        .iter()
        .enumerate()
        .find(|(_, q)| q.len() != dim && !corpus.is_empty())
    {
        return Err(Error::Usage(format!(
            "search: query {i} has {} values, the corpus rows {dim}",
            q.len()
        )));
    }
    if dim == 0 || k == 0 || corpus.is_empty() {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    // Rows padded with zeros to whole lanes, and the queries to whole tiles.
    let stride = dim.next_multiple_of(LANES);
    let mut query_rows = vec![0.0f32; queries.len().next_multiple_of(MR) * stride];
    for (row, q) in query_rows.chunks_exact_mut(stride).zip(queries) {
        row[..dim].copy_from_slice(q);
        normalize(row);
    }
    let mut heaps: Vec<TopK> = queries.iter().map(|_| TopK::new(k, corpus_ids)).collect();

    let chunk_rows = (CHUNK_BYTES / (stride * 4))
        .max(NR)
        .next_multiple_of(FILL_ROWS);
    let mut chunk = vec![0.0f32; chunk_rows * stride];
    let block = MR * TILES_PER_TASK;
    for start in (0..corpus.len()).step_by(chunk_rows) {
        let rows = chunk_rows.min(corpus.len() - start);
        chunk[..rows.next_multiple_of(NR) * stride]
            .par_chunks_mut(FILL_ROWS * stride)
            .enumerate()
            .for_each(|(part, out)| {
                // The padding row past the corpus end (if any) keeps stale values: its
                // scores are never offered.
                let real = (out.len() / stride).min(rows - part * FILL_ROWS);
                let out = &mut out[..real * stride];
                corpus.read_rows(start + part * FILL_ROWS, stride, out);
                out.chunks_exact_mut(stride).for_each(normalize);
            });
        // From the previous chunk's start: the kernel maps pages around each fault, so a
        // few pages of the previous chunk can come back while this one is read.
        corpus.release(start.saturating_sub(chunk_rows)..start + rows);
        let chunk = &chunk[..rows.next_multiple_of(NR) * stride];
        heaps
            .par_chunks_mut(block)
            .zip(query_rows.par_chunks(block * stride))
            .enumerate()
            .for_each(|(b, (heaps, queries))| {
                let scan = Scan {
                    kernel,
                    stride,
                    first_query: b * block,
                    first_doc: start,
                    docs: rows,
                    skip: &skip,
                };
                scan.run(heaps, queries, chunk);
            });
    }
    Ok(heaps.into_iter().map(TopK::into_sorted).collect())
}

/// One query block against one chunk of the corpus.
struct Scan<'s, S> {
    kernel: Kernel,
    stride: usize,
    first_query: usize,
    first_doc: usize,
    /// Real rows in the chunk (the chunk may end with one padding row).
    docs: usize,
    skip: &'s S,
}

impl<S: Fn(usize, usize) -> bool> Scan<'_, S> {
    fn run(&self, heaps: &mut [TopK], queries: &[f32], chunk: &[f32]) {
        let stride = self.stride;
        let padded_docs = chunk.len() / stride;
        for block in (0..padded_docs).step_by(DOC_BLOCK) {
            let block_end = (block + DOC_BLOCK).min(padded_docs);
            for r in (0..heaps.len()).step_by(MR) {
                let tile_queries = &queries[r * stride..][..MR * stride];
                for j in (block..block_end).step_by(NR) {
                    let scores =
                        self.kernel
                            .tile(tile_queries, &chunk[j * stride..][..NR * stride], stride);
                    for (ri, row) in scores.iter().enumerate() {
                        let Some(heap) = heaps.get_mut(r + ri) else {
                            break;
                        };
                        for (ji, &score) in row.iter().enumerate() {
                            if heap.may_enter(score) && j + ji < self.docs {
                                let (query, doc) =
                                    (self.first_query + r + ri, self.first_doc + j + ji);
                                if !(self.skip)(query, doc) {
                                    heap.offer(Hit { doc, score });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Joins the ranked lists of one query (one per shard) into the `k` best: score desc, then
/// id desc, as `top_k` ranks. An id in several lists counts once, at its best score.
pub fn merge_ranked(
    lists: impl IntoIterator<Item = Vec<(String, f32)>>,
    k: usize,
) -> Vec<(String, f32)> {
    let mut all: Vec<(String, f32)> = lists.into_iter().flatten().collect();
    all.sort_by(rank);
    let mut seen = HashSet::new();
    all.retain(|(id, _)| seen.insert(id.clone()));
    all.truncate(k);
    all
}

fn rank(a: &(String, f32), b: &(String, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0))
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

    fn random_rows(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("doc{i:05}")).collect()
    }

    /// Every score of every query, by doc index.
    fn all_scores(kernel: Kernel, queries: &[Vec<f32>], corpus: &[Vec<f32>]) -> Vec<Vec<u32>> {
        let ids = ids(corpus.len());
        top_k_with(kernel, queries, corpus, &ids, corpus.len(), |_, _| false)
            .unwrap()
            .into_iter()
            .map(|hits| {
                let mut bits = vec![0; corpus.len()];
                for h in hits {
                    bits[h.doc] = h.score.to_bits();
                }
                bits
            })
            .collect()
    }

    #[test]
    fn scores_over_a_slice_equal_scores_over_the_whole_corpus_bit_for_bit() {
        // 13 queries and 45 docs of 37 values: partial tiles, padded lanes.
        let queries = random_rows(1, 13, 37);
        let corpus = random_rows(2, 45, 37);
        let whole = all_scores(Kernel::detect(), &queries, &corpus);
        for (from, to) in [(0, 1), (3, 20), (17, 45), (44, 45)] {
            let part = all_scores(Kernel::detect(), &queries, &corpus[from..to]);
            for (w, p) in whole.iter().zip(&part) {
                assert_eq!(&w[from..to], p.as_slice(), "slice {from}..{to}");
            }
        }
        // One query alone scores as it does among others.
        let alone = all_scores(Kernel::detect(), &queries[5..6], &corpus);
        assert_eq!(alone[0], whole[5]);
    }

    #[test]
    fn dispatched_search_equals_portable_bit_for_bit() {
        let queries = random_rows(3, 20, 384);
        let corpus = random_rows(4, 301, 384);
        assert_eq!(
            all_scores(Kernel::detect(), &queries, &corpus),
            all_scores(Kernel::Portable, &queries, &corpus)
        );
    }

    #[test]
    fn sharded_search_merged_equals_one_search() {
        let queries = random_rows(5, 9, 24);
        let corpus = random_rows(6, 500, 24);
        let ids = ids(corpus.len());
        let k = 10;
        let whole = top_k(&queries, &corpus, &ids, k, |_, _| false).unwrap();
        let shards = [0..130, 130..131, 131..400, 400..500];
        let per_shard: Vec<Vec<Vec<Hit>>> = shards
            .iter()
            .map(|r| {
                top_k(&queries, &corpus[r.clone()], &ids[r.clone()], k, |_, _| {
                    false
                })
                .unwrap()
            })
            .collect();
        for (q, expected) in whole.iter().enumerate() {
            let lists = shards.iter().zip(&per_shard).map(|(r, hits)| {
                hits[q]
                    .iter()
                    .map(|h| (ids[r.start + h.doc].clone(), h.score))
                    .collect::<Vec<_>>()
            });
            let merged = merge_ranked(lists, k);
            let expected: Vec<(String, f32)> = expected
                .iter()
                .map(|h| (ids[h.doc].clone(), h.score))
                .collect();
            assert_eq!(merged.len(), expected.len());
            for (m, e) in merged.iter().zip(&expected) {
                assert_eq!((&m.0, m.1.to_bits()), (&e.0, e.1.to_bits()));
            }
        }
    }

    #[test]
    fn merge_ranked_breaks_ties_by_id_descending_and_keeps_each_id_once() {
        let a = vec![("a".to_string(), 0.5), ("c".to_string(), 0.5)];
        let b = vec![
            ("b".to_string(), 0.5),
            ("c".to_string(), 0.25),
            ("d".to_string(), 0.9),
        ];
        let merged = merge_ranked([a, b], 3);
        let order: Vec<&str> = merged.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ["d", "c", "b"]);
        assert_eq!(merged[1].1, 0.5);
    }

    #[test]
    fn mismatched_dimensions_are_an_error() {
        let ids = ids(2);
        let corpus = vec![vec![1.0, 0.0], vec![1.0]];
        assert!(top_k(&[vec![1.0, 0.0]], &corpus, &ids, 1, |_, _| false).is_err());
        let corpus = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!(top_k(&[vec![1.0, 0.0, 0.0]], &corpus, &ids, 1, |_, _| false).is_err());
    }
}
