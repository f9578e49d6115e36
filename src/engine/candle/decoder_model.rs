//! One transformer-decoder network for the decoder-based embedders: Llama, Mistral,
//! Qwen2, Qwen3 and Gemma 3 text models, which differ only in a few switches (query/key
//! norms, biases, norm offsets, embedding scale, sliding windows, causal or
//! bidirectional attention). Unlike candle-transformers' generation models it takes an
//! attention mask, so batches of different lengths can be padded: an embedder needs
//! the last hidden state of every real token, not a KV cache.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a decoder `config.json` the network needs (Hugging Face names).
#[derive(Debug, Clone, Deserialize)]
pub struct DecoderConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Gemma 3: the RoPE base of its sliding-window layers.
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen: whether `sliding_window` is used at all.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Gemma 3 (and newer configs): `sliding_attention` / `full_attention` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub hidden_activation: Option<String>,
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    /// EmbeddingGemma: every token attends to every other (within the window).
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}

/// The architecture switches, derived once from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
}

impl DecoderConfig {
    /// The model types this network runs.
    pub const SUPPORTED: &'static [&'static str] =
        &["llama", "mistral", "qwen2", "qwen3", "gemma3_text"];

    fn family(&self) -> candle_core::Result<Family> {
        Ok(match self.model_type.as_str() {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gemma3_text" => Family::Gemma3,
            other => candle_core::bail!(
                "model_type `{other}` is not a supported decoder ({})",
                Self::SUPPORTED.join(", ")
            ),
        })
    }

    fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The window of layer `i`, if it is a sliding-window layer.
    fn window_of(&self, i: usize, family: Family) -> Option<usize> {
        let window = self.sliding_window?;
        let sliding = match (&self.layer_types, family) {
            (Some(types), _) => types.get(i).is_some_and(|t| t == "sliding_attention"),
            (None, Family::Gemma3) => {
                let pattern = self.sliding_window_pattern.unwrap_or(6);
                !(i + 1).is_multiple_of(pattern)
            }
            (None, Family::Qwen2 | Family::Qwen3) => self.use_sliding_window == Some(true),
            (None, Family::Llama) => true,
        };
        sliding.then_some(window)
    }

    fn activation(&self) -> candle_core::Result<candle_nn::Activation> {
        let name = self
            .hidden_activation
            .as_deref()
            .or(self.hidden_act.as_deref())
            .unwrap_or("silu");
        Ok(match name {
            "silu" | "swish" => candle_nn::Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" => candle_nn::Activation::NewGelu,
            "gelu" => candle_nn::Activation::Gelu,
            other => candle_core::bail!("hidden activation `{other}` is not supported"),
        })
    }

    /// The factor positions are divided by (`linear` RoPE scaling), or an error for
    /// scaling types this network does not implement.
    fn rope_linear_factor(&self) -> candle_core::Result<f64> {
        let Some(scaling) = &self.rope_scaling else {
            return Ok(1.0);
        };
        if scaling.is_null() {
            return Ok(1.0);
        }
        let kind = scaling["rope_type"]
            .as_str()
            .or(scaling["type"].as_str())
            .unwrap_or("default");
        match kind {
            "default" => Ok(1.0),
            "linear" => Ok(scaling["factor"].as_f64().unwrap_or(1.0)),
            other => candle_core::bail!("rope_scaling type `{other}` is not supported"),
        }
    }
}

/// RMS norm computed in f32, as the reference implementations upcast; Gemma scales by
/// `1 + weight` rather than `weight`.
#[derive(Debug, Clone)]
struct RmsNorm {
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(size: usize, eps: f64, offset: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get(size, "weight")?.to_dtype(DType::F32)?;
        let scale = if offset { (weight + 1.0)? } else { weight };
        Ok(RmsNorm { scale, eps })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_div(&(mean_square + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.scale)?.to_dtype(dtype)
    }
}

fn linear(input: usize, output: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Linear> {
    let weight = vb.get((output, input), "weight")?;
    let bias = if bias {
        Some(vb.get(output, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    act: candle_nn::Activation,
}

struct Layer {
    attn: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    /// Gemma 3 only: norms around the MLP (Llama-style models use `post_attn_norm` as
    /// the MLP's input norm).
    pre_mlp_norm: Option<RmsNorm>,
    post_mlp_norm: Option<RmsNorm>,
    window: Option<usize>,
    rope_base: f64,
}

pub struct DecoderModel {
    embed: Embedding,
    /// Gemma multiplies the embeddings by sqrt(hidden size).
    embed_scale: Option<f64>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    bidirectional: bool,
    rope_factor: f64,
    head_dim: usize,
    dtype: DType,
}

impl DecoderModel {
    /// Loads from `vb`, or from `vb.pp("model")` when the checkpoint was saved from a
    /// causal-LM head (`model.layers.0...`).
    pub fn load(vb: VarBuilder, c: &DecoderConfig) -> candle_core::Result<DecoderModel> {
        let vb = if vb.contains_tensor("embed_tokens.weight") {
            vb
        } else {
            vb.pp("model")
        };
        let family = c.family()?;
        let gemma = family == Family::Gemma3;
        let (h, head_dim) = (c.hidden_size, c.head_dim());
        let heads = c.num_attention_heads;
        let kv_heads = c.num_key_value_heads.unwrap_or(heads);
        if !heads.is_multiple_of(kv_heads) {
            candle_core::bail!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            );
        }
        let qkv_bias = c.attention_bias.unwrap_or(family == Family::Qwen2);
        let qk_norm = matches!(family, Family::Qwen3 | Family::Gemma3);
        let scale = match (gemma, c.query_pre_attn_scalar) {
            (true, Some(s)) => 1.0 / s.sqrt(),
            _ => 1.0 / (head_dim as f64).sqrt(),
        };
        let act = c.activation()?;
        let eps = c.rms_norm_eps;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let lb = vb.pp(format!("layers.{i}"));
            let ab = lb.pp("self_attn");
            let norm = |name: &str, size: usize, vb: &VarBuilder| {
                RmsNorm::load(size, eps, gemma, vb.pp(name))
            };
            let attn = Attention {
                q: linear(h, heads * head_dim, qkv_bias, ab.pp("q_proj"))?,
                k: linear(h, kv_heads * head_dim, qkv_bias, ab.pp("k_proj"))?,
                v: linear(h, kv_heads * head_dim, qkv_bias, ab.pp("v_proj"))?,
                o: linear(
                    heads * head_dim,
                    h,
                    c.attention_bias == Some(true),
                    ab.pp("o_proj"),
                )?,
                q_norm: qk_norm.then(|| norm("q_norm", head_dim, &ab)).transpose()?,
                k_norm: qk_norm.then(|| norm("k_norm", head_dim, &ab)).transpose()?,
                heads,
                kv_heads,
                head_dim,
                scale,
            };
            let mb = lb.pp("mlp");
            let mlp = Mlp {
                gate: linear(h, c.intermediate_size, false, mb.pp("gate_proj"))?,
                up: linear(h, c.intermediate_size, false, mb.pp("up_proj"))?,
                down: linear(c.intermediate_size, h, false, mb.pp("down_proj"))?,
                act,
            };
            let window = c.window_of(i, family);
            let rope_base = match (window, c.rope_local_base_freq) {
                (Some(_), Some(local)) if gemma => local,
                _ => c.rope_theta,
            };
            layers.push(Layer {
                attn,
                mlp,
                input_norm: norm("input_layernorm", h, &lb)?,
                post_attn_norm: norm("post_attention_layernorm", h, &lb)?,
                pre_mlp_norm: gemma
                    .then(|| norm("pre_feedforward_layernorm", h, &lb))
                    .transpose()?,
                post_mlp_norm: gemma
                    .then(|| norm("post_feedforward_layernorm", h, &lb))
                    .transpose()?,
                window,
                rope_base,
            });
        }
        Ok(DecoderModel {
            embed: Embedding::new(vb.get((c.vocab_size, h), "embed_tokens.weight")?, h),
            embed_scale: gemma.then(|| (h as f64).sqrt()),
            layers,
            norm: RmsNorm::load(h, eps, gemma, vb.pp("norm"))?,
            bidirectional: c.use_bidirectional_attention == Some(true),
            rope_factor: c.rope_linear_factor()?,
            head_dim,
            dtype: vb.dtype(),
        })
    }

    /// `ids`, `mask`: (batch, seq) u32 with right padding (mask 1 for real tokens).
    /// Returns the final-norm hidden states (batch, seq, hidden).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_embeds(&self.embed_tokens(ids)?, mask)
    }

    /// The input embeddings of token ids (batch, seq) -> (batch, seq, hidden).
    pub fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.embed.forward(ids)?;
        match self.embed_scale {
            // Gemma rounds the scale to the weights' dtype before multiplying.
            Some(scale) => {
                let scale = Tensor::new(scale as f32, ids.device())?.to_dtype(self.dtype)?;
                x.broadcast_mul(&scale)
            }
            None => Ok(x),
        }
    }

    /// The network from input embeddings (batch, seq, hidden) on, e.g. text embeddings
    /// with image features spliced in.
    pub fn forward_embeds(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (_, seq, _) = x.dims3()?;
        let device = x.device();
        let mut x = x.clone();
        let real = mask.to_dtype(DType::F32)?;
        let mut masks: Vec<(Option<usize>, Tensor)> = Vec::new();
        let mut ropes: Vec<(f64, (Tensor, Tensor))> = Vec::new();
        for layer in &self.layers {
            if !masks.iter().any(|(w, _)| *w == layer.window) {
                let m = attention_bias(&real, seq, layer.window, self.bidirectional, device)?;
                masks.push((layer.window, m));
            }
            if !ropes.iter().any(|(b, _)| *b == layer.rope_base) {
                let table = rope_table(
                    seq,
                    self.head_dim,
                    layer.rope_base,
                    self.rope_factor,
                    device,
                )?;
                ropes.push((layer.rope_base, table));
            }
            let bias = &masks
                .iter()
                .find(|(w, _)| *w == layer.window)
                .expect("built")
                .1;
            let rope = &ropes
                .iter()
                .find(|(b, _)| *b == layer.rope_base)
                .expect("built")
                .1;
            x = layer.forward(&x, bias, rope)?;
        }
        self.norm.forward(&x)
    }
}

/// Token-id rows as one right-padded batch: ids (pads are 0) and the 0/1 mask, both
/// (rows, longest). Positions count from 0 in every row and the mask hides the pads, so
/// a row's vectors do not depend on the padding.
pub fn padded_batch(rows: &[Vec<u32>], device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for row in rows {
        ids.extend(row.iter().copied().chain(std::iter::repeat(0)).take(width));
        mask.extend((0..width).map(|i| u32::from(i < row.len())));
    }
    Ok((
        Tensor::from_vec(ids, (rows.len(), width), device)?,
        Tensor::from_vec(mask, (rows.len(), width), device)?,
    ))
}

/// cos and sin tables (seq, head_dim / 2) in f32 for positions 0..seq.
fn rope_table(
    seq: usize,
    head_dim: usize,
    base: f64,
    factor: f64,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> = (0..head_dim / 2)
        .map(|i| (1.0 / base.powf(2.0 * i as f64 / head_dim as f64)) as f32)
        .collect();
    let inv_freq = Tensor::new(inv_freq, device)?;
    let positions = (Tensor::arange(0u32, seq as u32, device)?.to_dtype(DType::F32)? / factor)?;
    let angles = positions
        .unsqueeze(1)?
        .broadcast_mul(&inv_freq.unsqueeze(0)?)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Additive attention bias (batch, 1, seq, seq) in f32: 0 where query i may attend key
/// j, a large negative elsewhere. Causal models see j ≤ i (and j > i − window on
/// sliding layers); bidirectional models see |i − j| < window. Padding keys are hidden.
fn attention_bias(
    real: &Tensor,
    seq: usize,
    window: Option<usize>,
    bidirectional: bool,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let allowed: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..seq).map(move |j| {
                let in_window = window.is_none_or(|w| i.abs_diff(j) < w);
                let ok = in_window && (bidirectional || j <= i);
                if ok {
                    0.0
                } else {
                    -1e9
                }
            })
        })
        .collect();
    let structure = Tensor::from_vec(allowed, (1, 1, seq, seq), device)?;
    let padding = ((real - 1.0)? * 1e9)?.unsqueeze(1)?.unsqueeze(1)?;
    structure.broadcast_add(&padding)
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> candle_core::Result<Tensor> {
        let attn_out = self
            .attn
            .forward(&self.input_norm.forward(x)?, bias, rope)?;
        match (&self.pre_mlp_norm, &self.post_mlp_norm) {
            (Some(pre), Some(post)) => {
                let x = (x + self.post_attn_norm.forward(&attn_out)?)?;
                let mlp_out = self.mlp.forward(&pre.forward(&x)?)?;
                x + post.forward(&mlp_out)?
            }
            _ => {
                let x = (x + attn_out)?;
                let mlp_out = self.mlp.forward(&self.post_attn_norm.forward(&x)?)?;
                x + mlp_out
            }
        }
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.act.forward(&self.gate.forward(x)?)?;
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        (cos, sin): &(Tensor, Tensor),
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, _) = x.dims3()?;
        let dtype = x.dtype();
        let split = |t: Tensor, heads: usize| {
            t.reshape((batch, seq, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let mut q = split(self.q.forward(x)?, self.heads)?;
        let mut k = split(self.k.forward(x)?, self.kv_heads)?;
        let v = split(self.v.forward(x)?, self.kv_heads)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
        let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
        let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
        let repeat = self.heads / self.kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, repeat)?.contiguous()?;
        let v = candle_transformers::utils::repeat_kv(v, repeat)?.contiguous()?;
        // Scores and softmax in f32, as the reference implementations do.
        let scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * self.scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(bias)?)?;
        let context = probs.to_dtype(dtype)?.matmul(&v)?;
        let context = context
            .transpose(1, 2)?
            .reshape((batch, seq, self.heads * self.head_dim))?;
        self.o.forward(&context)
    }
}
