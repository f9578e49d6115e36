//! CLIP image-text embedders (candle-transformers' towers): text read at the end-of-text
//! token, images at the class token, each through its projection, L2-normalised.
//! Images are preprocessed as the model's `preprocessor_config.json` says (see
//! `engine::preprocess`).

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::Linear;
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::engine::candle::bert::LocalOptions;
use crate::engine::candle::decoder_model::padded_batch;
use crate::engine::candle::load::{encode, token_lengths, vision_dtype, LocalInfo, ModelFiles};
use crate::engine::candle::pooling::normalize;
use crate::engine::image::ImageInput;
use crate::engine::preprocess::ProcessorConfig;
use crate::engine::ModelRef;
use crate::engine::{Embedder, EmbedderInfo};
use crate::error::{Error, Result};

/// Bump when a code change alters the vectors, so cached embeddings are not reused.
const IMPLEMENTATION_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
struct ClipJson {
    #[serde(default = "default_projection")]
    projection_dim: usize,
    #[serde(default)]
    text_config: TextJson,
    #[serde(default)]
    vision_config: VisionJson,
}

/// `text_config` with transformers' CLIPTextConfig defaults.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct TextJson {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
}

impl Default for TextJson {
    fn default() -> Self {
        TextJson {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
        }
    }
}

/// `vision_config` with transformers' CLIPVisionConfig defaults.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct VisionJson {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
}

impl VisionJson {
    /// candle's config for this tower (`projection_dim` is not used by the tower).
    pub(crate) fn candle_config(&self, projection_dim: usize) -> ClipVisionConfig {
        ClipVisionConfig {
            embed_dim: self.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            projection_dim,
            num_channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
        }
    }
}

impl Default for VisionJson {
    fn default() -> Self {
        VisionJson {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
        }
    }
}

fn default_projection() -> usize {
    512
}

pub struct ClipEmbedder {
    text: ClipTextTransformer,
    vision: ClipVisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    tokenizer: Tokenizer,
    processor: ProcessorConfig,
    image_size: usize,
    max_tokens: usize,
    device: Device,
    vision_dtype: DType,
    workers: usize,
    info: EmbedderInfo,
}

impl ClipEmbedder {
    pub fn load(
        model: &ModelRef,
        files: &ModelFiles,
        options: &LocalOptions,
    ) -> Result<ClipEmbedder> {
        let location = files.location.clone();
        let config: ClipJson = files.read_json(&files.config)?;
        for (tower, act) in [
            ("text", &config.text_config.hidden_act),
            ("vision", &config.vision_config.hidden_act),
        ] {
            if act != "quick_gelu" {
                return Err(Error::model(
                    &location,
                    format!("{tower} tower activation `{act}` is not supported (only quick_gelu)"),
                ));
            }
        }
        let t = &config.text_config;
        let text_config = ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: config.projection_dim,
        };
        let v = &config.vision_config;
        let vision_config = v.candle_config(config.projection_dim);
        let processor: ProcessorConfig = match &files.preprocessor_config {
            Some(path) => files.read_json(path)?,
            None => serde_json::from_str("{}").expect("defaults"),
        };
        if processor.output_size() != (v.image_size, v.image_size) {
            return Err(Error::model(
                &location,
                format!(
                    "the processor makes {:?} images but the vision tower takes {}",
                    processor.output_size(),
                    v.image_size
                ),
            ));
        }
        let tokenizer = files.tokenizer()?;
        let max_tokens = options
            .max_tokens
            .unwrap_or(t.max_position_embeddings)
            .min(t.max_position_embeddings);

        let weights_sha256 = files.weights_sha256()?;
        let vb = files.var_builder(options.dtype, &options.device)?;
        let vision_dtype = vision_dtype(options.dtype, &options.device);
        let vision_vb = files.var_builder(vision_dtype, &options.device)?;
        let load_err = |e: candle_core::Error| {
            Error::model(&location, format!("cannot load CLIP weights: {e}"))
        };
        let text = ClipTextTransformer::new(vb.pp("text_model"), &text_config).map_err(load_err)?;
        let vision = ClipVisionTransformer::new(vision_vb.pp("vision_model"), &vision_config)
            .map_err(load_err)?;
        let projection = |vb: &candle_nn::VarBuilder, input: usize, name: &str| -> Result<Linear> {
            Ok(Linear::new(
                vb.get((config.projection_dim, input), &format!("{name}.weight"))
                    .map_err(load_err)?,
                None,
            ))
        };
        let text_projection = projection(&vb, t.hidden_size, "text_projection")?;
        let visual_projection = projection(&vision_vb, v.hidden_size, "visual_projection")?;

        let info = LocalInfo {
            weights_sha256,
            shape: format!("candle-clip/{IMPLEMENTATION_VERSION}|{max_tokens}|{processor:?}"),
            dim: config.projection_dim,
            max_tokens,
            pooling: "eos-token / class-token".into(),
            normalize: true,
            dtype: options.dtype,
            device: &options.device,
        }
        .into_info(model);
        Ok(ClipEmbedder {
            text,
            vision,
            text_projection,
            visual_projection,
            tokenizer,
            processor,
            image_size: v.image_size,
            max_tokens,
            device: options.device.clone(),
            vision_dtype,
            workers: options.workers.max(1),
            info,
        })
    }

    /// Token ids, cut to the context with the end-of-text token kept last (as OpenAI's
    /// and open_clip's tokenizers do).
    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = encode(&self.tokenizer, text)?;
        if ids.len() > self.max_tokens {
            let end = *ids.last().expect("non-empty");
            ids.truncate(self.max_tokens);
            *ids.last_mut().expect("non-empty") = end;
        }
        Ok(ids)
    }

    fn text_features(&self, texts: &[String]) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        let (ids, _) = padded_batch(&rows, &self.device)?;
        // The causal mask keeps padding after a text from changing it; the vector is read
        // at the text's last token, its end-of-text.
        let hidden = self.text.forward_with_mask(&ids, usize::MAX)?;
        let picked = rows
            .iter()
            .enumerate()
            .map(|(i, r)| hidden.i((i, r.len() - 1)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = Tensor::stack(&picked, 0)?;
        normalize(
            &self
                .text_projection
                .forward(&pooled)?
                .to_dtype(DType::F32)?,
        )
    }

    /// The processor's pixel tensor (batch, 3, size, size) for these images.
    pub fn pixel_values(&self, images: &[ImageInput]) -> Result<Tensor> {
        let planes: Vec<Vec<f32>> = images
            .par_iter()
            .map(|image| self.processor.pixel_values(image))
            .collect::<Result<_>>()?;
        let s = self.image_size;
        let flat: Vec<f32> = planes.into_iter().flatten().collect();
        Ok(
            Tensor::from_vec(flat, (images.len(), 3, s, s), &self.device)?
                .to_dtype(self.vision_dtype)?,
        )
    }
}

impl Embedder for ClipEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.text_features(texts)?.to_vec2::<f32>()?)
    }

    fn embed_images(&self, images: &[ImageInput], _prompt: Option<&str>) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pooled = self.vision.forward(&self.pixel_values(images)?)?;
        let features = self
            .visual_projection
            .forward(&pooled)?
            .to_dtype(DType::F32)?;
        Ok(normalize(&features)?.to_vec2::<f32>()?)
    }

    fn input_lengths(&self, texts: &[&str]) -> Vec<usize> {
        token_lengths(texts, |t| self.token_ids(t))
    }

    fn parallel_batches(&self) -> usize {
        self.workers
    }
}
