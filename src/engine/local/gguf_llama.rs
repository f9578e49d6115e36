//! A llama-architecture GGUF model (Llama, Mistral, SmolLM, … with Q4_0 / Q4_1 / Q8_0
//! weights) run on the CPU with llama.cpp's own arithmetic (see `ggml_ops`): the floats
//! equal those of llama-server run with an f32 KV cache and without flash attention
//! (`-fa off -ctk f32 -ctv f32`), which is also the only llama.cpp configuration whose
//! output does not depend on its thread count.
//!
//! Following ggml's graph: RMS norm; Q/K/V projections on activations quantized per
//! matmul; RoPE in ggml's "normal" (adjacent pairs) form, angles from its cos/sin cache;
//! scores by ggml's f32 vector dot, scaled softmax; values weighted by llamafile's tiled
//! GEMM during a prompt (two or more tokens) and by the vector dot for single tokens;
//! SwiGLU; a prompt runs in ubatches of 512 tokens; logits for the last token only.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use super::ggml_ops::{self as ops, ActBlock, WeightType, QK};
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
    fn row_bytes(&self) -> usize {
        self.cols / QK * self.kind.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// `out[t][r]` = row r · activation row t, for `n` activation rows (ggml's mul_mat;
    /// each output is one whole dot product, so thread splits do not change it).
    fn matmul(&self, acts: &[ActBlock], n: usize, out: &mut Vec<f32>) {
        let blocks = self.cols / QK;
        let dot =
            |r: usize, t: usize| ops::dot(self.kind, self.row(r), &acts[t * blocks..][..blocks]);
        out.clear();
        out.resize(n * self.rows, 0.0);
        if n == 1 {
            fill(out, 16, |r| dot(r, 0));
            return;
        }
        // Rows outermost so each weight row is read once per prompt; transposed after.
        let mut by_row = vec![0f32; n * self.rows];
        by_row
            .par_chunks_mut(n * 16)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (i, per_row) in chunk.chunks_mut(n).enumerate() {
                    for (t, o) in per_row.iter_mut().enumerate() {
                        *o = dot(c * 16 + i, t);
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
/// all their rows: each fork-join costs about as much as a small product.
fn matmuls(products: &mut [(&QMatrix, &mut Vec<f32>)], acts: &[ActBlock], n: usize) {
    if n > 1 || rayon::current_num_threads() == 1 {
        for (m, out) in products.iter_mut() {
            m.matmul(acts, n, out);
        }
        return;
    }
    let mats: Vec<&QMatrix> = products.iter().map(|(m, _)| *m).collect();
    let total: usize = mats.iter().map(|m| m.rows).sum();
    let mut all = vec![0f32; total];
    fill(&mut all, 16, |mut r| {
        for m in &mats {
            if r < m.rows {
                return ops::dot(m.kind, m.row(r), &acts[..m.cols / QK]);
            }
            r -= m.rows;
        }
        unreachable!("row index within the products")
    });
    let mut rest = &all[..];
    for (m, out) in products.iter_mut() {
        let (mine, tail) = rest.split_at(m.rows);
        out.clear();
        out.extend_from_slice(mine);
        rest = tail;
    }
}

/// `out[i] = f(i)`, in parallel chunks (a few per thread, at least `chunk` long) when
/// more than one thread is configured.
fn fill(out: &mut [f32], chunk: usize, f: impl Fn(usize) -> f32 + Sync) {
    let threads = rayon::current_num_threads();
    let chunk = out.len().div_ceil(4 * threads).max(chunk);
    if threads == 1 {
        out.iter_mut().enumerate().for_each(|(i, o)| *o = f(i));
    } else {
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, part)| {
            for (i, o) in part.iter_mut().enumerate() {
                *o = f(c * chunk + i);
            }
        });
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
}

#[derive(Clone, Debug)]
struct Config {
    embd: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    rope_base: f32,
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
    /// Reads a GGUF of llama architecture `arch` (its metadata prefix) whose weights this
    /// path handles; `Ok(Err(why))` when it does not (other quantizations, experts, rope
    /// scaling).
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
        let embd = uint("embedding_length").ok_or_else(|| missing("embedding_length"))? as usize;
        let heads =
            uint("attention.head_count").ok_or_else(|| missing("attention.head_count"))? as usize;
        let head_dim = embd / heads.max(1);
        if uint("rope.dimension_count").is_some_and(|d| d as usize != head_dim)
            || uint("attention.key_length").is_some_and(|d| d as usize != head_dim)
            || !head_dim.is_multiple_of(2)
        {
            return Ok(Err("partial rotary or unusual head size".into()));
        }
        let cfg = Config {
            embd,
            layers: uint("block_count").ok_or_else(|| missing("block_count"))? as usize,
            heads,
            kv_heads: uint("attention.head_count_kv").map_or(heads, |n| n as usize),
            head_dim,
            eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_base: float("rope.freq_base").unwrap_or(10_000.0),
        };
        if heads == 0 || heads * head_dim != embd {
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
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
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
        let bad = |what: &str| {
            Err(Error::model(
                location,
                format!("{what} has an unexpected shape"),
            ))
        };
        for (i, l) in self.layers.iter().enumerate() {
            let ff = l.gate.rows;
            let shapes = [
                (&l.wq, c.embd, c.embd),
                (&l.wk, kv, c.embd),
                (&l.wv, kv, c.embd),
                (&l.wo, c.embd, c.embd),
                (&l.gate, ff, c.embd),
                (&l.up, ff, c.embd),
                (&l.down, c.embd, ff),
            ];
            if shapes.iter().any(|(m, r, k)| m.rows != *r || m.cols != *k)
                || l.attn_norm.len() != c.embd
                || l.ffn_norm.len() != c.embd
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
            ops::dequantize_row(self.embed.kind, self.embed.row(id as usize), row);
        }
        let rope = self.rope_table(pos, n);
        let (mut h, mut acts) = (vec![0f32; n * c.embd], Vec::new());
        let (mut q, mut k, mut v, mut o) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut gate, mut up) = (Vec::new(), Vec::new());
        for li in 0..c.layers {
            let layer = &self.layers[li];
            norm_rows(&x, &layer.attn_norm, c.eps, &mut h);
            quantize_rows(&h, c.embd, &mut acts);
            matmuls(
                &mut [
                    (&layer.wq, &mut q),
                    (&layer.wk, &mut k),
                    (&layer.wv, &mut v),
                ],
                &acts,
                n,
            );
            apply_rope(&mut q, c.head_dim, &rope);
            apply_rope(&mut k, c.head_dim, &rope);
            self.store(li, pos, &k, &v);
            let attn = self.attention(li, pos, n, &q);
            quantize_rows(&attn, c.embd, &mut acts);
            self.layers[li].wo.matmul(&acts, n, &mut o);
            // The last block goes on with the last token only (llama.cpp's output rows).
            let rows = if li + 1 == c.layers { 1 } else { n };
            let skip = (n - rows) * c.embd;
            let mut residual: Vec<f32> = o[skip..]
                .iter()
                .zip(&x[skip..])
                .map(|(a, b)| a + b)
                .collect();
            let layer = &self.layers[li];
            norm_rows(&residual, &layer.ffn_norm, c.eps, &mut h);
            quantize_rows(&h, c.embd, &mut acts);
            matmuls(
                &mut [(&layer.gate, &mut gate), (&layer.up, &mut up)],
                &acts,
                rows,
            );
            let mut act = vec![0f32; gate.len()];
            ops::swiglu(&gate, &up, &mut act);
            quantize_rows(&act, layer.down.cols, &mut acts);
            layer.down.matmul(&acts, rows, &mut o);
            for (r, d) in residual.iter_mut().zip(&o) {
                *r += d;
            }
            x = residual;
        }
        let mut last = vec![0f32; c.embd];
        ops::rms_norm(&x[x.len() - c.embd..], &self.output_norm, c.eps, &mut last);
        quantize_rows(&last, c.embd, &mut acts);
        let output = self.output.as_ref().unwrap_or(&self.embed);
        let mut logits = vec![0f32; output.rows];
        fill(&mut logits, 256, |r| {
            ops::dot(output.kind, output.row(r), &acts)
        });
        Ok(logits)
    }

    /// cos/sin per position and pair, as ggml's rope cache: θ starts at the position and is
    /// multiplied by base^(−2/d) pair by pair (divided by the model's frequency factors).
    fn rope_table(&self, pos: usize, n: usize) -> Vec<(f32, f32)> {
        let d = self.cfg.head_dim;
        let theta_scale = self.cfg.rope_base.powf(-2.0 / d as f32);
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

    /// Causal attention of `n` queries (at `pos`…) over the cache: n × (heads × dim).
    fn attention(&self, layer: usize, pos: usize, n: usize, q: &[f32]) -> Vec<f32> {
        let c = &self.cfg;
        let (d, cap) = (c.head_dim, self.cache.capacity);
        let (kc, vc) = (&self.cache.k[layer], &self.cache.v[layer]);
        let scale = 1.0 / (d as f32).sqrt();
        let group = c.heads / c.kv_heads;
        let mut out = vec![0f32; n * c.heads * d];
        let one = |index: usize, dst: &mut [f32]| {
            let (t, h) = (index / c.heads, index % c.heads);
            let kvh = h / group;
            let qv = &q[(t * c.heads + h) * d..][..d];
            let visible = pos + t + 1;
            // Rows padded with masked entries to ggml's alignment (its KV view is padded to
            // 256; chunks past the last visible position add exact zeros).
            let mut p = vec![f32::NEG_INFINITY; visible.next_multiple_of(32)];
            for (j, s) in p[..visible].iter_mut().enumerate() {
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
        if rayon::current_num_threads() == 1 {
            out.chunks_mut(d)
                .enumerate()
                .for_each(|(i, dst)| one(i, dst));
        } else {
            out.par_chunks_mut(d)
                .enumerate()
                .for_each(|(i, dst)| one(i, dst));
        }
        out
    }
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    for (xr, or) in x.chunks(weight.len()).zip(out.chunks_mut(weight.len())) {
        ops::rms_norm(xr, weight, eps, or);
    }
}

fn quantize_rows(x: &[f32], width: usize, out: &mut Vec<ActBlock>) {
    out.clear();
    for xr in x.chunks(width) {
        ops::quantize_row(xr, out);
    }
}

/// ggml's normal-mode RoPE on adjacent pairs; the products are fused as its compiled
/// code does (x0·cos − (x1·sin), x0·sin + (x1·cos)).
fn apply_rope(x: &mut [f32], head_dim: usize, table: &[(f32, f32)]) {
    let pairs = head_dim / 2;
    let width = x.len() / (table.len() / pairs);
    for (t, row) in x.chunks_mut(width).enumerate() {
        let angles = &table[t * pairs..][..pairs];
        for head in row.chunks_mut(head_dim) {
            for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(angles) {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0.mul_add(cos, -(x1 * sin));
                pair[1] = x0.mul_add(sin, x1 * cos);
            }
        }
    }
}

fn weight_type(dtype: GgmlDType) -> Option<WeightType> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightType::Q4_0),
        GgmlDType::Q4_1 => Some(WeightType::Q4_1),
        GgmlDType::Q8_0 => Some(WeightType::Q8_0),
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
        if cols % QK != 0 {
            return Err(Error::model(
                self.location,
                format!("`{name}` rows are not whole blocks"),
            ));
        }
        let len = rows
            .checked_mul(cols / QK)
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
