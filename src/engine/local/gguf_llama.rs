//! A llama-family or Gemma 3 GGUF model (Llama, Mistral, SmolLM, Gemma 3, … with Q4_0 /
//! Q4_1 / Q5_0 / Q8_0 or Q4_K / Q5_K / Q6_K weights) run on the CPU with llama.cpp's own
//! arithmetic (see `ggml_ops` and `kquants`): the floats equal those of llama-server run
//! with an f32 KV cache and without flash attention (`-fa off -ctk f32 -ctv f32`), which is
//! also the only llama.cpp configuration whose output does not depend on its thread count.
//!
//! Following ggml's graph: RMS norm; Q/K/V projections on activations quantized per
//! matmul (Q8_0/Q8_1 for 32-weight blocks, Q8_K for K-quants); RoPE from ggml's cos/sin
//! cache, on adjacent pairs (llama) or split halves (Gemma's NeoX form); scores by ggml's
//! f32 vector dot, scaled softmax; values weighted by llamafile's tiled GEMM during a prompt
//! (two or more tokens) and by the vector dot for single tokens; SwiGLU (llama) or GeGLU
//! (Gemma); a prompt runs in ubatches of 512 tokens; logits for the last token only.
//!
//! Gemma 3 adds: the embedding scaled by √d, RMS norms of each head's Q and K, norms after
//! attention and after the feed-forward block, Q scaled before the scores, and sliding-window
//! layers (five in six) that see only the last `sliding_window` positions with their own
//! RoPE base.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::GgmlDType;

use super::ggml_gelu;
use super::ggml_ops::{self as ops, ActBlock, WeightType};
use super::kquants::{self, Q8K};
use super::workers;
use crate::error::{Error, Result};

/// llama.cpp's default ubatch: a longer prompt runs in pieces of this many tokens.
const UBATCH: usize = 512;

/// Why a GGUF file cannot take the native path (the caller then uses candle's model).
pub type Unsupported = String;

/// A weight matrix in its GGUF encoding: `rows` rows of `cols` weights.
struct QMatrix {
    kind: WeightType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl QMatrix {
    fn blocks(&self) -> usize {
        self.cols / self.kind.block_weights()
    }

    fn row_bytes(&self) -> usize {
        self.blocks() * self.kind.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// Whether llama.cpp repacks this matrix on AVX2 (`q4_K_8x8`; Q4_0's repacking is not
    /// reproduced here) and so multiplies it in the repacked kernels' order.
    fn repacked(&self) -> bool {
        self.kind == WeightType::Q4K && self.rows.is_multiple_of(8)
    }

    /// Row r · activation row t, in the arithmetic llama.cpp uses for this weight type.
    fn dot(&self, r: usize, acts: &Acts, t: usize) -> f32 {
        let blocks = self.blocks();
        if self.kind.uses_q8k() {
            let repacked = self.repacked();
            let q8k = if repacked { &acts.q8k_fours } else { &acts.q8k };
            kquants::dot(
                self.kind,
                self.row(r),
                &q8k[t * blocks..][..blocks],
                repacked,
            )
        } else {
            ops::dot(self.kind, self.row(r), &acts.q8[t * blocks..][..blocks])
        }
    }

    /// `dst[i]` = row r0 + i · activation row t; `grouped` as in [`ops::dot_rows`] (the
    /// same floats either way).
    fn dots(&self, r0: usize, acts: &Acts, t: usize, dst: &mut [f32], grouped: bool) {
        if self.kind.uses_q8k() {
            for (i, o) in dst.iter_mut().enumerate() {
                *o = self.dot(r0 + i, acts, t);
            }
            return;
        }
        let blocks = self.blocks();
        let a = &acts.q8[t * blocks..][..blocks];
        ops::dot_rows(
            self.kind,
            &self.data[r0 * self.row_bytes()..],
            a,
            dst,
            grouped,
        );
    }

    /// `out[t][r]` = row r · activation row t, for `n` activation rows (ggml's mul_mat;
    /// each output is one whole dot product, so thread splits do not change it).
    fn matmul(&self, acts: &Acts, n: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(n * self.rows, 0.0);
        if n == 1 {
            fill(out, 16, |r0, part| self.dots(r0, acts, 0, part, false));
            return;
        }
        // Rows outermost so each weight row is read once per prompt; transposed after.
        let mut by_row = vec![0f32; n * self.rows];
        workers::for_each_chunk_mut(&mut by_row, n * 16, |c, chunk| {
            let rows = chunk.len() / n;
            let mut four = [0f32; 4];
            for g in (0..rows).step_by(4) {
                let k = (rows - g).min(4);
                for t in 0..n {
                    self.dots(c * 16 + g, acts, t, &mut four[..k], true);
                    for (i, v) in four[..k].iter().enumerate() {
                        chunk[(g + i) * n + t] = *v;
                    }
                }
            }
        });
        for (r, per_row) in by_row.chunks(n).enumerate() {
            for (t, v) in per_row.iter().enumerate() {
                out[t * self.rows + r] = *v;
            }
        }
    }
}

/// Several products of the same activations. A single token's are one parallel pass over
/// all their rows: each parallel step's hand-off costs about as much as a small product.
fn matmuls(products: &mut [(&QMatrix, &mut Vec<f32>)], acts: &Acts, n: usize) {
    if n > 1 || workers::threads() == 1 {
        for (m, out) in products.iter_mut() {
            m.matmul(acts, n, out);
        }
        return;
    }
    let mats: Vec<&QMatrix> = products.iter().map(|(m, _)| *m).collect();
    let total: usize = mats.iter().map(|m| m.rows).sum();
    let mut all = vec![0f32; total];
    fill(&mut all, 16, |start, part| {
        // The part may span the end of one matrix and the start of the next.
        let mut done = 0;
        while done < part.len() {
            let mut r = start + done;
            let mut m = mats[0];
            for candidate in &mats {
                m = candidate;
                if r < m.rows {
                    break;
                }
                r -= m.rows;
            }
            let len = (m.rows - r).min(part.len() - done);
            m.dots(r, acts, 0, &mut part[done..done + len], false);
            done += len;
        }
    });
    let mut rest = &all[..];
    for (m, out) in products.iter_mut() {
        let (mine, tail) = rest.split_at(m.rows);
        out.clear();
        out.extend_from_slice(mine);
        rest = tail;
    }
}

/// `f(start, part)` fills each part of `out` (indices `start..start + part.len()`), in
/// parallel parts (a few per thread, at least `chunk` long, multiples of 4) when more than
/// one thread is configured.
fn fill(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let threads = workers::threads();
    if threads == 1 {
        f(0, out);
        return;
    }
    let chunk = out
        .len()
        .div_ceil(4 * threads)
        .max(chunk)
        .next_multiple_of(4);
    workers::for_each_chunk_mut(out, chunk, |c, part| f(c * chunk, part));
}

/// One row of activations (or several, row after row) quantized for the matrices that
/// read it: ggml quantizes a matmul's input to its weight type's `vec_dot_type`, and ahead
/// of a repacked Q4_K matrix a prompt's rows go in groups of four.
#[derive(Default)]
struct Acts {
    q8: Vec<ActBlock>,
    q8k: Vec<Q8K>,
    q8k_fours: Vec<Q8K>,
}

impl Acts {
    fn quantize(&mut self, x: &[f32], width: usize, readers: &[&QMatrix]) {
        self.q8.clear();
        self.q8k.clear();
        self.q8k_fours.clear();
        if readers.iter().any(|m| !m.kind.uses_q8k()) {
            quantize_rows(x, width, &mut self.q8);
        }
        if readers.iter().any(|m| m.kind.uses_q8k() && !m.repacked()) {
            for row in x.chunks(width) {
                kquants::quantize_row_q8k(row, &mut self.q8k);
            }
        }
        if readers.iter().any(|m| m.repacked()) {
            kquants::quantize_rows_q8k_in_fours(x, width, &mut self.q8k_fours);
        }
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
    /// Gemma: RMS norm weights of each head's Q and K, and the norms after attention and
    /// after the feed-forward block.
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    post_ffn_norm: Option<Vec<f32>>,
    /// Sees only the last `Config::window` positions (Gemma's local layers).
    sliding: bool,
}

/// What differs between the architectures this path runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// llama, mistral: adjacent-pair RoPE, SwiGLU.
    Llama,
    /// gemma3: split-half RoPE, GeGLU, extra norms, scaled embedding, sliding windows.
    Gemma3,
}

#[derive(Clone, Debug)]
struct Config {
    family: Family,
    embd: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    rope_base: f32,
    /// RoPE base of the sliding-window layers.
    rope_base_local: f32,
    /// Positions a sliding-window layer sees (0: none slide).
    window: usize,
    /// Gemma multiplies Q by this before the scores (llama.cpp's `f_attention_scale`) and
    /// scales the scores by 1; llama scales the scores by 1/√d.
    q_scale: Option<f32>,
}

/// Per layer: K as [kv head][position][dim], V transposed as [kv head][dim][position]
/// (ggml's layout without flash attention), both f32.
#[derive(Default)]
struct KvCache {
    capacity: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

pub struct GgufLlama {
    cfg: Config,
    embed: QMatrix,
    /// `None`: the output layer is the embedding matrix (tied weights).
    output: Option<QMatrix>,
    output_norm: Vec<f32>,
    rope_factors: Option<Vec<f32>>,
    layers: Vec<Layer>,
    cache: KvCache,
}

impl GgufLlama {
    /// Reads a GGUF of architecture `arch` (llama, mistral or gemma3: its metadata prefix)
    /// whose weights this path handles; `Ok(Err(why))` when it does not (other
    /// quantizations, experts, rope scaling, logit soft-capping).
    pub fn load<R: Read + Seek>(
        content: &Content,
        file: &mut R,
        arch: &str,
        location: &str,
    ) -> Result<std::result::Result<Self, Unsupported>> {
        let meta = &content.metadata;
        let key = |k: &str| format!("{arch}.{k}");
        let uint = |k: &str| meta.get(&key(k)).and_then(|v| v.to_u32().ok());
        let float = |k: &str| meta.get(&key(k)).and_then(|v| v.to_f32().ok());
        let missing = |k: &str| Error::model(location, format!("GGUF metadata lacks `{}`", key(k)));
        let family = match arch {
            "gemma3" => Family::Gemma3,
            "llama" | "mistral" => Family::Llama,
            other => return Ok(Err(format!("architecture `{other}`"))),
        };
        if uint("expert_count").unwrap_or(0) > 0 {
            return Ok(Err("mixture of experts".into()));
        }
        if let Some(kind) = meta
            .get(&key("rope.scaling.type"))
            .and_then(|v| v.to_string().ok())
        {
            if kind != "none" {
                return Ok(Err(format!("rope scaling `{kind}`")));
            }
        }
        if float("final_logit_softcapping").is_some_and(|c| c != 0.0) {
            return Ok(Err("final logit soft-capping".into()));
        }
        let embd = uint("embedding_length").ok_or_else(|| missing("embedding_length"))? as usize;
        let heads =
            uint("attention.head_count").ok_or_else(|| missing("attention.head_count"))? as usize;
        if heads == 0 {
            return Err(Error::model(location, "attention.head_count is 0"));
        }
        // Gemma's heads are wider than embedding_length / head_count: key_length says.
        let head_dim = uint("attention.key_length").map_or(embd / heads, |d| d as usize);
        if uint("rope.dimension_count").is_some_and(|d| d as usize != head_dim)
            || uint("attention.value_length").is_some_and(|d| d as usize != head_dim)
            || !head_dim.is_multiple_of(2)
        {
            return Ok(Err("partial rotary or unusual head size".into()));
        }
        let window = match family {
            Family::Gemma3 => uint("attention.sliding_window").unwrap_or(0) as usize,
            Family::Llama => 0,
        };
        if meta.contains_key(&key("attention.sliding_window_pattern")) {
            return Ok(Err("a sliding-window pattern other than Gemma 3's".into()));
        }
        let layers = uint("block_count").ok_or_else(|| missing("block_count"))? as usize;
        let rope_base = float("rope.freq_base").unwrap_or(10_000.0);
        let cfg = Config {
            family,
            embd,
            layers,
            heads,
            kv_heads: uint("attention.head_count_kv").map_or(heads, |n| n as usize),
            head_dim,
            eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_base,
            // llama.cpp's default for the local layers' base when the file names none.
            rope_base_local: float("rope.freq_base_swa").unwrap_or(10_000.0),
            window,
            q_scale: match family {
                // llama.cpp's choice for every Gemma 3 size but 27B (not handled: 62 blocks).
                Family::Gemma3 => Some(1.0 / (head_dim as f32).sqrt()),
                Family::Llama => None,
            },
        };
        if family == Family::Gemma3 && layers == 62 {
            return Ok(Err("Gemma 3 27B's attention scale".into()));
        }
        if family == Family::Llama && heads * head_dim != embd {
            return Err(Error::model(
                location,
                "embedding_length is not a multiple of head_count",
            ));
        }
        if cfg.kv_heads == 0 || !heads.is_multiple_of(cfg.kv_heads) {
            return Err(Error::model(
                location,
                "head_count is not a multiple of head_count_kv",
            ));
        }
        let mut reader = TensorReader {
            content,
            file,
            location,
        };
        for (name, info) in &content.tensor_infos {
            let is_matrix = info.shape.dims().len() == 2 && !name.starts_with("rope");
            if is_matrix && weight_type(info.ggml_dtype).is_none() {
                return Ok(Err(format!("`{name}` is {:?}", info.ggml_dtype)));
            }
        }
        // Every matrix is of a handled type by now; the embedding must also exist.
        if !content.tensor_infos.contains_key("token_embd.weight") {
            return Ok(Err("no quantized token_embd.weight".into()));
        }
        let gemma = family == Family::Gemma3;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let mut gemma_norm = |t: &str| -> Result<Option<Vec<f32>>> {
                Ok(if gemma {
                    Some(reader.vector(&name(t))?)
                } else {
                    None
                })
            };
            let q_norm = gemma_norm("attn_q_norm")?;
            let k_norm = gemma_norm("attn_k_norm")?;
            let post_attn_norm = gemma_norm("post_attention_norm")?;
            let post_ffn_norm = gemma_norm("post_ffw_norm")?;
            layers.push(Layer {
                attn_norm: reader.vector(&name("attn_norm"))?,
                wq: reader.matrix(&name("attn_q"))?,
                wk: reader.matrix(&name("attn_k"))?,
                wv: reader.matrix(&name("attn_v"))?,
                wo: reader.matrix(&name("attn_output"))?,
                ffn_norm: reader.vector(&name("ffn_norm"))?,
                gate: reader.matrix(&name("ffn_gate"))?,
                up: reader.matrix(&name("ffn_up"))?,
                down: reader.matrix(&name("ffn_down"))?,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                // llama.cpp's Gemma 3 pattern: every sixth layer is global.
                sliding: window > 0 && i % 6 < 5,
            });
        }
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(reader.matrix("output.weight")?)
        } else {
            None
        };
        let rope_factors = if content.tensor_infos.contains_key("rope_freqs.weight") {
            Some(reader.vector("rope_freqs.weight")?)
        } else {
            None
        };
        let model = GgufLlama {
            embed: reader.matrix("token_embd.weight")?,
            output,
            output_norm: reader.vector("output_norm.weight")?,
            rope_factors,
            layers,
            cache: KvCache::default(),
            cfg,
        };
        model.check_shapes(location)?;
        Ok(Ok(model))
    }

    fn check_shapes(&self, location: &str) -> Result<()> {
        let c = &self.cfg;
        let kv = c.kv_heads * c.head_dim;
        let q_dim = c.heads * c.head_dim;
        let bad = |what: &str| {
            Err(Error::model(
                location,
                format!("{what} has an unexpected shape"),
            ))
        };
        for (i, l) in self.layers.iter().enumerate() {
            let ff = l.gate.rows;
            let shapes = [
                (&l.wq, q_dim, c.embd),
                (&l.wk, kv, c.embd),
                (&l.wv, kv, c.embd),
                (&l.wo, c.embd, q_dim),
                (&l.gate, ff, c.embd),
                (&l.up, ff, c.embd),
                (&l.down, c.embd, ff),
            ];
            let sized = |v: &Option<Vec<f32>>, n: usize| v.as_ref().is_none_or(|v| v.len() == n);
            if shapes.iter().any(|(m, r, k)| m.rows != *r || m.cols != *k)
                || l.attn_norm.len() != c.embd
                || l.ffn_norm.len() != c.embd
                || !sized(&l.q_norm, c.head_dim)
                || !sized(&l.k_norm, c.head_dim)
                || !sized(&l.post_attn_norm, c.embd)
                || !sized(&l.post_ffn_norm, c.embd)
            {
                return bad(&format!("block {i}"));
            }
        }
        if self.embed.cols != c.embd || self.output.as_ref().is_some_and(|o| o.cols != c.embd) {
            return bad("the embedding or output matrix");
        }
        if self.output_norm.len() != c.embd {
            return bad("output_norm.weight");
        }
        if self
            .rope_factors
            .as_ref()
            .is_some_and(|f| f.len() != c.head_dim / 2)
        {
            return bad("rope_freqs.weight");
        }
        Ok(())
    }

    /// The weight encodings of the matrices, sorted and named as ggml does ("Q4_K, Q6_K").
    pub fn weight_types(&self) -> String {
        let mut names: Vec<&str> = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .chain([&self.embed])
            .chain(self.output.as_ref())
            .map(|m| m.kind.name())
            .collect();
        names.sort_unstable();
        names.dedup();
        names.join(", ")
    }

    /// Forgets the previous prompt.
    pub fn reset(&mut self) {
        self.cache = KvCache::default();
    }

    /// Next-token logits after `ids`, which start at position `pos` (the cache holds the
    /// positions before it).
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        let mut logits = Vec::new();
        for (i, piece) in ids.chunks(UBATCH).enumerate() {
            logits = self.ubatch(piece, pos + i * UBATCH)?;
        }
        Ok(logits)
    }

    fn ubatch(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        let c = self.cfg.clone();
        let n = ids.len();
        self.reserve(pos + n);
        let mut x = vec![0f32; n * c.embd];
        for (row, &id) in x.chunks_mut(c.embd).zip(ids) {
            if id as usize >= self.embed.rows {
                return Err(Error::Usage(format!(
                    "token id {id} is outside the vocabulary"
                )));
            }
            dequantize(self.embed.kind, self.embed.row(id as usize), row);
        }
        if c.family == Family::Gemma3 {
            // llama.cpp multiplies the token rows by √d as an f32.
            let scale = (c.embd as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= scale);
        }
        let rope_global = self.rope_table(pos, n, c.rope_base);
        let rope_local = match c.window {
            0 => Vec::new(),
            _ => self.rope_table(pos, n, c.rope_base_local),
        };
        let (mut h, mut acts) = (vec![0f32; n * c.embd], Acts::default());
        let (mut q, mut k, mut v, mut o) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut gate, mut up) = (Vec::new(), Vec::new());
        for li in 0..c.layers {
            let layer = &self.layers[li];
            norm_rows(&x, &layer.attn_norm, c.eps, &mut h);
            acts.quantize(&h, c.embd, &[&layer.wq, &layer.wk, &layer.wv]);
            matmuls(
                &mut [
                    (&layer.wq, &mut q),
                    (&layer.wk, &mut k),
                    (&layer.wv, &mut v),
                ],
                &acts,
                n,
            );
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                norm_in_place(&mut q, qn, c.eps);
                norm_in_place(&mut k, kn, c.eps);
            }
            let rope = if layer.sliding {
                &rope_local
            } else {
                &rope_global
            };
            let neox = c.family == Family::Gemma3;
            apply_rope(&mut q, c.head_dim, rope, neox);
            apply_rope(&mut k, c.head_dim, rope, neox);
            if let Some(s) = c.q_scale {
                q.iter_mut().for_each(|v| *v *= s);
            }
            let sliding = layer.sliding;
            self.store(li, pos, &k, &v);
            let attn = self.attention(li, pos, n, &q, sliding);
            let layer = &self.layers[li];
            acts.quantize(&attn, c.heads * c.head_dim, &[&layer.wo]);
            layer.wo.matmul(&acts, n, &mut o);
            // The last block goes on with the last token only (llama.cpp's output rows).
            let rows = if li + 1 == c.layers { 1 } else { n };
            let skip = (n - rows) * c.embd;
            let mut o = o[skip..].to_vec();
            if let Some(post) = &layer.post_attn_norm {
                norm_in_place(&mut o, post, c.eps);
            }
            let mut residual: Vec<f32> = o.iter().zip(&x[skip..]).map(|(a, b)| a + b).collect();
            norm_rows(&residual, &layer.ffn_norm, c.eps, &mut h);
            acts.quantize(&h, c.embd, &[&layer.gate, &layer.up]);
            matmuls(
                &mut [(&layer.gate, &mut gate), (&layer.up, &mut up)],
                &acts,
                rows,
            );
            let mut act = vec![0f32; gate.len()];
            match c.family {
                Family::Llama => ops::swiglu(&gate, &up, &mut act),
                Family::Gemma3 => ggml_gelu::geglu(&gate, &up, &mut act),
            }
            acts.quantize(&act, layer.down.cols, &[&layer.down]);
            layer.down.matmul(&acts, rows, &mut o);
            if let Some(post) = &layer.post_ffn_norm {
                norm_in_place(&mut o, post, c.eps);
            }
            for (r, d) in residual.iter_mut().zip(&o) {
                *r += d;
            }
            x = residual;
        }
        let mut last = vec![0f32; c.embd];
        ops::rms_norm(&x[x.len() - c.embd..], &self.output_norm, c.eps, &mut last);
        let output = self.output.as_ref().unwrap_or(&self.embed);
        acts.quantize(&last, c.embd, &[output]);
        let mut logits = vec![0f32; output.rows];
        fill(&mut logits, 256, |r0, part| {
            output.dots(r0, &acts, 0, part, false)
        });
        Ok(logits)
    }

    /// cos/sin per position and pair, as ggml's rope cache: θ starts at the position and is
    /// multiplied by base^(−2/d) pair by pair (divided by the model's frequency factors).
    fn rope_table(&self, pos: usize, n: usize, base: f32) -> Vec<(f32, f32)> {
        let d = self.cfg.head_dim;
        let theta_scale = base.powf(-2.0 / d as f32);
        let mut table = Vec::with_capacity(n * d / 2);
        for p in pos..pos + n {
            let mut theta = p as f32;
            for i in 0..d / 2 {
                let ff = self.rope_factors.as_ref().map_or(1.0, |f| f[i]);
                let t = theta / ff;
                table.push((t.cos(), t.sin()));
                theta *= theta_scale;
            }
        }
        table
    }

    fn reserve(&mut self, needed: usize) {
        let c = &self.cfg;
        let cache = &mut self.cache;
        if needed <= cache.capacity {
            return;
        }
        let old = cache.capacity;
        let capacity = needed.max(2 * old).max(256).next_multiple_of(32);
        let kv = c.kv_heads * c.head_dim;
        if cache.k.is_empty() {
            cache.k = vec![Vec::new(); c.layers];
            cache.v = vec![Vec::new(); c.layers];
        }
        for (k, v) in cache.k.iter_mut().zip(cache.v.iter_mut()) {
            // K grows in place per head; V's rows (one per head and dim) get a longer stride.
            let mut k2 = vec![0f32; kv * capacity];
            let mut v2 = vec![0f32; kv * capacity];
            let len = old * c.head_dim;
            for h in 0..c.kv_heads {
                k2[h * capacity * c.head_dim..][..len].copy_from_slice(&k[h * len..][..len]);
            }
            for row in 0..kv {
                v2[row * capacity..][..old].copy_from_slice(&v[row * old..][..old]);
            }
            *k = k2;
            *v = v2;
        }
        cache.capacity = capacity;
    }

    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (c, cap) = (&self.cfg, self.cache.capacity);
        let kv = c.kv_heads * c.head_dim;
        let (kc, vc) = (&mut self.cache.k[layer], &mut self.cache.v[layer]);
        for (t, (kt, vt)) in k.chunks(kv).zip(v.chunks(kv)).enumerate() {
            let p = pos + t;
            for h in 0..c.kv_heads {
                let src = &kt[h * c.head_dim..][..c.head_dim];
                kc[(h * cap + p) * c.head_dim..][..c.head_dim].copy_from_slice(src);
                for (d, value) in vt[h * c.head_dim..][..c.head_dim].iter().enumerate() {
                    vc[(h * c.head_dim + d) * cap + p] = *value;
                }
            }
        }
    }

    /// Causal attention of `n` queries (at `pos`…) over the cache: n × (heads × dim). A
    /// sliding layer masks positions `window` or more behind the query (llama.cpp's
    /// standard sliding window).
    fn attention(&self, layer: usize, pos: usize, n: usize, q: &[f32], sliding: bool) -> Vec<f32> {
        let c = &self.cfg;
        let (d, cap) = (c.head_dim, self.cache.capacity);
        let (kc, vc) = (&self.cache.k[layer], &self.cache.v[layer]);
        let scale = match c.q_scale {
            Some(_) => 1.0,
            None => 1.0 / (d as f32).sqrt(),
        };
        let group = c.heads / c.kv_heads;
        let mut out = vec![0f32; n * c.heads * d];
        let one = |index: usize, dst: &mut [f32]| {
            let (t, h) = (index / c.heads, index % c.heads);
            let kvh = h / group;
            let qv = &q[(t * c.heads + h) * d..][..d];
            let visible = pos + t + 1;
            let first = if sliding {
                visible.saturating_sub(c.window)
            } else {
                0
            };
            // Rows padded with masked entries to ggml's alignment (its KV view is padded to
            // 256; chunks past the last visible position add exact zeros).
            let mut p = vec![f32::NEG_INFINITY; visible.next_multiple_of(32)];
            for (j, s) in p[..visible].iter_mut().enumerate().skip(first) {
                *s = ops::dot_f32_vec(&kc[(kvh * cap + j) * d..][..d], qv) * scale;
            }
            ops::softmax(&mut p);
            for (dim, o) in dst.iter_mut().enumerate() {
                let row = &vc[(kvh * d + dim) * cap..][..p.len()];
                *o = if n > 1 {
                    ops::dot_f32_tiled(row, &p)
                } else {
                    ops::dot_f32_vec(row, &p)
                };
            }
        };
        workers::for_each_chunk_mut(&mut out, d, one);
        out
    }
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    for (xr, or) in x.chunks(weight.len()).zip(out.chunks_mut(weight.len())) {
        ops::rms_norm(xr, weight, eps, or);
    }
}

/// RMS norm of each `weight.len()`-long piece (Gemma's per-head Q/K norms, its post norms).
fn norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let mut normed = vec![0f32; weight.len()];
    for piece in x.chunks_mut(weight.len()) {
        ops::rms_norm(piece, weight, eps, &mut normed);
        piece.copy_from_slice(&normed);
    }
}

/// One row of the embedding matrix as f32 (ggml's `get_rows`: exact).
fn dequantize(kind: WeightType, row: &[u8], out: &mut [f32]) {
    if kind.uses_q8k() {
        kquants::dequantize(kind, row, out);
    } else {
        ops::dequantize_row(kind, row, out);
    }
}

fn quantize_rows(x: &[f32], width: usize, out: &mut Vec<ActBlock>) {
    out.clear();
    for xr in x.chunks(width) {
        ops::quantize_row(xr, out);
    }
}

/// ggml's RoPE: normal mode rotates adjacent pairs (i, i+1), NeoX mode the halves
/// (i, i + d/2). The products are fused as its compiled code does (x0·cos − (x1·sin),
/// x0·sin + (x1·cos)).
fn apply_rope(x: &mut [f32], head_dim: usize, table: &[(f32, f32)], neox: bool) {
    let pairs = head_dim / 2;
    let width = x.len() / (table.len() / pairs);
    let (step, offset) = if neox { (1, pairs) } else { (2, 1) };
    for (t, row) in x.chunks_mut(width).enumerate() {
        let angles = &table[t * pairs..][..pairs];
        for head in row.chunks_mut(head_dim) {
            for (i, &(cos, sin)) in angles.iter().enumerate() {
                let (a, b) = (i * step, i * step + offset);
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0.mul_add(cos, -(x1 * sin));
                head[b] = x0.mul_add(sin, x1 * cos);
            }
        }
    }
}

fn weight_type(dtype: GgmlDType) -> Option<WeightType> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightType::Q4_0),
        GgmlDType::Q4_1 => Some(WeightType::Q4_1),
        GgmlDType::Q5_0 => Some(WeightType::Q5_0),
        GgmlDType::Q8_0 => Some(WeightType::Q8_0),
        GgmlDType::Q4K => Some(WeightType::Q4K),
        GgmlDType::Q5K => Some(WeightType::Q5K),
        GgmlDType::Q6K => Some(WeightType::Q6K),
        _ => None,
    }
}

struct TensorReader<'a, R> {
    content: &'a Content,
    file: &'a mut R,
    location: &'a str,
}

impl<R: Read + Seek> TensorReader<'_, R> {
    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::model(self.location, format!("the GGUF has no tensor `{name}`")))
    }

    /// `len` bytes of tensor `name`, refused (before allocating) unless they lie inside
    /// the file.
    fn bytes(&mut self, name: &str, len: Option<usize>) -> Result<Vec<u8>> {
        let outside = || {
            Error::model(
                self.location,
                format!("tensor `{name}` extends past the end of the file"),
            )
        };
        let start = self
            .content
            .tensor_data_offset
            .checked_add(self.info(name)?.offset)
            .ok_or_else(outside)?;
        let size = self.file.seek(SeekFrom::End(0)).map_err(|e| {
            Error::model(self.location, format!("cannot read tensor `{name}`: {e}"))
        })?;
        let len = len.ok_or_else(outside)?;
        if start.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(outside());
        }
        let mut data = vec![0u8; len];
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut data))
            .map_err(|e| {
                Error::model(self.location, format!("cannot read tensor `{name}`: {e}"))
            })?;
        Ok(data)
    }

    fn matrix(&mut self, name: &str) -> Result<QMatrix> {
        let info = self.info(name)?;
        let dims = info.shape.dims().to_vec();
        let kind = weight_type(info.ggml_dtype).ok_or_else(|| {
            Error::model(self.location, format!("`{name}` is {:?}", info.ggml_dtype))
        })?;
        let [rows, cols] = dims[..] else {
            return Err(Error::model(
                self.location,
                format!("`{name}` is not a matrix"),
            ));
        };
        if cols % kind.block_weights() != 0 {
            return Err(Error::model(
                self.location,
                format!("`{name}` rows are not whole blocks"),
            ));
        }
        let len = rows
            .checked_mul(cols / kind.block_weights())
            .and_then(|blocks| blocks.checked_mul(kind.block_bytes()));
        let data = self.bytes(name, len)?;
        Ok(QMatrix {
            kind,
            rows,
            cols,
            data,
        })
    }

    fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        let dtype = info.ggml_dtype;
        let n = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        match dtype {
            GgmlDType::F32 => Ok(self
                .bytes(name, n.and_then(|n| n.checked_mul(4)))?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            GgmlDType::F16 => Ok(self
                .bytes(name, n.and_then(|n| n.checked_mul(2)))?
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()),
            other => Err(Error::model(
                self.location,
                format!("`{name}` is {other:?}, expected F32"),
            )),
        }
    }
}
