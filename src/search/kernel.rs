//! Fixed-order f32 arithmetic for cosine scores: the bits of a score depend only on the
//! two vectors, never on the CPU, the tile a pair lands in, or the rest of the corpus.
//!
//! Every sum runs over `LANES` independent lanes (element `i` into lane `i % LANES`, in
//! order of `i`), each step a separate multiply then add (never fused: an FMA rounds once
//! and gives other bits), and the lanes are combined in one fixed tree (`combine`). Rows are
//! padded with zeros to a multiple of `LANES`, so no path has a tail of its own.

/// Independent accumulators per sum: one AVX2 register of f32.
pub const LANES: usize = 8;

/// Queries per micro-kernel tile.
pub const MR: usize = 6;
/// Documents per micro-kernel tile. 6 × 2 accumulators, two document registers, one query
/// register and one product fill the 16 AVX2 registers.
pub const NR: usize = 2;

/// The lane tree every path uses: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), which is what
/// the AVX2 reduction (high half onto low half, then pairs) computes.
#[inline(always)]
fn combine(l: [f32; LANES]) -> f32 {
    let s = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// Dot product of two padded rows in the fixed order (portable path).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    debug_assert_eq!(a.len() % LANES, 0);
    let mut acc = [0.0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    combine(acc)
}

/// Scales a padded row to unit length in place (a zero row stays zero). Division, not a
/// multiply by the reciprocal: it matches the previous search to the bit on most rows.
pub fn normalize(row: &mut [f32]) {
    let norm = dot(row, row).sqrt().max(1e-12);
    for v in row {
        *v /= norm;
    }
}

/// Which code computes the scores. Both give the same bits; the choice is speed only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// Scores of an `MR × NR` tile: `queries` holds `MR` padded rows and `docs` `NR`, each
    /// `stride` long.
    #[inline(always)]
    pub fn tile(self, queries: &[f32], docs: &[f32], stride: usize) -> [[f32; NR]; MR] {
        debug_assert!(queries.len() >= MR * stride && docs.len() >= NR * stride);
        match self {
            Kernel::Portable => portable_tile(queries, docs, stride),
            // SAFETY: `Avx2` is only built by `detect` after the CPU reported AVX2, and the
            // slices hold the rows the kernel reads (checked above in debug builds, and by
            // every caller's tiling).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2::tile(queries.as_ptr(), docs.as_ptr(), stride) },
        }
    }
}

fn portable_tile(queries: &[f32], docs: &[f32], stride: usize) -> [[f32; NR]; MR] {
    let mut out = [[0.0; NR]; MR];
    for (r, row) in out.iter_mut().enumerate() {
        let q = &queries[r * stride..][..stride];
        for (j, score) in row.iter_mut().enumerate() {
            *score = dot(q, &docs[j * stride..][..stride]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{LANES, MR, NR};

    /// `combine` on a register: high half onto low half, then the two pairs.
    #[inline(always)]
    unsafe fn reduce(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps::<1>(t, t)))
    }

    /// # Safety
    /// The CPU has AVX2; `q` points at `MR` rows and `d` at `NR` rows of `stride` floats,
    /// `stride` a multiple of `LANES`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile(q: *const f32, d: *const f32, stride: usize) -> [[f32; NR]; MR] {
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let mut i = 0;
        while i < stride {
            let mut dv = [_mm256_setzero_ps(); NR];
            for (j, v) in dv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(d.add(j * stride + i));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let qv = _mm256_loadu_ps(q.add(r * stride + i));
                for (a, v) in row.iter_mut().zip(&dv) {
                    // Multiply, then add: two roundings, as in the portable path.
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(qv, *v));
                }
            }
            i += LANES;
        }
        let mut out = [[0.0; NR]; MR];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (s, v) in o.iter_mut().zip(a) {
                *s = reduce(*v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn dispatched_tile_matches_portable_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for stride in [8, 16, 384, 1024] {
            let mut q: Vec<f32> = (0..MR * stride)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut d: Vec<f32> = (0..NR * stride)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            q.chunks_mut(stride).for_each(normalize);
            d.chunks_mut(stride).for_each(normalize);
            let fast = Kernel::detect().tile(&q, &d, stride);
            let slow = Kernel::Portable.tile(&q, &d, stride);
            for (a, b) in fast.iter().flatten().zip(slow.iter().flatten()) {
                assert_eq!(a.to_bits(), b.to_bits(), "stride {stride}");
            }
        }
    }
}
