//! The `k` best hits of one query, with trec_eval's order (score desc, then doc id desc).
//!
//! Not a binary heap: candidates that beat the current floor are appended to a buffer, and
//! when it holds `2k` the best `k` are selected (linear time) and the floor raised. Each
//! candidate costs an append instead of a heap sift: for k = 1000 the sifts took as long
//! as the scoring.

use std::cmp::Ordering;

use super::Hit;

/// Ranking order: Less means `a` ranks before `b`.
fn rank_order(ids: &[String], a: &Hit, b: &Hit) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| ids[b.doc].cmp(&ids[a.doc]))
}

/// At most `k` hits once compacted; `floor` is the worst kept score when `k` are kept, so
/// most candidates are turned away with one comparison.
pub struct TopK<'a> {
    k: usize,
    hits: Vec<Hit>,
    ids: &'a [String],
    floor: f32,
}

impl<'a> TopK<'a> {
    pub fn new(k: usize, ids: &'a [String]) -> Self {
        TopK {
            k,
            hits: Vec::new(),
            ids,
            floor: f32::NEG_INFINITY,
        }
    }

    /// Buffered candidates before a compaction.
    fn capacity(&self) -> usize {
        self.k * 2 + 64
    }

    /// False when `score` cannot enter (it is below the worst of `k` kept hits). True does
    /// not promise entry: a tie with the floor is settled by doc id, and the floor lags
    /// until the next compaction. NaN passes, so it is ranked as `total_cmp` ranks it.
    #[inline(always)]
    pub fn may_enter(&self, score: f32) -> bool {
        score.partial_cmp(&self.floor) != Some(Ordering::Less)
    }

    #[inline]
    pub fn offer(&mut self, hit: Hit) {
        if self.hits.capacity() == 0 {
            self.hits.reserve_exact(self.capacity());
        }
        self.hits.push(hit);
        if self.hits.len() == self.capacity() {
            self.compact();
        }
    }

    /// Keeps the best `k` (in no particular order) and raises the floor to the worst of them.
    fn compact(&mut self) {
        if self.hits.len() <= self.k {
            return;
        }
        let ids = self.ids;
        self.hits
            .select_nth_unstable_by(self.k - 1, |a, b| rank_order(ids, a, b));
        self.hits.truncate(self.k);
        // The k-th best after selection; a later hit must rank above it to matter.
        self.floor = self.hits[self.k - 1].score;
    }

    /// Best first.
    pub fn into_sorted(mut self) -> Vec<Hit> {
        self.compact();
        let ids = self.ids;
        self.hits.sort_unstable_by(|a, b| rank_order(ids, a, b));
        self.hits
    }
}
