//! The BERT encoder network, written for CPU speed: weights packed once for the GEMM
//! kernel (`packed_linear`), one fused QKV projection per layer with the 1/sqrt(head_dim)
//! scale folded into the query weights, attention computed straight from that
//! projection's layout (see `attention`), a vectorised LayerNorm (`kernels`), and the
//! exact GELU and residual sums run in the products' output pass. Padding is dropped
//! before the first layer and restored after the last. It reads the standard Hugging
//! Face BERT weight names, with or without the `bert.` prefix, and old checkpoints'
//! LayerNorm `gamma` / `beta`.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::engine::candle::attention::self_attention;
use crate::engine::candle::kernels::RowNorm;
use crate::engine::candle::packed_linear::PackedLinear;

/// The fields of a BERT `config.json` this network needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

pub struct BertModel {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
}

struct Layer {
    qkv: PackedLinear,
    attn_out: PackedLinear,
    attn_norm: Norm,
    up: PackedLinear,
    down: PackedLinear,
    out_norm: Norm,
}

/// A LayerNorm: the vectorised row kernel for an f32 model on the CPU (candle's sums
/// its rows scalar, 2.4% of embedding time), candle's own on other devices and dtypes.
enum Norm {
    Rows(RowNorm),
    Candle(LayerNorm),
}

impl Norm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Norm::Rows(n) => x.contiguous()?.apply_op1_no_bwd(n),
            Norm::Candle(n) => n.forward(x),
        }
    }
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Norm> {
    let (weight, bias) = match (vb.get(size, "weight"), vb.get(size, "bias")) {
        (Ok(w), Ok(b)) => (w, b),
        _ => (vb.get(size, "gamma")?, vb.get(size, "beta")?),
    };
    if weight.device().is_cpu() && weight.dtype() == DType::F32 {
        Ok(Norm::Rows(RowNorm {
            weight: weight.to_vec1()?,
            bias: bias.to_vec1()?,
            eps: eps as f32,
        }))
    } else {
        Ok(Norm::Candle(LayerNorm::new(weight, bias, eps)))
    }
}

fn linear(input: usize, output: usize, vb: VarBuilder) -> candle_core::Result<PackedLinear> {
    PackedLinear::new(vb.get((output, input), "weight")?, vb.get(output, "bias")?)
}

impl BertModel {
    /// Loads the encoder from `vb` or, failing that, from `vb.pp("bert")` (or the
    /// config's model type), as checkpoints saved from a task head name it.
    pub fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<BertModel> {
        if config.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act `{}` is not supported (only gelu)",
                config.hidden_act
            );
        }
        if config
            .position_embedding_type
            .as_deref()
            .is_some_and(|t| t != "absolute")
        {
            candle_core::bail!("only absolute position embeddings are supported");
        }
        if !vb.contains_tensor("embeddings.word_embeddings.weight") {
            let prefix = config.model_type.as_deref().unwrap_or("bert");
            for candidate in [prefix, "bert"] {
                if vb.contains_tensor(&format!("{candidate}.embeddings.word_embeddings.weight")) {
                    return Self::load_unprefixed(vb.pp(candidate), config);
                }
            }
        }
        Self::load_unprefixed(vb, config)
    }

    fn load_unprefixed(vb: VarBuilder, c: &BertConfig) -> candle_core::Result<BertModel> {
        let h = c.hidden_size;
        if !h.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads");
        }
        let emb = vb.pp("embeddings");
        let embedding = |n: usize, name: &str| -> candle_core::Result<Embedding> {
            Ok(Embedding::new(
                emb.get((n, h), &format!("{name}.weight"))?,
                h,
            ))
        };
        let word = embedding(c.vocab_size, "word_embeddings")?;
        let position = embedding(c.max_position_embeddings, "position_embeddings")?;
        let token_type = embedding(c.type_vocab_size, "token_type_embeddings")?;
        let embed_norm = layer_norm(h, c.layer_norm_eps, emb.pp("LayerNorm"))?;

        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let lb = vb.pp(format!("encoder.layer.{i}"));
            let attn = lb.pp("attention");
            let own = attn.pp("self");
            let part = |name: &str, s: f64| -> candle_core::Result<(Tensor, Tensor)> {
                let l = own.pp(name);
                Ok(((l.get((h, h), "weight")? * s)?, (l.get(h, "bias")? * s)?))
            };
            let (qw, qb) = part("query", scale)?;
            let (kw, kb) = part("key", 1.0)?;
            let (vw, vb_) = part("value", 1.0)?;
            let qkv = PackedLinear::new(
                Tensor::cat(&[qw, kw, vw], 0)?,
                Tensor::cat(&[qb, kb, vb_], 0)?,
            )?;
            layers.push(Layer {
                qkv,
                attn_out: linear(h, h, attn.pp("output.dense"))?,
                attn_norm: layer_norm(h, c.layer_norm_eps, attn.pp("output.LayerNorm"))?,
                up: linear(h, c.intermediate_size, lb.pp("intermediate.dense"))?,
                down: linear(c.intermediate_size, h, lb.pp("output.dense"))?,
                out_norm: layer_norm(h, c.layer_norm_eps, lb.pp("output.LayerNorm"))?,
            });
        }
        Ok(BertModel {
            word,
            position,
            token_type,
            embed_norm,
            layers,
            heads: c.num_attention_heads,
        })
    }

    /// `ids`, `types`, `mask`: (batch, seq) u32, right-padded. Returns the last hidden
    /// state (batch, seq, hidden), zeros at padding.
    ///
    /// The network runs on the real tokens only, the sequences end to end: every product
    /// and norm works row by row and attention stays within each sequence, so padding
    /// would only add work (and its rows are not used).
    pub fn forward(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let lengths: Vec<usize> = mask
            .to_vec2::<u32>()?
            .iter()
            .map(|row| row.iter().filter(|&&m| m != 0).count())
            .collect();
        let tokens: usize = lengths.iter().sum();
        // Where each real token sits in the padded (batch·seq) layout, and the reverse;
        // padding places point at an extra zero row after the last token.
        let mut gather = Vec::with_capacity(tokens);
        let mut positions = Vec::with_capacity(tokens);
        let mut scatter = Vec::with_capacity(batch * seq);
        for (b, &len) in lengths.iter().enumerate() {
            for j in 0..seq {
                if j < len {
                    scatter.push(gather.len() as u32);
                    gather.push((b * seq + j) as u32);
                    positions.push(j as u32);
                } else {
                    scatter.push(tokens as u32);
                }
            }
        }
        let device = ids.device();
        let gather = Tensor::from_vec(gather, tokens, device)?;
        let real = |t: &Tensor| t.flatten_all()?.index_select(&gather, 0);
        let x = self
            .word
            .forward(&real(ids)?)?
            .add(&self.token_type.forward(&real(types)?)?)?
            .add(
                &self
                    .position
                    .forward(&Tensor::from_vec(positions, tokens, device)?)?,
            )?;
        let mut x = self.embed_norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x, &lengths, self.heads)?;
        }
        let zero = Tensor::zeros((1, x.dim(1)?), x.dtype(), device)?;
        let scatter = Tensor::from_vec(scatter, batch * seq, device)?;
        Tensor::cat(&[&x, &zero], 0)?
            .index_select(&scatter, 0)?
            .reshape((batch, seq, x.dim(1)?))
    }
}

impl Layer {
    /// `x`: (tokens, hidden), the sequences of `lengths` end to end.
    fn forward(&self, x: &Tensor, lengths: &[usize], heads: usize) -> candle_core::Result<Tensor> {
        let context = self_attention(&self.qkv.forward(x)?, lengths, heads)?;
        let x = self
            .attn_norm
            .forward(&self.attn_out.forward_add(&context, x)?)?;
        let up = self.up.forward_gelu(&x)?;
        self.out_norm.forward(&self.down.forward_add(&up, &x)?)
    }
}
