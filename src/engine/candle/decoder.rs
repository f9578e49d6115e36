//! Decoder-based text embedders (E5-Mistral, Qwen3-Embedding, EmbeddingGemma, ...):
//! the model's profile supplies prompts, the end token and pooling; sentence-transformers
//! Dense modules (EmbeddingGemma's projections) follow the pooling when the model has
//! them.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::engine::candle::bert::LocalOptions;
use crate::engine::candle::decoder_model::{padded_batch, DecoderConfig, DecoderModel};
use crate::engine::candle::load::{encode, token_lengths, LocalInfo, ModelFiles};
use crate::engine::candle::pooling::{normalize, Pooling};
use crate::engine::profile::{EndToken, Profile};
use crate::engine::ModelRef;
use crate::engine::{Embedder, EmbedderInfo, Role};
use crate::error::{Error, Result};

/// Bump when a code change alters the vectors, so cached embeddings are not reused.
const IMPLEMENTATION_VERSION: u32 = 1;

/// Truncation when neither the flags nor the model's sentence-transformers config say.
const DEFAULT_MAX_TOKENS: usize = 512;

pub struct DecoderEmbedder {
    model: DecoderModel,
    tokenizer: Tokenizer,
    profile: &'static Profile,
    /// The id appended to every input (profile `end_token`), if any.
    end_id: Option<u32>,
    pooling: Pooling,
    dense: Vec<Linear>,
    normalize: bool,
    max_tokens: usize,
    device: Device,
    workers: usize,
    info: EmbedderInfo,
}

#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    eos_token: Option<serde_json::Value>,
}

impl DecoderEmbedder {
    pub fn load(
        model: &ModelRef,
        files: &ModelFiles,
        config: DecoderConfig,
        profile: &'static Profile,
        options: &LocalOptions,
    ) -> Result<DecoderEmbedder> {
        let location = files.location.clone();
        let tokenizer = files.tokenizer()?;
        let end_id = end_token_id(files, &tokenizer, profile.end_token)?;
        let configured_max = files.max_seq_length()?;
        let max_tokens = options
            .max_tokens
            .or(configured_max)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let pooling = options.pooling.unwrap_or(profile.pooling);
        let normalize = options.normalize.unwrap_or(profile.normalize);

        let weights_sha256 = files.weights_sha256()?;
        let vb = files.var_builder(options.dtype, &options.device)?;
        let network = DecoderModel::load(vb, &config).map_err(|e| {
            Error::model(
                &location,
                format!("cannot load {} weights: {e}", config.model_type),
            )
        })?;
        let mut dense = Vec::new();
        let mut dim = config.hidden_size;
        for (config_path, weights) in &files.dense_modules {
            let layer = load_dense(files, config_path, weights, dim, &options.device)?;
            dim = layer.1;
            dense.push(layer.0);
        }

        let info = LocalInfo {
            weights_sha256,
            shape: format!(
                "candle-decoder/{IMPLEMENTATION_VERSION}|{}|{pooling}|{normalize}|{max_tokens}|{}",
                profile.name,
                files.dense_sha256()?
            ),
            dim,
            max_tokens,
            pooling: pooling.to_string(),
            normalize,
            dtype: options.dtype,
            device: &options.device,
        }
        .into_info(model);
        Ok(DecoderEmbedder {
            model: network,
            tokenizer,
            profile,
            end_id,
            pooling,
            dense,
            normalize,
            max_tokens,
            device: options.device.clone(),
            workers: options.workers.max(1),
            info,
        })
    }

    /// Token ids of one prepared text: the tokenizer's own special tokens, truncated so
    /// the profile's end token still fits, then that token.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = encode(&self.tokenizer, text)?;
        match self.end_id {
            Some(end) if ids.last() != Some(&end) => {
                ids.truncate(self.max_tokens.saturating_sub(1));
                ids.push(end);
            }
            _ => ids.truncate(self.max_tokens),
        }
        Ok(ids)
    }

    fn forward(&self, texts: &[String]) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        // Right padding: last-token pooling reads each row's last real token, so the
        // padding side the model cards use (left) does not matter.
        let (ids, mask) = padded_batch(&rows, &self.device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        let mut pooled = self.pooling.apply(&hidden, &mask)?;
        for layer in &self.dense {
            pooled = layer.forward(&pooled)?;
        }
        if self.normalize {
            normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

/// The id of the profile's end token in this tokenizer.
fn end_token_id(files: &ModelFiles, tokenizer: &Tokenizer, end: EndToken) -> Result<Option<u32>> {
    let name = match end {
        EndToken::None => return Ok(None),
        EndToken::Named(name) => name.to_string(),
        EndToken::Eos => {
            let path = files.tokenizer_config.as_ref().ok_or_else(|| {
                Error::model(
                    &files.location,
                    "missing tokenizer_config.json (its eos_token ends every input)",
                )
            })?;
            let config: TokenizerConfig = files.read_json(path)?;
            match config.eos_token {
                Some(serde_json::Value::String(s)) => s,
                Some(serde_json::Value::Object(o)) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => {
                    return Err(Error::model(
                        &files.location,
                        format!("{}: no eos_token", path.display()),
                    ))
                }
            }
        }
    };
    tokenizer.token_to_id(&name).map(Some).ok_or_else(|| {
        Error::model(
            &files.location,
            format!("the tokenizer has no token `{name}`"),
        )
    })
}

/// One sentence-transformers Dense module; returns it with its output size.
fn load_dense(
    files: &ModelFiles,
    config_path: &Path,
    weights: &Path,
    input: usize,
    device: &Device,
) -> Result<(Linear, usize)> {
    let config: DenseConfig = files.read_json(config_path)?;
    let bad = |what: String| {
        Error::model(
            &files.location,
            format!("{}: {what}", config_path.display()),
        )
    };
    if config.in_features != input {
        return Err(bad(format!(
            "in_features {} but the previous layer gives {input}",
            config.in_features
        )));
    }
    if let Some(act) = &config.activation_function {
        if !act.ends_with("Identity") {
            return Err(bad(format!(
                "activation `{act}` is not supported (only Identity)"
            )));
        }
    }
    let vb = super::load::mmap_safetensors(&[weights.to_path_buf()], DType::F32, device)?;
    let weight = vb.get((config.out_features, input), "linear.weight")?;
    let bias = if config.bias {
        Some(vb.get(config.out_features, "linear.bias")?)
    } else {
        None
    };
    Ok((Linear::new(weight, bias), config.out_features))
}

impl Embedder for DecoderEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn prepare(&self, text: &str, role: Role, instruction: Option<&str>) -> String {
        self.profile.prepare(text, role, instruction)
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .forward(texts)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?)
    }

    fn input_lengths(&self, texts: &[&str]) -> Vec<usize> {
        token_lengths(texts, |t| self.token_ids(t))
    }

    fn parallel_batches(&self) -> usize {
        self.workers
    }
}
