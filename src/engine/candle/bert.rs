//! BERT-family sentence embedders (MiniLM, BGE, ...) with sentence-transformers semantics:
//! pooling and normalisation from `modules.json` / `1_Pooling/config.json`, truncation at
//! `max_seq_length` from `sentence_bert_config.json`.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::engine::candle::bert_model::{BertConfig, BertModel};
use crate::engine::candle::load::{has_normalize_module, LocalInfo, ModelFiles};
use crate::engine::candle::pooling::{normalize, Pooling};
use crate::engine::ModelRef;
use crate::engine::{Embedder, EmbedderInfo};
use crate::error::{Error, Result};

/// Bump when a code change alters the vectors, so cached embeddings are not reused.
const IMPLEMENTATION_VERSION: u32 = 4;

/// Choices for local embedders that override what the model's own configs say.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub device: Device,
    pub dtype: DType,
    pub pooling: Option<Pooling>,
    pub max_tokens: Option<usize>,
    pub normalize: Option<bool>,
    /// Batches embedded at once from different threads.
    pub workers: usize,
    /// The model profile (prompts, pooling) by name, instead of detecting it.
    pub profile: Option<String>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            pooling: None,
            max_tokens: None,
            normalize: None,
            workers: 1,
            profile: None,
        }
    }
}

pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    device: Device,
    workers: usize,
    info: EmbedderInfo,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl BertEmbedder {
    pub fn load(model: &ModelRef, options: &LocalOptions) -> Result<BertEmbedder> {
        let files = ModelFiles::resolve(model)?;
        let location = files.location.clone();
        let config: BertConfig = files.read_json(&files.config)?;

        let pooling = match (options.pooling, &files.pooling_config) {
            (Some(p), _) => p,
            (None, Some(path)) => {
                let pc: PoolingConfig = files.read_json(path)?;
                match (
                    pc.pooling_mode_cls_token,
                    pc.pooling_mode_mean_tokens,
                    pc.pooling_mode_lasttoken,
                ) {
                    (true, false, false) => Pooling::Cls,
                    (false, true, false) => Pooling::Mean,
                    (false, false, true) => Pooling::LastToken,
                    _ => {
                        return Err(Error::model(
                            &location,
                            format!(
                                "{}: exactly one of cls / mean / lasttoken pooling must be set",
                                path.display()
                            ),
                        ))
                    }
                }
            }
            // A bare BERT checkpoint: sentence-transformers defaults to mean pooling.
            (None, None) => Pooling::Mean,
        };
        let normalize = match (options.normalize, &files.modules) {
            (Some(n), _) => n,
            (None, Some(modules)) => has_normalize_module(modules)?,
            (None, None) => false,
        };
        let configured_max = files.max_seq_length()?;
        let max_tokens = options
            .max_tokens
            .or(configured_max)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);

        let mut tokenizer = files.tokenizer()?;
        // The tokenizer file may carry its own limits (MiniLM's says 128): ours rule.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: config.pad_token_id as u32,
            ..Default::default()
        }));

        let weights_sha256 = files.weights_sha256()?;
        let vb = files.var_builder(options.dtype, &options.device)?;
        let bert = BertModel::load(vb, &config)
            .map_err(|e| Error::model(&location, format!("cannot load BERT weights: {e}")))?;
        let info = LocalInfo {
            weights_sha256,
            shape: format!(
                "candle-bert/{IMPLEMENTATION_VERSION}|{pooling}|{normalize}|{max_tokens}"
            ),
            dim: config.hidden_size,
            max_tokens,
            pooling: pooling.to_string(),
            normalize,
            dtype: options.dtype,
            device: &options.device,
        }
        .into_info(model);
        Ok(BertEmbedder {
            model: bert,
            tokenizer,
            pooling,
            normalize,
            device: options.device.clone(),
            workers: options.workers.max(1),
            info,
        })
    }

    fn forward(&self, texts: &[String]) -> Result<Tensor> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, cols), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, cols), &self.device)?;
        let mask = Tensor::from_vec(
            flat(&|e| e.get_attention_mask()),
            (rows, cols),
            &self.device,
        )?;
        let hidden = self.model.forward(&ids, &types, &mask)?;
        let pooled = self.pooling.apply(&hidden, &mask)?;
        if self.normalize {
            normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.forward(texts)?.to_vec2::<f32>()?)
    }

    fn input_lengths(&self, texts: &[&str]) -> Vec<usize> {
        let count = |t: &&str| {
            self.tokenizer
                .encode(*t, true)
                .map_or_else(|_| t.chars().count(), |e| e.get_ids().len())
        };
        // Counted on the embedding threads: this pass runs before any batch starts, so
        // on one thread it would be serial time.
        let per_thread = texts.len().div_ceil(self.workers).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = texts
                .chunks(per_thread)
                .map(|part| scope.spawn(move || part.iter().map(count).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    fn parallel_batches(&self) -> usize {
        self.workers
    }
}
