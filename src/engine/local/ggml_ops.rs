//! CPU kernels that reproduce llama.cpp's (ggml's AVX2 build) arithmetic step for step, so
//! a GGUF model run here gives the same floats as llama-server on the same machine:
//! activations quantized to Q8_0 / Q8_1 with ggml's rounding, quantized dot products that
//! accumulate in eight lanes of four products each, the two f32 dot-product shapes ggml
//! uses (its vector dot and llamafile's tiled GEMM), its vectorised exp and SiLU, and its
//! softmax. Each kernel has a portable form that keeps the same lanes and operation order
//! (and so the same result); the hot quantized dots also have AVX2 forms.

use half::f16;

/// Weights per quantization block (all types here).
pub const QK: usize = 32;

/// The weight encodings the native path reads (GGUF / ggml type ids 2, 3, 6, 8 and the
/// K-quants 12, 13, 14). The K-quants' kernels live in `kquants`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl WeightType {
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            WeightType::Q4_0 => 18,
            WeightType::Q4_1 => 20,
            WeightType::Q5_0 => 22,
            WeightType::Q8_0 => 34,
            WeightType::Q4K => 144,
            WeightType::Q5K => 176,
            WeightType::Q6K => 210,
        }
    }

    /// Weights per block: 32, or 256 for a K-quant super-block.
    pub fn block_weights(self) -> usize {
        if self.uses_q8k() {
            super::kquants::QK_K
        } else {
            QK
        }
    }

    /// Whether ggml multiplies this type with Q8_K activations (the K-quants) rather than
    /// Q8_0 / Q8_1 ones.
    pub fn uses_q8k(self) -> bool {
        matches!(self, WeightType::Q4K | WeightType::Q5K | WeightType::Q6K)
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            WeightType::Q4_0 => "Q4_0",
            WeightType::Q4_1 => "Q4_1",
            WeightType::Q5_0 => "Q5_0",
            WeightType::Q8_0 => "Q8_0",
            WeightType::Q4K => "Q4_K",
            WeightType::Q5K => "Q5_K",
            WeightType::Q6K => "Q6_K",
        }
    }
}

/// One block of quantized activations. `d` and `s` hold the f16-rounded values ggml
/// stores, widened to f32 once (the widening is exact).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ActBlock {
    pub d: f32,
    /// d × Σ qs (Q8_1 only: Q4_1's offset term).
    pub s: f32,
    pub qs: [i8; QK],
}

#[inline(always)]
fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// ggml's `quantize_row_q8_0` / `quantize_row_q8_1`: scale d = amax/127, values times
/// 127/amax rounded to nearest even; Q8_1 also keeps d × Σq. Appends the row's blocks.
pub fn quantize_row(x: &[f32], out: &mut Vec<ActBlock>) {
    for chunk in x.chunks_exact(QK) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut qs = [0i8; QK];
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(chunk) {
            let r = (v * id).round_ties_even() as i32;
            sum += r;
            *q = r as i8;
        }
        out.push(ActBlock {
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(d * sum as f32).to_f32(),
            qs,
        });
    }
}

/// ggml's `hsum_float_8` (and llamafile's `hsum`): halves added, then pairs, then the two.
#[inline(always)]
pub fn hsum8(v: [f32; 8]) -> f32 {
    let t = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// The unsigned 4-bit weights of a Q4_0/Q4_1 block in element order (low nibbles are
/// elements 0–15, high nibbles 16–31).
#[inline(always)]
fn nibbles(qs: &[u8]) -> [u8; QK] {
    let mut out = [0u8; QK];
    for j in 0..16 {
        out[j] = qs[j] & 0x0f;
        out[j + 16] = qs[j] >> 4;
    }
    out
}

/// The signed 5-bit weights of a Q5_0 block in element order: a nibble plus the high bit
/// from `qh` (bit j for element j), minus 16.
#[inline(always)]
fn q5_0_values(b: &[u8]) -> [i32; QK] {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let low = nibbles(&b[6..22]);
    let mut out = [0i32; QK];
    for (j, o) in out.iter_mut().enumerate() {
        *o = (low[j] as i32 | ((((qh >> j) & 1) as i32) << 4)) - 16;
    }
    out
}

/// Σ over the 8 lanes of four consecutive products, as AVX2's maddubs + madd give.
#[inline(always)]
fn lane_sums(x: impl Fn(usize) -> i32, y: &[i8; QK]) -> [f32; 8] {
    let mut lanes = [0f32; 8];
    for (k, lane) in lanes.iter_mut().enumerate() {
        let s: i32 = (4 * k..4 * k + 4).map(|j| x(j) * y[j] as i32).sum();
        *lane = s as f32;
    }
    lanes
}

/// One output: a row of quantized weights dotted with one row of quantized activations,
/// as ggml's `ggml_vec_dot_{q4_0_q8_0, q4_1_q8_1, q8_0_q8_0}`.
pub fn dot(kind: WeightType, row: &[u8], acts: &[ActBlock]) -> f32 {
    let mut out = [0f32];
    dot_rows(kind, row, acts, &mut out, false);
    out[0]
}

/// `out[i]` = row i of `rows` (consecutive rows of `acts.len()` blocks) · `acts`; every
/// output equals [`dot`]'s for its row bit for bit (its own accumulator, the same order).
/// `grouped`: four rows at a time share each activation load, which pays when the same
/// rows are then dotted with further activation rows (a prompt) while they sit in L1.
/// Reading the weights once (a single token) is faster row after row: four interleaved
/// streams cost 1.6× in decode here, as the prefetchers follow one stream best.
pub fn dot_rows(kind: WeightType, rows: &[u8], acts: &[ActBlock], out: &mut [f32], grouped: bool) {
    let n = acts.len() * kind.block_bytes();
    let rows = &rows[..out.len() * n];
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked at run time); `rows` holds
        // `out.len()` rows of `acts.len()` blocks of `kind` (sliced above).
        unsafe { x86::dot_rows(kind, rows, acts, out, grouped) };
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(n.max(1))) {
        *o = dot_portable(kind, row, acts);
    }
}

/// The same arithmetic as [`dot`] without SIMD: kept lane for lane.
pub fn dot_portable(kind: WeightType, row: &[u8], acts: &[ActBlock]) -> f32 {
    let size = kind.block_bytes();
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (b, a) in row.chunks_exact(size).zip(acts) {
        let d = half(b, 0);
        let (scale, lanes) = match kind {
            WeightType::Q4_0 => {
                let q = nibbles(&b[2..18]);
                (d * a.d, lane_sums(|j| q[j] as i32 - 8, &a.qs))
            }
            WeightType::Q4_1 => {
                summs = half(b, 2).mul_add(a.s, summs);
                let q = nibbles(&b[4..20]);
                (d * a.d, lane_sums(|j| q[j] as i32, &a.qs))
            }
            WeightType::Q5_0 => {
                let q = q5_0_values(b);
                (d * a.d, lane_sums(|j| q[j], &a.qs))
            }
            WeightType::Q8_0 => (d * a.d, lane_sums(|j| b[2 + j] as i8 as i32, &a.qs)),
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => {
                unreachable!("K-quants take Q8_K activations (kquants::dot)")
            }
        };
        for (acc, lane) in acc.iter_mut().zip(lanes) {
            *acc = scale.mul_add(lane, *acc);
        }
    }
    hsum8(acc) + summs
}

/// Dequantizes one row (an embedding lookup: exact, as ggml's `get_rows`).
pub fn dequantize_row(kind: WeightType, row: &[u8], out: &mut [f32]) {
    let size = kind.block_bytes();
    for (b, out) in row.chunks_exact(size).zip(out.chunks_exact_mut(QK)) {
        let d = half(b, 0);
        match kind {
            WeightType::Q4_0 => {
                for (o, q) in out.iter_mut().zip(nibbles(&b[2..18])) {
                    *o = (q as i32 - 8) as f32 * d;
                }
            }
            WeightType::Q4_1 => {
                let m = half(b, 2);
                for (o, q) in out.iter_mut().zip(nibbles(&b[4..20])) {
                    *o = (q as f32).mul_add(d, m);
                }
            }
            WeightType::Q5_0 => {
                for (o, q) in out.iter_mut().zip(q5_0_values(b)) {
                    *o = q as f32 * d;
                }
            }
            WeightType::Q8_0 => {
                for (o, q) in out.iter_mut().zip(&b[2..34]) {
                    *o = *q as i8 as f32 * d;
                }
            }
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => {
                unreachable!("K-quants dequantize in kquants")
            }
        }
    }
}

/// ggml's `ggml_vec_dot_f32` on AVX2: four 8-lane accumulators over steps of 32, folded
/// pairwise, then added within the lane with two horizontal adds; a scalar tail.
pub fn dot_f32_vec(x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time).
        return unsafe { x86::dot_f32_vec(x, y) };
    }
    dot_f32_vec_portable(x, y)
}

fn dot_f32_vec_portable(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let np = n & !31;
    let mut sum = [[0f32; 8]; 4];
    for i in (0..np).step_by(32) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let at = i + j * 8 + l;
                *a = x[at].mul_add(y[at], *a);
            }
        }
    }
    let mut r = [0f32; 8];
    for l in 0..8 {
        r[l] = (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]);
    }
    let t = [r[0] + r[4], r[1] + r[5], r[2] + r[6], r[3] + r[7]];
    let mut s = (t[0] + t[1]) + (t[2] + t[3]);
    for i in np..n {
        s = x[i].mul_add(y[i], s);
    }
    s
}

/// llamafile's tinyBLAS on AVX2 (ggml's GEMM for f32 with two or more columns): one
/// 8-lane accumulator per output, then [`hsum8`].
pub fn dot_f32_tiled(x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA are present (checked at run time).
        return unsafe { x86::dot_f32_tiled(x, y) };
    }
    dot_f32_tiled_portable(x, y)
}

fn dot_f32_tiled_portable(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc = [0f32; 8];
    for (xs, ys) in x[..n].chunks(8).zip(y[..n].chunks(8)) {
        for l in 0..xs.len() {
            acc[l] = xs[l].mul_add(ys[l], acc[l]);
        }
    }
    hsum8(acc)
}

/// ggml's vectorised e^x (`ggml_v_expf`), one lane: the same polynomial, scale tricks
/// and over/underflow handling.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits() << 23;
    let k = c(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    if n.abs() <= 126.0 {
        return k.mul_add(j, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7f00_0000));
    let s2 = c(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml's SwiGLU (`ggml_vec_swiglu_f32`): silu(gate) × up, silu(x) = x / (1 + e^(0−x)).
/// Lengths that are not a multiple of 8 end in libm's `expf`, as ggml's scalar tail.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let vectorised = gate.len() & !7;
    for (i, ((o, g), u)) in out.iter_mut().zip(gate).zip(up).enumerate() {
        let e = if i < vectorised {
            expf(0.0 - g)
        } else {
            (-g).exp()
        };
        *o = (g / (1.0 + e)) * u;
    }
}

/// ggml's `soft_max` on one row already scaled and masked (−∞ where masked): e^(x−max)
/// summed in f64 per chunk of 8, then scaled by the f32 of 1/Σ. The row's length must be
/// a multiple of 8 (ggml pads its KV view to 256).
pub fn softmax(row: &mut [f32]) {
    debug_assert!(row.len().is_multiple_of(8));
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f64;
    for chunk in row.chunks_exact_mut(8) {
        let mut v = [0f32; 8];
        for (v, x) in v.iter_mut().zip(chunk.iter_mut()) {
            *v = expf(*x - max);
            *x = *v;
        }
        sum += hsum8(v) as f64;
    }
    let scale = (1.0 / sum) as f32;
    for x in row.iter_mut() {
        *x *= scale;
    }
}

/// ggml's `rms_norm` fused with the weight: Σx² in f64, mean and 1/√(mean+ε) in f32,
/// then (x × scale) × w.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// Whether this CPU runs the AVX2 kernels (else the portable forms compute the same floats).
pub fn simd_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx2();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the AVX2 + FMA kernels can run (checked once, before any intrinsic runs).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::{ActBlock, WeightType};
    use std::arch::x86_64::*;

    /// ggml's `hsum_float_8` on a register (also used by `kquants`).
    #[inline(always)]
    pub(in crate::engine::local) unsafe fn hsum(acc: __m256) -> f32 {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        super::hsum8(lanes)
    }

    /// 32 nibbles (16 bytes at `p`) as bytes in element order.
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let q = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// Unsigned × signed bytes, summed by fours into 8 float lanes.
    #[inline(always)]
    unsafe fn us8_lanes(x: __m256i, y: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(x, y);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Signed × signed bytes, summed by fours into 8 float lanes.
    #[inline(always)]
    unsafe fn s8_lanes(x: __m256i, y: __m256i) -> __m256 {
        us8_lanes(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f32_vec(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let np = n & !31;
        let (px, py) = (x.as_ptr(), y.as_ptr());
        let mut s = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (j, acc) in s.iter_mut().enumerate() {
                let at = i + 8 * j;
                *acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(px.add(at)),
                    _mm256_loadu_ps(py.add(at)),
                    *acc,
                );
            }
        }
        let folded = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
        let mut r = [0f32; 8];
        _mm256_storeu_ps(r.as_mut_ptr(), folded);
        let t = [r[0] + r[4], r[1] + r[5], r[2] + r[6], r[3] + r[7]];
        let mut sum = (t[0] + t[1]) + (t[2] + t[3]);
        for i in np..n {
            sum = x[i].mul_add(y[i], sum);
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f32_tiled(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let full = n & !7;
        let (px, py) = (x.as_ptr(), y.as_ptr());
        let mut acc = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)), acc);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        for i in full..n {
            lanes[i - full] = x[i].mul_add(y[i], lanes[i - full]);
        }
        super::hsum8(lanes)
    }

    /// ggml's `bytes_from_bits_32`: bit j of the 32-bit word at `p` as byte j (0xff / 0).
    #[inline(always)]
    unsafe fn bytes_from_bits(p: *const u8) -> __m256i {
        let x32 = (p as *const u32).read_unaligned() as i32;
        let shuf = _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
        let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
        let bytes = _mm256_or_si256(bytes, bit_mask);
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }

    /// An f16 at `p` widened to f32 by the CPU (F16C), as ggml's `GGML_CPU_FP16_TO_FP32`.
    #[inline(always)]
    unsafe fn half_at(p: *const u8) -> f32 {
        let bits = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// One block of one row into its accumulator: the body of ggml's `vec_dot` loops.
    #[inline(always)]
    unsafe fn block_step(
        kind: WeightType,
        b: *const u8,
        a: &ActBlock,
        y: __m256i,
        acc: &mut __m256,
        summs: &mut f32,
    ) {
        let scale = _mm256_set1_ps(half_at(b) * a.d);
        let lanes = match kind {
            WeightType::Q4_0 => {
                s8_lanes(_mm256_sub_epi8(nibbles(b.add(2)), _mm256_set1_epi8(8)), y)
            }
            WeightType::Q4_1 => {
                *summs = half_at(b.add(2)).mul_add(a.s, *summs);
                us8_lanes(nibbles(b.add(4)), y)
            }
            WeightType::Q5_0 => {
                let high =
                    _mm256_andnot_si256(bytes_from_bits(b.add(2)), _mm256_set1_epi8(0xf0u8 as i8));
                s8_lanes(_mm256_or_si256(nibbles(b.add(6)), high), y)
            }
            WeightType::Q8_0 => s8_lanes(_mm256_loadu_si256(b.add(2) as *const __m256i), y),
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => {
                unreachable!("K-quants take Q8_K activations (kquants::dot)")
            }
        };
        *acc = _mm256_fmadd_ps(scale, lanes, *acc);
    }

    /// `R` rows (each `acts.len()` blocks, consecutive from `rows`) against one
    /// activation row.
    #[inline(always)]
    unsafe fn dot_n<const R: usize>(
        kind: WeightType,
        rows: *const u8,
        n: usize,
        acts: &[ActBlock],
    ) -> [f32; R] {
        let size = kind.block_bytes();
        let mut acc = [_mm256_setzero_ps(); R];
        let mut summs = [0f32; R];
        for (i, a) in acts.iter().enumerate() {
            let y = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
            for r in 0..R {
                let b = rows.add(r * n + i * size);
                block_step(kind, b, a, y, &mut acc[r], &mut summs[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]) + summs[r];
        }
        out
    }

    #[inline(always)]
    unsafe fn dot_rows_of(
        kind: WeightType,
        rows: &[u8],
        acts: &[ActBlock],
        out: &mut [f32],
        grouped: bool,
    ) {
        let n = acts.len() * kind.block_bytes();
        let base = rows.as_ptr();
        let mut fours = out.chunks_exact_mut(if grouped { 4 } else { usize::MAX });
        let mut r = 0;
        for four in &mut fours {
            four.copy_from_slice(&dot_n::<4>(kind, base.add(r * n), n, acts));
            r += 4;
        }
        for o in fours.into_remainder() {
            *o = dot_n::<1>(kind, base.add(r * n), n, acts)[0];
            r += 1;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows(
        kind: WeightType,
        rows: &[u8],
        acts: &[ActBlock],
        out: &mut [f32],
        grouped: bool,
    ) {
        // One monomorphic body per type, so the per-block match is resolved at compile time.
        match kind {
            WeightType::Q4_0 => dot_rows_of(WeightType::Q4_0, rows, acts, out, grouped),
            WeightType::Q4_1 => dot_rows_of(WeightType::Q4_1, rows, acts, out, grouped),
            WeightType::Q5_0 => dot_rows_of(WeightType::Q5_0, rows, acts, out, grouped),
            WeightType::Q8_0 => dot_rows_of(WeightType::Q8_0, rows, acts, out, grouped),
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => {
                unreachable!("K-quants take Q8_K activations (kquants::dot)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (no RNG crate needed for kernels tests).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    fn blocks(kind: WeightType, n_blocks: usize, seed: u64) -> Vec<u8> {
        let raw = noise(n_blocks * kind.block_bytes(), seed);
        let mut out: Vec<u8> = raw.iter().map(|v| (v.to_bits() >> 7) as u8).collect();
        // Keep the f16 scales finite and small.
        for b in out.chunks_exact_mut(kind.block_bytes()) {
            b[..2].copy_from_slice(&f16::from_f32(0.01).to_bits().to_le_bytes());
            if kind == WeightType::Q4_1 {
                b[2..4].copy_from_slice(&f16::from_f32(-0.07).to_bits().to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn simd_and_portable_dots_are_bit_identical() {
        for kind in [
            WeightType::Q4_0,
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q8_0,
        ] {
            for seed in 0..20 {
                let row = blocks(kind, 48, seed);
                let mut acts = Vec::new();
                quantize_row(&noise(48 * QK, seed + 100), &mut acts);
                let a = dot(kind, &row, &acts);
                let b = dot_portable(kind, &row, &acts);
                assert_eq!(a.to_bits(), b.to_bits(), "{kind:?} seed {seed}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn grouped_row_dots_equal_single_row_dots() {
        for kind in [
            WeightType::Q4_0,
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q8_0,
        ] {
            // Seven rows: a group of four and three single ones.
            let rows = blocks(kind, 7 * 20, 3);
            let mut acts = Vec::new();
            quantize_row(&noise(20 * QK, 4), &mut acts);
            for grouped in [false, true] {
                let mut out = [0f32; 7];
                dot_rows(kind, &rows, &acts, &mut out, grouped);
                let n = 20 * kind.block_bytes();
                for (r, got) in out.iter().enumerate() {
                    let one = dot(kind, &rows[r * n..][..n], &acts);
                    assert_eq!(got.to_bits(), one.to_bits(), "{kind:?} row {r}");
                }
            }
        }
    }

    #[test]
    fn simd_and_portable_f32_dots_are_bit_identical() {
        for n in [8, 64, 100, 320, 333] {
            let (x, y) = (noise(n, n as u64), noise(n, 7 * n as u64));
            assert_eq!(
                dot_f32_vec(&x, &y).to_bits(),
                dot_f32_vec_portable(&x, &y).to_bits()
            );
            assert_eq!(
                dot_f32_tiled(&x, &y).to_bits(),
                dot_f32_tiled_portable(&x, &y).to_bits()
            );
        }
    }

    #[test]
    fn quantization_rounds_half_to_even_and_keeps_the_sum() {
        // amax 127 makes the multiplier exactly 1: 2.5 → 2, 3.5 → 4, −2.5 → −2.
        let mut x = vec![0f32; QK];
        x[..4].copy_from_slice(&[127.0, 2.5, 3.5, -2.5]);
        let mut out = Vec::new();
        quantize_row(&x, &mut out);
        assert_eq!(&out[0].qs[..4], &[127, 2, 4, -2]);
        assert_eq!(out[0].d, 1.0);
        assert_eq!(out[0].s, 131.0);
    }

    #[test]
    fn vectorised_exp_is_close_to_libm_and_handles_the_ends() {
        for x in noise(2000, 7).iter().map(|v| v * 20.0) {
            let (a, b) = (expf(x), x.exp());
            assert!(((a - b) / b).abs() < 4e-7, "{x}: {a} vs {b}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(0.0), 1.0);
        assert!(expf(100.0).is_infinite());
    }

    #[test]
    fn softmax_sums_to_one_and_zeroes_masked_entries() {
        let mut row = noise(24, 3);
        row[20..].fill(f32::NEG_INFINITY);
        softmax(&mut row);
        assert!(row[20..].iter().all(|&p| p == 0.0));
        let total: f32 = row.iter().sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }

    #[test]
    fn f32_dots_agree_with_a_plain_sum() {
        let (x, y) = (noise(100, 1), noise(100, 2));
        let plain: f64 = x.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
        for s in [dot_f32_vec(&x, &y), dot_f32_tiled(&x, &y)] {
            assert!((s as f64 - plain).abs() < 1e-4, "{s} vs {plain}");
        }
    }
}
