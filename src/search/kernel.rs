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
const _: () = assert!(
    (MR * NR).is_multiple_of(4),
    "the AVX2 kernel reduces accumulators in fours"
);

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

    /// `combine` on four registers at once: [sum a, sum b, sum c, sum d], each by the same
    /// tree as `combine` (high half onto low half, then lanes 0+2 and 1+3, then those two).
    #[inline(always)]
    unsafe fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        // [a.lo + a.hi | b.lo + b.hi] = [as0..as3 | bs0..bs3], and the same for c, d.
        let ab = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        );
        let cd = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(c, d),
            _mm256_permute2f128_ps::<0x31>(c, d),
        );
        // [as0+as2, as1+as3, cs0+cs2, cs1+cs3 | the same for b, d].
        let t = _mm256_add_ps(
            _mm256_shuffle_ps::<0b01_00_01_00>(ab, cd),
            _mm256_shuffle_ps::<0b11_10_11_10>(ab, cd),
        );
        // [a, c, a, c | b, d, b, d].
        let u = _mm256_hadd_ps(t, t);
        let sums = _mm_unpacklo_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps::<1>(u));
        let mut out = [0.0; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sums);
        out
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
        // 12 accumulators, reduced four at a time (MR × NR is a multiple of 4).
        let flat: [__m256; MR * NR] = std::mem::transmute(acc);
        let mut sums = [0.0f32; MR * NR];
        for (s, a) in sums.chunks_exact_mut(4).zip(flat.chunks_exact(4)) {
            s.copy_from_slice(&reduce4(a[0], a[1], a[2], a[3]));
        }
        std::mem::transmute(sums)
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
