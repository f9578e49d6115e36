//! ggml's K-quants (Q4_K, Q5_K, Q6_K: super-blocks of 256 weights with 6- or 8-bit
//! sub-block scales) multiplied with Q8_K activations, in the arithmetic of ggml's AVX2
//! build, so that the floats equal llama-server's:
//!
//! - `quantize_row_q8k` is ggml's `quantize_row_q8_K` (the scale's sign follows the value
//!   of largest magnitude); `quantize_rows_q8k_in_fours` is `quantize_mat_q8_K_4x8`, which
//!   llama.cpp uses for a prompt's rows in groups of four ahead of a repacked Q4_K matrix
//!   and which breaks a ±max tie towards the positive value.
//! - Q4_K matrices whose row count is a multiple of 8 are repacked by llama.cpp on AVX2
//!   (`q4_K_8x8`): each super-block's integer dot is scaled once and the mins are kept in a
//!   second accumulator subtracted at the end. Other Q4_K matrices, and all Q5_K and Q6_K
//!   ones, go through `ggml_vec_dot_qN_K_q8_K`: eight integer lanes per super-block, each
//!   scaled into its own float lane, summed at the end like ggml's `hsum_float_8`.
//!
//! Every product here is exact in integers; what must match is where the integers become
//! floats and the order of the float sums. The portable forms keep those exactly, and the
//! AVX2 forms are checked against them bit for bit.

use half::f16;

use super::ggml_ops::{hsum8, WeightType};

/// Weights per K-quant super-block.
pub const QK_K: usize = 256;

/// One super-block of activations quantized to 8 bits (ggml's `block_q8_K`).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    /// Σ of each 16 consecutive `qs`.
    pub bsums: [i16; QK_K / 16],
}

/// ggml's `quantize_row_q8_K`: the value of largest magnitude (the first, on a tie) maps to
/// −127, the others to round-half-even multiples. Appends the row's super-blocks.
pub fn quantize_row_q8k(x: &[f32], out: &mut Vec<Q8K>) {
    for chunk in x.chunks_exact(QK_K) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in chunk {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        out.push(q8k_block(chunk, amax, -127.0 / max));
    }
}

/// ggml's `quantize_mat_q8_K_4x8` for one row: as [`quantize_row_q8k`] except that the
/// scale is negative whenever +max occurs in the block, whatever comes first.
fn quantize_row_q8k_positive_ties(x: &[f32], out: &mut Vec<Q8K>) {
    for chunk in x.chunks_exact(QK_K) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let positive = chunk.contains(&amax);
        let iscale = if positive {
            -127.0 / amax
        } else {
            127.0 / amax
        };
        out.push(q8k_block(chunk, amax, iscale));
    }
}

fn q8k_block(chunk: &[f32], amax: f32, iscale: f32) -> Q8K {
    let mut block = Q8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
    if amax == 0.0 {
        return block;
    }
    for (q, v) in block.qs.iter_mut().zip(chunk) {
        *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
    }
    for (s, qs) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
        *s = qs.iter().map(|&q| q as i16).sum();
    }
    block.d = 1.0 / iscale;
    block
}

/// A prompt's rows (`width` each) quantized for a repacked Q4_K matrix as llama.cpp does:
/// whole groups of four with [`quantize_row_q8k_positive_ties`], the rest one by one.
pub fn quantize_rows_q8k_in_fours(x: &[f32], width: usize, out: &mut Vec<Q8K>) {
    let rows = x.len() / width;
    let grouped = rows - rows % 4;
    for (i, row) in x.chunks_exact(width).enumerate() {
        if i < grouped {
            quantize_row_q8k_positive_ties(row, out);
        } else {
            quantize_row_q8k(row, out);
        }
    }
}

#[inline(always)]
fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K / Q5_K super-block, packed in 12
/// bytes (ggml's `get_scale_min_k4`).
#[inline(always)]
fn scales_and_mins(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = q[j] & 63;
            m[j] = q[j + 4] & 63;
        } else {
            sc[j] = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
            m[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
    (sc, m)
}

/// The unsigned quants of one super-block in element order: 0–15 (Q4_K), 0–31 (Q5_K) or
/// 0–63 (Q6_K, whose values are these minus 32).
#[inline(always)]
fn quants(kind: WeightType, b: &[u8]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    match kind {
        WeightType::Q4K | WeightType::Q5K => {
            let (qs, qh) = if kind == WeightType::Q4K {
                (&b[16..144], None)
            } else {
                (&b[48..176], Some(&b[16..48]))
            };
            for j in 0..4 {
                for l in 0..32 {
                    let byte = qs[32 * j + l];
                    let (lo, hi) = (64 * j + l, 64 * j + 32 + l);
                    q[lo] = byte & 0xf;
                    q[hi] = byte >> 4;
                    if let Some(qh) = qh {
                        q[lo] |= ((qh[l] >> (2 * j)) & 1) << 4;
                        q[hi] |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
                    }
                }
            }
        }
        WeightType::Q6K => {
            let (ql, qh) = (&b[..128], &b[128..192]);
            for half in 0..2 {
                let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                let base = 128 * half;
                for l in 0..32 {
                    q[base + l] = (ql[l] & 0xf) | ((qh[l] & 3) << 4);
                    q[base + 32 + l] = (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4);
                    q[base + 64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    q[base + 96 + l] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
        }
        _ => unreachable!("not a K-quant"),
    }
    q
}

/// Sums of the activations per 32 (the Q4_K / Q5_K sub-blocks), from the per-16 sums.
#[inline(always)]
fn bsums32(a: &Q8K) -> [i32; 8] {
    std::array::from_fn(|s| a.bsums[2 * s] as i32 + a.bsums[2 * s + 1] as i32)
}

/// A super-block's scale per 16 weights, and its eight mins (zero for Q6_K), unpacked once.
fn scales16_and_mins(kind: WeightType, b: &[u8]) -> ([i32; 16], [u8; 8]) {
    match kind {
        WeightType::Q6K => (std::array::from_fn(|s| b[192 + s] as i8 as i32), [0; 8]),
        _ => {
            let (sc, m) = scales_and_mins(&b[4..16]);
            (std::array::from_fn(|s| sc[s / 2] as i32), m)
        }
    }
}

/// The integer lanes of one super-block as ggml's AVX2 `vec_dot` forms them: lane k holds
/// elements 4k..4k+4 of every 32, each times its sub-block's scale; Q6_K's lanes also
/// subtract 32 × scale × Σ activations of sub-blocks 2k and 2k+1.
fn lanes(kind: WeightType, b: &[u8], a: &Q8K, scales: &[i32; 16]) -> [i32; 8] {
    let q = quants(kind, b);
    let mut lanes = [0i32; 8];
    for (e, (&q, &y)) in q.iter().zip(&a.qs).enumerate() {
        lanes[(e % 32) / 4] += scales[e / 16] * q as i32 * y as i32;
    }
    if kind == WeightType::Q6K {
        for (k, lane) in lanes.iter_mut().enumerate() {
            let sub = |s: usize| a.bsums[s] as i32 * scales[s];
            *lane -= (sub(2 * k) + sub(2 * k + 1)) << 5;
        }
    }
    lanes
}

/// Σ mins × activation sums of a Q4_K / Q5_K super-block, as the four lanes of ggml's
/// `_mm_madd_epi16` (lane p: sub-blocks 2p and 2p+1).
#[inline(always)]
fn min_lanes(m: &[u8; 8], a: &Q8K) -> [i32; 4] {
    let s = bsums32(a);
    std::array::from_fn(|p| m[2 * p] as i32 * s[2 * p] + m[2 * p + 1] as i32 * s[2 * p + 1])
}

/// One output: a row of K-quant super-blocks dotted with a row of Q8_K activations.
/// `repacked` selects llama.cpp's repacked Q4_K arithmetic (see the module comment).
pub fn dot(kind: WeightType, row: &[u8], acts: &[Q8K], repacked: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::ggml_ops::simd_kernels() {
        // SAFETY: AVX2 and FMA are present (checked at run time); the row holds
        // `acts.len()` super-blocks of `kind` (checked by the caller's shapes).
        return unsafe {
            match kind {
                WeightType::Q4K if repacked => x86::dot_q4k_repacked(row, acts),
                WeightType::Q4K => x86::dot_q4k(row, acts),
                WeightType::Q5K => x86::dot_q5k(row, acts),
                WeightType::Q6K => x86::dot_q6k(row, acts),
                _ => unreachable!("not a K-quant"),
            }
        };
    }
    dot_portable(kind, row, acts, repacked)
}

/// The same arithmetic as [`dot`] without SIMD.
pub fn dot_portable(kind: WeightType, row: &[u8], acts: &[Q8K], repacked: bool) -> f32 {
    let size = kind.block_bytes();
    let blocks = row.chunks_exact(size).zip(acts);
    if kind == WeightType::Q4K && repacked {
        // q4_K_8x8: one integer per super-block, scaled by (d_x × d_y); the mins likewise.
        let (mut acc, mut acc_min) = (0f32, 0f32);
        for (b, a) in blocks {
            let (scales, m) = scales16_and_mins(kind, b);
            let sum: i32 = lanes(kind, b, a, &scales).iter().sum();
            let mins: i32 = min_lanes(&m, a).iter().sum();
            acc = (sum as f32).mul_add(half(b, 0) * a.d, acc);
            acc_min = (mins as f32).mul_add(half(b, 2) * a.d, acc_min);
        }
        return acc - acc_min;
    }
    let mut acc = [0f32; 8];
    let mut acc_min = [0f32; 4];
    let mut summs = 0f32;
    for (b, a) in blocks {
        let (d, dmin) = match kind {
            WeightType::Q6K => (a.d * half(b, 208), 0.0),
            _ => (a.d * half(b, 0), -a.d * half(b, 2)),
        };
        let (scales, m) = scales16_and_mins(kind, b);
        for (acc, lane) in acc.iter_mut().zip(lanes(kind, b, a, &scales)) {
            *acc = d.mul_add(lane as f32, *acc);
        }
        match kind {
            WeightType::Q4K => {
                for (acc, lane) in acc_min.iter_mut().zip(min_lanes(&m, a)) {
                    *acc = dmin.mul_add(lane as f32, *acc);
                }
            }
            WeightType::Q5K => {
                let m = min_lanes(&m, a);
                summs = dmin.mul_add(((m[0] + m[1]) + (m[2] + m[3])) as f32, summs);
            }
            _ => {}
        }
    }
    let mins = (acc_min[0] + acc_min[2]) + (acc_min[1] + acc_min[3]);
    match kind {
        WeightType::Q4K => hsum8(acc) + mins,
        WeightType::Q5K => hsum8(acc) + summs,
        _ => hsum8(acc),
    }
}

/// Dequantizes one row (ggml's `dequantize_row_qN_K`, for `get_rows`).
pub fn dequantize(kind: WeightType, row: &[u8], out: &mut [f32]) {
    for (b, out) in row
        .chunks_exact(kind.block_bytes())
        .zip(out.chunks_exact_mut(QK_K))
    {
        let q = quants(kind, b);
        match kind {
            WeightType::Q6K => {
                let d = half(b, 208);
                for (e, o) in out.iter_mut().enumerate() {
                    let sc = b[192 + e / 16] as i8 as f32;
                    *o = d * sc * (q[e] as i32 - 32) as f32;
                }
            }
            _ => {
                let (d, dmin) = (half(b, 0), half(b, 2));
                let (sc, m) = scales_and_mins(&b[4..16]);
                for (e, o) in out.iter_mut().enumerate() {
                    let (d1, m1) = (d * sc[e / 32] as f32, dmin * m[e / 32] as f32);
                    // ggml's C is built with contraction: d1·q − m1 is one fused op.
                    *o = d1.mul_add(q[e] as f32, -m1);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::ggml_ops::x86::hsum;
    use super::{half, scales_and_mins, Q8K};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum_i32(v: __m256i) -> i32 {
        let mut lanes = [0i32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v);
        lanes.iter().sum()
    }

    /// The eight sub-block scales of a Q4_K / Q5_K super-block, each as an i16 pair
    /// broadcast to a whole register (what `get_scale_shuffle_k4` picks).
    #[inline(always)]
    unsafe fn scale_vectors(sc: &[u8; 8]) -> [__m256i; 8] {
        let mut out = [_mm256_setzero_si256(); 8];
        for (o, s) in out.iter_mut().zip(sc) {
            *o = _mm256_set1_epi16(*s as i16);
        }
        out
    }

    /// Bit `bit` of each byte of `hbits` as 16 or 0 (a Q5_K quant's fifth bit).
    #[inline(always)]
    unsafe fn high_bit(hbits: __m256i, bit: usize) -> __m256i {
        let mask = _mm256_set1_epi8((1u8 << bit) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, mask), mask);
        _mm256_and_si256(set, _mm256_set1_epi8(16))
    }

    /// Q4_K / Q5_K super-block integer lanes (as ggml's `vec_dot_q{4,5}_K_q8_K`): the
    /// nibbles at `qs`, plus 16 where Q5_K's high bits (`hbits`) are set.
    #[inline(always)]
    unsafe fn k_lanes(qs: *const u8, hbits: Option<__m256i>, sc: &[u8; 8], a: &Q8K) -> __m256i {
        let m4 = _mm256_set1_epi8(0xf);
        let scales = scale_vectors(sc);
        let (mut q, mut q8) = (qs, a.qs.as_ptr());
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let bits = _mm256_loadu_si256(q as *const __m256i);
            q = q.add(32);
            let mut lo = _mm256_and_si256(bits, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            if let Some(hbits) = hbits {
                lo = _mm256_add_epi8(lo, high_bit(hbits, 2 * j));
                hi = _mm256_add_epi8(hi, high_bit(hbits, 2 * j + 1));
            }
            let y_lo = _mm256_loadu_si256(q8 as *const __m256i);
            let y_hi = _mm256_loadu_si256(q8.add(32) as *const __m256i);
            q8 = q8.add(64);
            let p_lo = _mm256_madd_epi16(scales[2 * j], _mm256_maddubs_epi16(lo, y_lo));
            let p_hi = _mm256_madd_epi16(scales[2 * j + 1], _mm256_maddubs_epi16(hi, y_hi));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
        }
        sumi
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4k(row: &[u8], acts: &[Q8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = [0f32; 4];
        for (b, a) in row.chunks_exact(144).zip(acts) {
            let d = a.d * half(b, 0);
            let dmin = -a.d * half(b, 2);
            let (sc, m) = scales_and_mins(&b[4..16]);
            for (acc, lane) in acc_min.iter_mut().zip(super::min_lanes(&m, a)) {
                *acc = dmin.mul_add(lane as f32, *acc);
            }
            let lanes = _mm256_cvtepi32_ps(k_lanes(b.as_ptr().add(16), None, &sc, a));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), lanes, acc);
        }
        hsum(acc) + ((acc_min[0] + acc_min[2]) + (acc_min[1] + acc_min[3]))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4k_repacked(row: &[u8], acts: &[Q8K]) -> f32 {
        let (mut acc, mut acc_min) = (0f32, 0f32);
        for (b, a) in row.chunks_exact(144).zip(acts) {
            let (sc, m) = scales_and_mins(&b[4..16]);
            let sum = hsum_i32(k_lanes(b.as_ptr().add(16), None, &sc, a));
            let mins: i32 = super::min_lanes(&m, a).iter().sum();
            acc = (sum as f32).mul_add(half(b, 0) * a.d, acc);
            acc_min = (mins as f32).mul_add(half(b, 2) * a.d, acc_min);
        }
        acc - acc_min
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5k(row: &[u8], acts: &[Q8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (b, a) in row.chunks_exact(176).zip(acts) {
            let d = a.d * half(b, 0);
            let dmin = -a.d * half(b, 2);
            let (sc, m) = scales_and_mins(&b[4..16]);
            let m = super::min_lanes(&m, a);
            summs = dmin.mul_add(((m[0] + m[1]) + (m[2] + m[3])) as f32, summs);
            let hbits = _mm256_loadu_si256(b.as_ptr().add(16) as *const __m256i);
            let sumi = k_lanes(b.as_ptr().add(48), Some(hbits), &sc, a);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum(acc) + summs
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q6k(row: &[u8], acts: &[Q8K]) -> f32 {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let mut acc = _mm256_setzero_ps();
        for (b, a) in row.chunks_exact(210).zip(acts) {
            let d = a.d * half(b, 208);
            let scales = _mm_loadu_si128(b.as_ptr().add(192) as *const __m128i);
            let bsums = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
            let offset =
                _mm256_slli_epi32(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(scales)), 5);
            let (mut ql, mut qh, mut q8) = (b.as_ptr(), b.as_ptr().add(128), a.qs.as_ptr());
            let mut sumi = _mm256_setzero_si256();
            for half_block in 0..2 {
                let bits1 = _mm256_loadu_si256(ql as *const __m256i);
                let bits2 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                let bits_h = _mm256_loadu_si256(qh as *const __m256i);
                ql = ql.add(64);
                qh = qh.add(32);
                let h0 = _mm256_slli_epi16(_mm256_and_si256(bits_h, m3), 4);
                let h1 = _mm256_slli_epi16(_mm256_and_si256(bits_h, _mm256_set1_epi8(12)), 2);
                let h2 = _mm256_and_si256(bits_h, _mm256_set1_epi8(48));
                let h3 = _mm256_srli_epi16(_mm256_and_si256(bits_h, _mm256_set1_epi8(-64)), 2);
                let q = [
                    _mm256_or_si256(_mm256_and_si256(bits1, m15), h0),
                    _mm256_or_si256(_mm256_and_si256(bits2, m15), h1),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m15), h2),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m15), h3),
                ];
                for (t, q) in q.iter().enumerate() {
                    let y = _mm256_loadu_si256(q8 as *const __m256i);
                    q8 = q8.add(32);
                    // Sub-blocks 2c and 2c+1 of chunk c: eight i16 of each scale.
                    let c = 4 * half_block + t;
                    let s0 = b[192 + 2 * c] as i8 as i16;
                    let s1 = b[192 + 2 * c + 1] as i8 as i16;
                    let sc = _mm256_setr_epi16(
                        s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
                    );
                    let p = _mm256_madd_epi16(sc, _mm256_maddubs_epi16(*q, y));
                    sumi = _mm256_add_epi32(sumi, p);
                }
            }
            sumi = _mm256_sub_epi32(sumi, offset);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random byte and float stream.
    fn stream(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        }
    }

    fn floats(n: usize, seed: u64) -> Vec<f32> {
        let mut next = stream(seed);
        (0..n)
            .map(|_| (next() % 20001) as f32 / 5000.0 - 2.0)
            .collect()
    }

    /// Random super-blocks with small finite f16 scales.
    fn row(kind: WeightType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut next = stream(seed);
        let mut out: Vec<u8> = (0..blocks * kind.block_bytes())
            .map(|_| next() as u8)
            .collect();
        for b in out.chunks_exact_mut(kind.block_bytes()) {
            let put = |b: &mut [u8], at: usize, v: f32| {
                b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes())
            };
            match kind {
                WeightType::Q6K => put(b, 208, 0.0031),
                _ => {
                    put(b, 0, 0.0027);
                    put(b, 2, 0.0013);
                }
            }
        }
        out
    }

    const KINDS: [WeightType; 3] = [WeightType::Q4K, WeightType::Q5K, WeightType::Q6K];

    #[test]
    fn simd_and_portable_dots_are_bit_identical() {
        for kind in KINDS {
            for seed in 0..20 {
                let w = row(kind, 6, seed);
                let mut acts = Vec::new();
                quantize_row_q8k(&floats(6 * QK_K, seed + 50), &mut acts);
                for repacked in [false, true] {
                    let a = dot(kind, &w, &acts, repacked);
                    let b = dot_portable(kind, &w, &acts, repacked);
                    assert_eq!(a.to_bits(), b.to_bits(), "{kind:?} seed {seed}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn dots_agree_with_the_dequantized_sum() {
        for kind in KINDS {
            let w = row(kind, 4, 9);
            let x = floats(4 * QK_K, 10);
            let mut acts = Vec::new();
            quantize_row_q8k(&x, &mut acts);
            let mut weights = vec![0f32; 4 * QK_K];
            dequantize(kind, &w, &mut weights);
            // The exact product of the dequantized weights and dequantized activations.
            let exact: f64 = weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let a = &acts[i / QK_K];
                    *w as f64 * a.qs[i % QK_K] as f64 * a.d as f64
                })
                .sum();
            let scale: f64 = weights.iter().map(|w| w.abs() as f64).sum::<f64>() * 2.0 / 127.0;
            for repacked in [false, true] {
                let got = dot(kind, &w, &acts, repacked) as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * scale.max(1.0),
                    "{kind:?} repacked {repacked}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn q8k_maps_the_largest_magnitude_to_minus_127_and_keeps_block_sums() {
        let mut x = floats(QK_K, 3);
        x[7] = -4.0;
        let mut out = Vec::new();
        quantize_row_q8k(&x, &mut out);
        assert_eq!(out[0].qs[7], -127);
        assert_eq!(out[0].d, 1.0 / (-127.0 / -4.0));
        for (s, qs) in out[0].bsums.iter().zip(out[0].qs.chunks(16)) {
            assert_eq!(*s as i32, qs.iter().map(|&q| q as i32).sum::<i32>());
        }
        // A ±max tie: the row form follows the first, the grouped form the positive one.
        x[3] = 4.0;
        let (mut first, mut positive) = (Vec::new(), Vec::new());
        quantize_row_q8k(&x, &mut first);
        quantize_row_q8k_positive_ties(&x, &mut positive);
        assert_eq!((first[0].qs[3], first[0].qs[7]), (-127, 127));
        assert_eq!((positive[0].qs[3], positive[0].qs[7]), (-127, 127));
        x[3] = 0.0;
        x[1] = 4.0;
        let (mut first, mut positive) = (Vec::new(), Vec::new());
        quantize_row_q8k(&x[..], &mut first);
        quantize_row_q8k_positive_ties(&x, &mut positive);
        assert_eq!((first[0].qs[1], positive[0].qs[1]), (-127, -127));
        let mut y = x.clone();
        y[1] = -4.0;
        y[7] = 4.0;
        let (mut first, mut positive) = (Vec::new(), Vec::new());
        quantize_row_q8k(&y, &mut first);
        quantize_row_q8k_positive_ties(&y, &mut positive);
        assert_eq!((first[0].qs[1], first[0].qs[7]), (-127, 127));
        assert_eq!((positive[0].qs[1], positive[0].qs[7]), (127, -127));
    }

    #[test]
    fn dequantized_q6k_values_follow_the_layout() {
        // All quants 0 except element 0 (low bits 5, high bits 2 → 37 − 32 = 5), scale 3.
        let mut b = vec![0u8; 210];
        b[0] = 5;
        b[128] = 2;
        b[192] = 3;
        b[208..210].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        let mut out = vec![0f32; QK_K];
        dequantize(WeightType::Q6K, &b, &mut out);
        assert_eq!(out[0], 0.5 * 3.0 * 5.0);
        assert_eq!(out[1], 0.5 * 3.0 * -32.0);
    }
}
