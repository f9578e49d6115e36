//! Multi-head self-attention for encoder models, straight from a fused QKV projection
//! and written in the (batch, seq, hidden) layout the next layer reads. candle's path
//! permutes the projection into heads, runs two batched products per (sequence, head)
//! and transposes back: copies and call overheads that cost more than the arithmetic at
//! sentence lengths. Every score and output element is one fused multiply-add chain in a
//! fixed order (over head_dim, then over keys), so the floats do not depend on how the
//! loops are blocked or on the CPU's vector width. Other devices and dtypes run candle's
//! ops.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use crate::engine::candle::kernels::{contiguous_f32, exp};

/// `qkv`: (batch, seq, 3·hidden), each token's queries, keys then values with the heads
/// side by side, queries already scaled by 1/sqrt(head_dim). `mask`: (batch, seq)
/// additive (0 for a token, a large negative for padding). Returns (batch, seq, hidden).
pub fn self_attention(qkv: &Tensor, mask: &Tensor, heads: usize) -> Result<Tensor> {
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 && mask.dtype() == DType::F32 {
        return qkv
            .contiguous()?
            .apply_op2_no_bwd(&mask.contiguous()?, &SelfAttention { heads });
    }
    let (batch, seq, width) = qkv.dims3()?;
    let hidden = width / 3;
    // (batch, seq, 3, heads, head_dim) -> (3, batch, heads, seq, head_dim)
    let qkv = qkv
        .reshape((batch, seq, 3, heads, hidden / heads))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let mask = mask.reshape((batch, 1, 1, seq))?.to_dtype(q.dtype())?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
    candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((batch, seq, hidden))
}

struct SelfAttention {
    heads: usize,
}

/// Values computed side by side (one AVX2 register).
const LANES: usize = 8;
/// Queries scored together, so each loaded row of keys feeds that many chains.
const QUERIES: usize = 4;
/// Output vectors accumulated together, so the chains over keys run interleaved.
const CHUNKS: usize = 4;

impl CustomOp2 for SelfAttention {
    fn name(&self) -> &'static str {
        "assay-self-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(s1, l1, self.name())?;
        let mask = contiguous_f32(s2, l2, self.name())?;
        let dims = l1.shape().dims();
        let [batch, seq, width] = dims[..] else {
            candle_core::bail!("{}: qkv must be 3-d, got {:?}", self.name(), dims)
        };
        let hidden = width / 3;
        if width % 3 != 0 || self.heads == 0 || hidden % self.heads != 0 {
            candle_core::bail!(
                "{}: width {width} is not 3 × a multiple of {} heads",
                self.name(),
                self.heads
            );
        }
        if mask.len() != batch * seq {
            candle_core::bail!("{}: mask must be ({batch}, {seq})", self.name());
        }
        let mut out = vec![0f32; batch * seq * hidden];
        let mut scratch = Scratch::new(seq, hidden / self.heads);
        for b in 0..batch {
            let rows = &qkv[b * seq * width..][..seq * width];
            let bias = &mask[b * seq..][..seq];
            let out = &mut out[b * seq * hidden..][..seq * hidden];
            for h in 0..self.heads {
                scratch.head(rows, bias, out, h, hidden);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, seq, hidden))))
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
    fn new(seq: usize, head_dim: usize) -> Scratch {
        let stride = seq.next_multiple_of(LANES);
        Scratch {
            seq,
            head_dim,
            keys: vec![0f32; head_dim * stride],
            stride,
            probs: vec![0f32; seq.next_multiple_of(QUERIES) * stride],
        }
    }

    /// Attention of head `h` over one sequence: `rows` (seq, 3·hidden) in, its slice of
    /// `out` (seq, hidden) written.
    fn head(&mut self, rows: &[f32], bias: &[f32], out: &mut [f32], h: usize, hidden: usize) {
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
                let acc = scores::<{ 2 * LANES }>(&self.keys, stride, c, &q);
                self.store_scores(i0, c, &acc);
                c += 2 * LANES;
            }
            if c < stride {
                let acc = scores::<LANES>(&self.keys, stride, c, &q);
                self.store_scores(i0, c, &acc);
            }
        }
        for i in 0..seq {
            softmax_in_place(&mut self.probs[i * stride..][..seq], bias);
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

/// softmax(row + bias) in place.
fn softmax_in_place(row: &mut [f32], bias: &[f32]) {
    let mut max = f32::NEG_INFINITY;
    for (d, &m) in row.iter_mut().zip(bias) {
        *d += m;
        max = max.max(*d);
    }
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

    /// The textbook form: heads split out, softmax(QKᵀ + mask)·V, heads joined back.
    fn reference(qkv: &Tensor, mask: &Tensor, heads: usize) -> Vec<f32> {
        let (batch, seq, width) = qkv.dims3().unwrap();
        let hidden = width / 3;
        let split = |at: usize| {
            qkv.narrow(2, at, hidden)
                .unwrap()
                .reshape((batch, seq, heads, hidden / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(hidden), split(2 * hidden));
        let scores = q
            .matmul(&k.t().unwrap())
            .unwrap()
            .broadcast_add(&mask.reshape((batch, 1, 1, seq)).unwrap())
            .unwrap();
        candle_nn::ops::softmax(&scores, D::Minus1)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn matches_the_textbook_form() {
        let dev = Device::Cpu;
        // seq 7: a partial group of queries, an odd last query and one partial vector of
        // keys; seq 19: a pair of key vectors, then a last single one. Head sizes 4 (no
        // whole output chunk), 40 (one chunk and a remainder) and 64 (two chunks). The
        // first sequence ends in two padding tokens.
        for seq in [7, 19] {
            for (heads, head_dim) in [(3, 4), (2, 40), (2, 64)] {
                let hidden = heads * head_dim;
                let qkv = Tensor::randn(0f32, 1.0, (2, seq, 3 * hidden), &dev).unwrap();
                let mut mask = vec![0f32; 2 * seq];
                mask[seq - 2..seq].fill(-1e9);
                let mask = Tensor::from_vec(mask, (2, seq), &dev).unwrap();
                let ours: Vec<f32> = self_attention(&qkv, &mask, heads)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let theirs = reference(&qkv, &mask, heads);
                assert_eq!(ours.len(), theirs.len());
                for (a, b) in ours.iter().zip(&theirs) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "seq {seq}, heads {heads}×{head_dim}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_shapes_that_do_not_split_into_heads() {
        let dev = Device::Cpu;
        let mask = Tensor::zeros((1, 3), DType::F32, &dev).unwrap();
        let qkv = Tensor::zeros((1, 3, 30), DType::F32, &dev).unwrap();
        assert!(self_attention(&qkv, &mask, 4).is_err());
        let wrong_mask = Tensor::zeros((1, 4), DType::F32, &dev).unwrap();
        let qkv = Tensor::zeros((1, 3, 24), DType::F32, &dev).unwrap();
        assert!(self_attention(&qkv, &wrong_mask, 2).is_err());
    }
}
