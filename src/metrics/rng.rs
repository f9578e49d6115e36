//! The two Python random generators whose draws reference scores depend on,
//! reproduced bit for bit. Both sit on the 32-bit Mersenne Twister
//! (`rand_mt::Mt`) and differ only in seeding and in how they turn words into
//! numbers:
//!
//! * [`PyRandom`]: CPython's `random.Random`. An integer seed is split into
//!   32-bit words and fed to the twister's `init_by_array`. Used by the
//!   MMLU-Pro grader's fallback (`choice` after `random.seed(12345)`) and by
//!   mteb's clustering (`sample` for the documents to embed, `choices` for each
//!   bootstrap draw).
//! * [`RandomState`]: numpy's legacy `np.random.RandomState`, seeded with the
//!   twister's scalar `init_genrand`. Used by mteb's classification
//!   undersampling (`shuffle`) and, through scikit-learn's
//!   `check_random_state`, by `MiniBatchKMeans` (`randint`, `uniform`,
//!   weighted `choice`, `permutation`).
//!
//! Only the calls those users make are provided; each documents the Python
//! expression it stands for.

use std::collections::HashSet;

use rand_mt::Mt;

/// A double in `[0, 1)` from 53 random bits (27 from one word, 26 from the
/// next): the recipe shared by CPython's `random()` and numpy's
/// `random_sample()`.
fn next_f64(mt: &mut Mt) -> f64 {
    let a = f64::from(mt.next_u32() >> 5);
    let b = f64::from(mt.next_u32() >> 6);
    (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
}

/// Smallest value of the form `2^k - 1` that is `>= bound`.
fn covering_mask(bound: u64) -> u64 {
    let mut mask = bound;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    mask
}

/// CPython's `random.Random`.
#[derive(Clone, Debug)]
pub struct PyRandom(Mt);

impl PyRandom {
    /// Same state as `random.Random(n)` or `random.seed(n)` for a
    /// non-negative integer `n`.
    pub fn seed(n: u64) -> Self {
        // CPython hands init_by_array the absolute value as 32-bit words, least
        // significant first, without leading zero words (0 becomes [0]).
        let (low, high) = (n as u32, (n >> 32) as u32);
        let mt = if high == 0 {
            Mt::new_with_key([low])
        } else {
            Mt::new_with_key([low, high])
        };
        PyRandom(mt)
    }

    /// `random.random()`.
    pub fn random(&mut self) -> f64 {
        next_f64(&mut self.0)
    }

    /// `random.getrandbits(k)` for `1 <= k <= 32`: the top `k` bits of one word.
    fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.0.next_u32() >> (32 - k)
    }

    /// `random.randrange(n)`, which is also the index `random.choice` picks
    /// from a sequence of length `n`: draw `bit_length(n)` bits until the
    /// value falls below `n`.
    ///
    /// # Panics
    /// If `n == 0` (Python raises there too).
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "empty sequence");
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.choice(items)`.
    ///
    /// # Panics
    /// If `items` is empty or longer than `u32::MAX`.
    pub fn choice<T: Copy>(&mut self, items: &[T]) -> T {
        let n = u32::try_from(items.len()).expect("sequence longer than u32::MAX");
        items[self.below(n) as usize]
    }

    /// `random.sample(range(n), k)`: `k` distinct indices in draw order.
    /// `None` where Python raises (`k > n`) and for `n > u32::MAX`, whose
    /// multi-word bit draws are not reproduced.
    pub fn sample(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        let n32 = u32::try_from(n).ok()?;
        if k > n {
            return None;
        }
        // CPython chooses between a shrinking pool and rejection against a
        // set of taken indices by comparing n with a guess at the memory a
        // k-element set needs.
        let mut setsize = 21.0_f64;
        if k > 5 {
            setsize += 4f64.powf(((3.0 * k as f64).ln() / 4f64.ln()).ceil());
        }
        let mut out = Vec::with_capacity(k);
        if n as f64 <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                // i < k <= n, so n - i >= 1 and fits in u32.
                let j = self.below(n32 - i as u32) as usize;
                out.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut taken = HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.below(n32) as usize;
                while !taken.insert(j) {
                    j = self.below(n32) as usize;
                }
                out.push(j);
            }
        }
        Some(out)
    }

    /// `random.choices(range(n), k=k)`: `k` indices drawn with replacement,
    /// each `floor(random() * n)`. `None` when `n == 0 < k` (Python raises).
    pub fn choices(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if n == 0 && k > 0 {
            return None;
        }
        let nf = n as f64;
        Some(
            (0..k)
                .map(|_| ((self.random() * nf).floor() as usize).min(n - 1))
                .collect(),
        )
    }
}

/// numpy's legacy `np.random.RandomState` seeded with an integer.
#[derive(Clone, Debug)]
pub struct RandomState(Mt);

impl RandomState {
    /// Same stream as `np.random.RandomState(seed)`.
    pub fn new(seed: u32) -> Self {
        RandomState(Mt::new(seed))
    }

    /// One raw 32-bit output of the twister.
    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// numpy's 64-bit draw: two words, the earlier one in the high half.
    pub fn next_u64(&mut self) -> u64 {
        let high = u64::from(self.0.next_u32());
        let low = u64::from(self.0.next_u32());
        (high << 32) | low
    }

    /// A value in `0..=max` by masked rejection (numpy's `random_interval`):
    /// AND each draw with the smallest all-ones mask covering `max` and retry
    /// while it exceeds `max`. One word per try when `max` fits in 32 bits,
    /// else two. `max == 0` draws nothing.
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = covering_mask(max);
        loop {
            let v = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                self.next_u64() & mask
            };
            if v <= max {
                return v;
            }
        }
    }

    /// `shuffle(items)`: Fisher-Yates from the last position down to 1, each
    /// swapped with a position drawn from `0..=i`. numpy takes this path for
    /// lists and 1-D arrays alike.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // The draw is at most i, so it fits back into usize.
            let j = self.random_interval(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// `permutation(n)`: a shuffled `arange(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut out: Vec<usize> = (0..n).collect();
        self.shuffle(&mut out);
        out
    }

    /// Scalar `randint(low, high)` with numpy's default int64: a value in
    /// `low..high`. `None` (nothing drawn) when `high <= low`, where numpy
    /// raises.
    pub fn randint(&mut self, low: i64, high: i64) -> Option<i64> {
        if high <= low {
            return None;
        }
        // Width of the inclusive range in wrapping unsigned arithmetic, as
        // numpy computes it for int64.
        let span = (high as u64).wrapping_sub(1).wrapping_sub(low as u64);
        let draw = match span {
            0 => 0,
            s if s == u64::from(u32::MAX) => u64::from(self.next_u32()),
            u64::MAX => self.next_u64(),
            s => self.random_interval(s),
        };
        Some((low as u64).wrapping_add(draw) as i64)
    }

    /// `randint(low, high, size)`: numpy fills the array one scalar draw at a
    /// time, so this is `size` calls of [`RandomState::randint`].
    pub fn randint_array(&mut self, low: i64, high: i64, size: usize) -> Option<Vec<i64>> {
        if high <= low {
            return None;
        }
        (0..size).map(|_| self.randint(low, high)).collect()
    }

    /// `random_sample()`: a double in `[0, 1)`.
    pub fn random_sample(&mut self) -> f64 {
        next_f64(&mut self.0)
    }

    /// `uniform(low, high)`: `low + (high - low) * random_sample()`. numpy
    /// raises when `high - low` overflows; this returns the non-finite result.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.random_sample()
    }

    /// `choice(len(cdf), size, p=p)` with replacement, given `cdf =
    /// normalized_cdf(p)`: each draw is the number of `cdf` entries `<=` a
    /// `random_sample()` (numpy's `searchsorted(side="right")`), capped at
    /// the last index.
    pub fn choice_with_cdf(&mut self, cdf: &[f64], size: usize) -> Vec<usize> {
        let last = cdf.len().saturating_sub(1);
        (0..size)
            .map(|_| {
                let u = self.random_sample();
                cdf.partition_point(|&c| c <= u).min(last)
            })
            .collect()
    }
}

/// The cumulative distribution numpy's `choice` builds from `p`: a sequential
/// float64 running sum, divided by its last entry.
pub fn normalized_cdf(p: &[f64]) -> Vec<f64> {
    let mut acc = 0.0_f64;
    let mut cdf: Vec<f64> = p
        .iter()
        .map(|&x| {
            acc += x;
            acc
        })
        .collect();
    if let Some(&total) = cdf.last() {
        for c in &mut cdf {
            *c /= total;
        }
    }
    cdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_choice_matches_cpython() {
        // python3 -c "import random; random.seed(12345);
        //   print([random.choice('ABCDEFGHIJ') for _ in range(12)])"
        let mut r = PyRandom::seed(12345);
        let letters: Vec<char> = "ABCDEFGHIJ".chars().collect();
        let drawn: String = (0..12).map(|_| r.choice(&letters)).collect();
        assert_eq!(drawn, "GAEFDEJGCFBG");
    }

    #[test]
    fn twister_reference_outputs() {
        // First output of init_genrand(5489), the generator's canonical seed.
        assert_eq!(RandomState::new(5489).next_u32(), 3_499_211_612);
    }

    #[test]
    fn mask_is_smallest_cover() {
        assert_eq!(covering_mask(1), 1);
        assert_eq!(covering_mask(2), 3);
        assert_eq!(covering_mask(8), 15);
        assert_eq!(covering_mask(u64::MAX), u64::MAX);
    }

    #[test]
    fn impossible_requests_are_none() {
        let mut rs = RandomState::new(1);
        assert_eq!(rs.randint(3, 3), None);
        assert_eq!(rs.randint(4, 3), None);
        assert_eq!(rs.randint(3, 4), Some(3));
        assert_eq!(rs.randint_array(0, 0, 5), None);
        let mut py = PyRandom::seed(0);
        assert_eq!(py.sample(3, 4), None);
        assert_eq!(py.choices(0, 1), None);
        assert_eq!(py.choices(0, 0), Some(vec![]));
        assert_eq!(py.sample(0, 0), Some(vec![]));
    }

    #[test]
    fn short_shuffles_draw_nothing() {
        let mut a = RandomState::new(9);
        let mut b = RandomState::new(9);
        let mut empty: [u8; 0] = [];
        a.shuffle(&mut empty);
        let mut one = [7];
        a.shuffle(&mut one);
        assert_eq!(one, [7]);
        assert_eq!(a.next_u32(), b.next_u32());
    }
}
