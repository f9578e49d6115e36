//! Multi-head self-attention for encoder models, straight from a fused QKV projection
//! of unpadded sequences laid end to end, written in the (tokens, hidden) layout the
//! next layer reads. candle's path permutes the projection into heads, runs two batched
//! products per (sequence, head) and transposes back: copies and call overheads that
//! cost more than the arithmetic at sentence lengths. Without padding there is no mask:
//! each sequence attends over its own tokens only. Every score and output element is one
//! fused multiply-add chain in a fixed order (over head_dim, then over keys), so the
//! floats do not depend on how the loops are blocked or on the CPU's vector width. Other
//! devices and dtypes run candle's ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use crate::engine::candle::kernels::{contiguous_f32, exp};

/// `qkv`: (tokens, 3·hidden), the sequences of `lengths` end to end, each token's
/// queries, keys then values with the heads side by side, queries already scaled by
/// 1/sqrt(head_dim). Returns (tokens, hidden).
pub fn self_attention(qkv: &Tensor, lengths: &[usize], heads: usize) -> Result<Tensor> {
    let op = SelfAttention {
        heads,
        lengths: lengths.to_vec(),
    };
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
        return qkv.contiguous()?.apply_op1_no_bwd(&op);
    }
    let (tokens, width) = qkv.dims2()?;
    op.check(tokens, width)?;
    let hidden = width / 3;
    let mut outputs = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for &len in lengths {
        // (len, 3, heads, head_dim) -> (3, heads, len, head_dim)
        let qkv = qkv
            .narrow(0, at, len)?
            .reshape((len, 3, heads, hidden / heads))?
            .permute((1, 2, 0, 3))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?.contiguous()?)?;
        outputs.push(probs.matmul(&v)?.transpose(0, 1)?.reshape((len, hidden))?);
        at += len;
    }
    Tensor::cat(&outputs, 0)
}

struct SelfAttention {
    heads: usize,
    lengths: Vec<usize>,
}

/// Values computed side by side (one AVX2 register).
const LANES: usize = 8;
/// Queries scored together, so each loaded row of keys feeds that many chains.
const QUERIES: usize = 4;
/// Output vectors accumulated together, so the chains over keys run interleaved.
const CHUNKS: usize = 4;

impl SelfAttention {
    fn check(&self, tokens: usize, width: usize) -> Result<()> {
        let hidden = width / 3;
        if !width.is_multiple_of(3) || self.heads == 0 || !hidden.is_multiple_of(self.heads) {
            candle_core::bail!(
                "{}: width {width} is not 3 × a multiple of {} heads",
                self.name(),
                self.heads
            );
        }
        let total: usize = self.lengths.iter().sum();
        if total != tokens {
            candle_core::bail!(
                "{}: sequence lengths add up to {total}, not the {tokens} tokens given",
                self.name()
            );
        }
        Ok(())
    }
}

impl CustomOp1 for SelfAttention {
    fn name(&self) -> &'static str {
        "assay-self-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(storage, layout, self.name())?;
        let dims = layout.shape().dims();
        let [tokens, width] = dims[..] else {
            candle_core::bail!("{}: qkv must be 2-d, got {:?}", self.name(), dims)
        };
        self.check(tokens, width)?;
        let hidden = width / 3;
        let mut out = vec![0f32; tokens * hidden];
        let longest = self.lengths.iter().copied().max().unwrap_or(0);
        let mut scratch = Scratch::new(longest, hidden / self.heads);
        let mut at = 0;
        for &len in &self.lengths {
            let rows = &qkv[at * width..][..len * width];
            let out = &mut out[at * hidden..][..len * hidden];
            scratch.resize(len);
            for h in 0..self.heads {
                scratch.head(rows, out, h, hidden);
            }
            at += len;
        }
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// One head's working space, reused across heads and sequences.
struct Scratch {
    seq: usize,
    head_dim: usize,
    /// Keys transposed (head_dim × stride), each row padded with zeros to whole vectors.
    keys: Vec<f32>,
    stride: usize,
    /// Probabilities, one row of `stride` per query.
    probs: Vec<f32>,
}

impl Scratch {
    /// Room for sequences of up to `longest` tokens.
    fn new(longest: usize, head_dim: usize) -> Scratch {
        let stride = longest.next_multiple_of(LANES);
        Scratch {
            seq: longest,
            head_dim,
            keys: vec![0f32; head_dim * stride],
            stride,
            probs: vec![0f32; longest.next_multiple_of(QUERIES) * stride],
        }
    }

    /// Lays the space out for a sequence of `seq` tokens (no longer than the longest).
    /// Key columns beyond `seq` are scored with the rest of their vector and not used;
    /// they hold zeros or an earlier sequence's keys, finite either way.
    fn resize(&mut self, seq: usize) {
        self.seq = seq;
        self.stride = seq.next_multiple_of(LANES);
    }

    /// Attention of head `h` over one sequence: `rows` (seq, 3·hidden) in, its slice of
    /// `out` (seq, hidden) written.
    fn head(&mut self, rows: &[f32], out: &mut [f32], h: usize, hidden: usize) {
        let (seq, d, stride) = (self.seq, self.head_dim, self.stride);
        let width = 3 * hidden;
        let (q_at, k_at, v_at) = (h * d, hidden + h * d, 2 * hidden + h * d);
        for j in 0..seq {
            for (dd, &k) in rows[j * width + k_at..][..d].iter().enumerate() {
                self.keys[dd * stride + j] = k;
            }
        }
        // Scores, QUERIES queries × 2·LANES keys at a time (LANES for a last odd
        // vector); each a chain over head_dim. A last partial group of queries repeats
        // the last one, and its extra rows are not used.
        for i0 in (0..seq).step_by(QUERIES) {
            let q: [&[f32]; QUERIES] =
                std::array::from_fn(|r| &rows[(i0 + r).min(seq - 1) * width + q_at..][..d]);
            let mut c = 0;
            while c + 2 * LANES <= stride {
                let acc = scores::<{ 2 * LANES }>(&self.keys[..d * stride], stride, c, &q);
                self.store_scores(i0, c, &acc);
                c += 2 * LANES;
            }
            if c < stride {
                let acc = scores::<LANES>(&self.keys[..d * stride], stride, c, &q);
                self.store_scores(i0, c, &acc);
            }
        }
        for i in 0..seq {
            softmax_in_place(&mut self.probs[i * stride..][..seq]);
        }
        // Outputs, two queries × CHUNKS × LANES values at a time; each a chain over keys.
        // For an odd last query the pair repeats it and writes it once.
        for i0 in (0..seq).step_by(2) {
            let i1 = (i0 + 1).min(seq - 1);
            let p0 = &self.probs[i0 * stride..][..seq];
            let p1 = &self.probs[i1 * stride..][..seq];
            let mut dd = 0;
            while dd + CHUNKS * LANES <= d {
                let mut acc = [[0f32; CHUNKS * LANES]; 2];
                for (j, (&a, &b)) in p0.iter().zip(p1).enumerate() {
                    let v = &rows[j * width + v_at + dd..][..CHUNKS * LANES];
                    for l in 0..CHUNKS * LANES {
                        acc[0][l] = a.mul_add(v[l], acc[0][l]);
                        acc[1][l] = b.mul_add(v[l], acc[1][l]);
                    }
                }
                out[i0 * hidden + h * d + dd..][..CHUNKS * LANES].copy_from_slice(&acc[0]);
                out[i1 * hidden + h * d + dd..][..CHUNKS * LANES].copy_from_slice(&acc[1]);
                dd += CHUNKS * LANES;
            }
            for dd in dd..d {
                for (i, p) in [(i0, p0), (i1, p1)] {
                    let mut acc = 0f32;
                    for (j, &pj) in p.iter().enumerate() {
                        acc = pj.mul_add(rows[j * width + v_at + dd], acc);
                    }
                    out[i * hidden + h * d + dd] = acc;
                }
            }
        }
    }

    fn store_scores<const W: usize>(&mut self, i0: usize, c: usize, acc: &[[f32; W]; QUERIES]) {
        for (r, acc) in acc.iter().enumerate() {
            self.probs[(i0 + r) * self.stride + c..][..W].copy_from_slice(acc);
        }
    }
}

/// The scores of QUERIES queries against the W keys from column `c` of the transposed
/// keys (head_dim rows of `stride`), each a chain over head_dim in order.
#[inline(always)]
fn scores<const W: usize>(
    keys: &[f32],
    stride: usize,
    c: usize,
    q: &[&[f32]; QUERIES],
) -> [[f32; W]; QUERIES] {
    let mut acc = [[0f32; W]; QUERIES];
    for (dd, keys) in keys.chunks_exact(stride).enumerate() {
        let k = &keys[c..c + W];
        for r in 0..QUERIES {
            for l in 0..W {
                acc[r][l] = q[r][dd].mul_add(k[l], acc[r][l]);
            }
        }
    }
    acc
}

/// softmax(row) in place.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Exponentials first (a loop that vectorises), then the sum in order.
    row.iter_mut().for_each(|d| *d = exp(*d - max));
    let mut sum = 0.0;
    for d in row.iter() {
        sum += *d;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|d| *d *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// The textbook form, one sequence at a time: heads split out, softmax(QKᵀ)·V, heads
    /// joined back.
    fn reference(qkv: &Tensor, lengths: &[usize], heads: usize) -> Vec<f32> {
        let hidden = qkv.dim(1).unwrap() / 3;
        let mut out = Vec::new();
        let mut at = 0;
        for &len in lengths {
            let rows = qkv.narrow(0, at, len).unwrap();
            let split = |from: usize| {
                rows.narrow(1, from, hidden)
                    .unwrap()
                    .reshape((len, heads, hidden / heads))
                    .unwrap()
                    .transpose(0, 1)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let (q, k, v) = (split(0), split(hidden), split(2 * hidden));
            let scores = q.matmul(&k.t().unwrap()).unwrap();
            let context: Vec<f32> = candle_nn::ops::softmax(&scores, D::Minus1)
                .unwrap()
                .matmul(&v)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            out.extend(context);
            at += len;
        }
        out
    }

    #[test]
    fn matches_the_textbook_form() {
        let dev = Device::Cpu;
        // Lengths 7 and 5: a partial group of queries, an odd last query and one partial
        // vector of keys; 19 and 17: a pair of key vectors, then a last single one; the
        // shorter second sequence reuses the scratch laid out for the longer first. Head
        // sizes 4 (no whole output chunk), 40 (one chunk and a remainder) and 64 (two).
        for lengths in [[7, 5], [19, 17], [3, 19]] {
            for (heads, head_dim) in [(3, 4), (2, 40), (2, 64)] {
                let hidden = heads * head_dim;
                let tokens: usize = lengths.iter().sum();
                let qkv = Tensor::randn(0f32, 1.0, (tokens, 3 * hidden), &dev).unwrap();
                let ours: Vec<f32> = self_attention(&qkv, &lengths, heads)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let theirs = reference(&qkv, &lengths, heads);
                assert_eq!(ours.len(), theirs.len());
                for (a, b) in ours.iter().zip(&theirs) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "lengths {lengths:?}, heads {heads}×{head_dim}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_shapes_that_do_not_split_into_heads() {
        let dev = Device::Cpu;
        let qkv = Tensor::zeros((3, 30), DType::F32, &dev).unwrap();
        assert!(self_attention(&qkv, &[3], 4).is_err());
        let qkv = Tensor::zeros((3, 24), DType::F32, &dev).unwrap();
        assert!(self_attention(&qkv, &[2, 2], 2).is_err());
    }
}
