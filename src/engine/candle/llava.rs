//! E5-V and other LLaVA-NeXT embedders: a CLIP vision tower, a two-layer projector and a
//! Llama-family decoder. A text or an image is wrapped in the profile's prompt, the
//! image's any-resolution tiles become feature tokens spliced in at `<image>`, and the
//! vector is the last token's final hidden state, L2-normalised.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::Linear;
use candle_transformers::models::clip::vision_model::ClipVisionTransformer;
use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::engine::candle::bert::LocalOptions;
use crate::engine::candle::clip::VisionJson;
use crate::engine::candle::decoder_model::{padded_batch, DecoderConfig, DecoderModel};
use crate::engine::candle::load::{encode, token_lengths, vision_dtype, LocalInfo, ModelFiles};
use crate::engine::candle::pooling::{normalize, Pooling};
use crate::engine::image::ImageInput;
use crate::engine::preprocess::{best_resolution, ProcessorConfig, Tiles};
use crate::engine::profile::Profile;
use crate::engine::ModelRef;
use crate::engine::{Embedder, EmbedderInfo, Role};
use crate::error::{Error, Result};

/// Bump when a code change alters the vectors, so cached embeddings are not reused.
const IMPLEMENTATION_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
struct LlavaNextJson {
    text_config: DecoderConfig,
    #[serde(default)]
    vision_config: VisionJson,
    image_grid_pinpoints: Vec<[usize; 2]>,
    #[serde(default = "default_feature_layer")]
    vision_feature_layer: i64,
    #[serde(default = "default_strategy")]
    vision_feature_select_strategy: String,
    #[serde(default = "default_projector_act")]
    projector_hidden_act: String,
    #[serde(default, alias = "image_token_id")]
    image_token_index: Option<u32>,
}

fn default_feature_layer() -> i64 {
    -2
}
fn default_strategy() -> String {
    "default".into()
}
fn default_projector_act() -> String {
    "gelu".into()
}

pub struct LlavaEmbedder {
    language: DecoderModel,
    vision: ClipVisionTransformer,
    /// Index into candle's per-layer outputs of the tower.
    feature_layer: usize,
    drop_class_token: bool,
    projector: (Linear, Linear),
    image_newline: Tensor,
    tokenizer: Tokenizer,
    image_token: u32,
    processor: ProcessorConfig,
    grid: Vec<[usize; 2]>,
    tile: usize,
    patches_per_side: usize,
    profile: &'static Profile,
    max_tokens: usize,
    device: Device,
    dtype: DType,
    vision_dtype: DType,
    workers: usize,
    info: EmbedderInfo,
}

impl LlavaEmbedder {
    pub fn load(
        model: &ModelRef,
        files: &ModelFiles,
        profile: &'static Profile,
        options: &LocalOptions,
    ) -> Result<LlavaEmbedder> {
        let location = files.location.clone();
        let bad = |what: String| Error::model(&location, what);
        let config: LlavaNextJson = files.read_json(&files.config)?;
        let v = &config.vision_config;
        if v.hidden_act != "quick_gelu" {
            return Err(bad(format!(
                "vision activation `{}` is not supported (only quick_gelu)",
                v.hidden_act
            )));
        }
        if config.projector_hidden_act != "gelu" {
            return Err(bad(format!(
                "projector activation `{}` is not supported (only gelu)",
                config.projector_hidden_act
            )));
        }
        // transformers counts the embeddings as hidden state 0; candle lists layer outputs.
        let layers = v.num_hidden_layers as i64;
        let hf_index = if config.vision_feature_layer < 0 {
            layers + 1 + config.vision_feature_layer
        } else {
            config.vision_feature_layer
        };
        if hf_index < 1 || hf_index > layers {
            return Err(bad(format!(
                "vision_feature_layer {} is out of range",
                config.vision_feature_layer
            )));
        }
        let drop_class_token = match config.vision_feature_select_strategy.as_str() {
            "default" => true,
            "full" => false,
            other => return Err(bad(format!("vision_feature_select_strategy `{other}`"))),
        };
        let mut processor: ProcessorConfig = match &files.preprocessor_config {
            Some(path) => files.read_json(path)?,
            None => return Err(bad("missing preprocessor_config.json".into())),
        };
        processor
            .image_grid_pinpoints
            .get_or_insert_with(|| config.image_grid_pinpoints.clone());
        let tile = processor.output_size().0;
        if tile != v.image_size {
            return Err(bad(format!(
                "the processor makes {tile}-pixel tiles but the vision tower takes {}",
                v.image_size
            )));
        }

        let tokenizer = files.tokenizer()?;
        let image_token = match config.image_token_index {
            Some(id) => id,
            None => tokenizer
                .token_to_id("<image>")
                .ok_or_else(|| bad("the tokenizer has no `<image>` token".into()))?,
        };

        let weights_sha256 = files.weights_sha256()?;
        let vb = files.var_builder(options.dtype, &options.device)?;
        let vision_dtype = vision_dtype(options.dtype, &options.device);
        let vision_vb = files.var_builder(vision_dtype, &options.device)?;
        // transformers ≥ 4.52 may save `model.language_model...`; E5-V's own files (and
        // 4.57's) `language_model.model...`.
        let prefixed = vb.contains_tensor("model.image_newline");
        let under_root = |vb: &candle_nn::VarBuilder<'static>| {
            if prefixed {
                vb.pp("model")
            } else {
                vb.clone()
            }
        };
        let (root, vision_root) = (under_root(&vb), under_root(&vision_vb));
        let load_err = |e: candle_core::Error| bad(format!("cannot load LLaVA-NeXT weights: {e}"));
        let language =
            DecoderModel::load(root.pp("language_model"), &config.text_config).map_err(load_err)?;
        let vision = ClipVisionTransformer::new(
            vision_root.pp("vision_tower").pp("vision_model"),
            &v.candle_config(0),
        )
        .map_err(load_err)?;
        let hidden = config.text_config.hidden_size;
        let projector = {
            let pb = vision_root.pp("multi_modal_projector");
            let linear = |input: usize, name: &str| -> candle_core::Result<Linear> {
                Ok(Linear::new(
                    pb.get((hidden, input), &format!("{name}.weight"))?,
                    Some(pb.get(hidden, &format!("{name}.bias"))?),
                ))
            };
            (
                linear(v.hidden_size, "linear_1").map_err(load_err)?,
                linear(hidden, "linear_2").map_err(load_err)?,
            )
        };
        let image_newline = root.get(hidden, "image_newline").map_err(load_err)?;
        let max_tokens = options.max_tokens.unwrap_or(4096);

        let info = LocalInfo {
            weights_sha256,
            shape: format!(
                "candle-llava-next/{IMPLEMENTATION_VERSION}|{}|{max_tokens}|{processor:?}",
                profile.name
            ),
            dim: hidden,
            max_tokens,
            pooling: "last-token".into(),
            normalize: true,
            dtype: options.dtype,
            device: &options.device,
        }
        .into_info(model);
        Ok(LlavaEmbedder {
            language,
            vision,
            feature_layer: (hf_index - 1) as usize,
            drop_class_token,
            projector,
            image_newline,
            tokenizer,
            image_token,
            processor,
            grid: config.image_grid_pinpoints,
            tile,
            patches_per_side: v.image_size / v.patch_size,
            profile,
            max_tokens,
            device: options.device.clone(),
            dtype: options.dtype,
            vision_dtype,
            workers: options.workers.max(1),
            info,
        })
    }

    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = encode(&self.tokenizer, text)?;
        // Keep the prompt's end (it is what the last token summarises): cut the middle.
        if ids.len() > self.max_tokens {
            let cut = ids.len() - self.max_tokens;
            ids.drain(1..1 + cut);
        }
        Ok(ids)
    }

    /// The feature tokens of one image (tokens, hidden), as LLaVA-NeXT packs them: the
    /// squeezed image's patches, then the grid's patches row by row with the padding
    /// cropped away and an `image_newline` after each row.
    fn image_features(&self, image: &ImageInput) -> Result<Tensor> {
        let Tiles {
            tiles,
            size: (height, width),
        } = self.processor.anyres_tiles(image)?;
        let s = self.tile;
        let count = tiles.len();
        let flat: Vec<f32> = tiles.into_iter().flatten().collect();
        let pixels =
            Tensor::from_vec(flat, (count, 3, s, s), &self.device)?.to_dtype(self.vision_dtype)?;
        let states = self.vision.output_hidden_states(&pixels)?;
        let mut features = states[self.feature_layer].clone();
        if self.drop_class_token {
            features = features.narrow(1, 1, features.dim(1)? - 1)?;
        }
        let features = self
            .projector
            .1
            .forward(&self.projector.0.forward(&features)?.gelu_erf()?)?;
        let p = self.patches_per_side;
        let dim = features.dim(D::Minus1)?;
        let base = features.get(0)?;
        let (canvas_h, canvas_w) = best_resolution((height, width), &self.grid);
        let (rows, cols) = (canvas_h / s, canvas_w / s);
        // (rows·cols, p², d) -> (d, rows·p, cols·p)
        let grid = features
            .narrow(0, 1, count - 1)?
            .reshape((rows, cols, p, p, dim))?
            .permute((4, 0, 2, 1, 3))?
            .reshape((dim, rows * p, cols * p))?;
        let grid = unpad(&grid, (height, width))?;
        let (_, h, w) = grid.dims3()?;
        let newline = self
            .image_newline
            .to_dtype(grid.dtype())?
            .reshape((dim, 1, 1))?
            .broadcast_as((dim, h, 1))?;
        let grid = Tensor::cat(&[&grid, &newline], 2)?
            .reshape((dim, h * (w + 1)))?
            .t()?;
        Ok(Tensor::cat(&[&base, &grid], 0)?.to_dtype(self.dtype)?)
    }

    /// The last token's normalised final hidden state for one image prompt, with the
    /// image's features in place of its `<image>` token.
    fn embed_image(&self, prompt: &str, features: &Tensor) -> Result<Vec<f32>> {
        let ids = self.token_ids(prompt)?;
        let embed = |part: &[u32]| -> Result<Tensor> {
            let t = Tensor::new(part, &self.device)?.unsqueeze(0)?;
            Ok(self.language.embed_tokens(&t)?.squeeze(0)?)
        };
        let sequence = match ids.iter().position(|&t| t == self.image_token) {
            Some(at) => {
                let mut parts = Vec::new();
                if at > 0 {
                    parts.push(embed(&ids[..at])?);
                }
                parts.push(features.clone());
                if at + 1 < ids.len() {
                    parts.push(embed(&ids[at + 1..])?);
                }
                Tensor::cat(&parts, 0)?
            }
            None => {
                return Err(Error::Usage(format!(
                    "the image prompt has no `<image>` token: {prompt:?}"
                )))
            }
        };
        let len = sequence.dim(0)?;
        let mask = Tensor::ones((1, len), DType::U32, &self.device)?;
        let hidden = self
            .language
            .forward_embeds(&sequence.unsqueeze(0)?, &mask)?;
        let last = hidden.get(0)?.get(len - 1)?.unsqueeze(0)?;
        Ok(normalize(&last.to_dtype(DType::F32)?)?
            .squeeze(0)?
            .to_vec1::<f32>()?)
    }
}

/// Crops the padding LLaVA-NeXT's canvas added around an image of (height, width) from
/// a (d, H, W) feature grid (transformers' `unpad_image`).
fn unpad(grid: &Tensor, (height, width): (usize, usize)) -> candle_core::Result<Tensor> {
    let (_, cur_h, cur_w) = grid.dims3()?;
    let round7 = |x: f64| ((x * 1e7).round() / 1e7) as usize;
    if width as f64 / height as f64 > cur_w as f64 / cur_h as f64 {
        let new_h = round7(height as f64 * (cur_w as f64 / width as f64));
        let pad = (cur_h - new_h) / 2;
        grid.narrow(1, pad, cur_h - 2 * pad)
    } else {
        let new_w = round7(width as f64 * (cur_h as f64 / height as f64));
        let pad = (cur_w - new_w) / 2;
        grid.narrow(2, pad, cur_w - 2 * pad)
    }
}

impl Embedder for LlavaEmbedder {
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
        let rows: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        let (ids, mask) = padded_batch(&rows, &self.device)?;
        let hidden = self.language.forward(&ids, &mask)?;
        let last = Pooling::LastToken.apply(&hidden, &mask)?;
        Ok(normalize(&last)?.to_vec2::<f32>()?)
    }

    fn embed_images(&self, images: &[ImageInput], prompt: Option<&str>) -> Result<Vec<Vec<f32>>> {
        let prompt = prompt.unwrap_or(self.profile.image_template);
        let features: Vec<Tensor> = images
            .par_iter()
            .map(|image| self.image_features(image))
            .collect::<Result<_>>()?;
        features
            .iter()
            .map(|f| self.embed_image(prompt, f))
            .collect()
    }

    fn input_lengths(&self, texts: &[&str]) -> Vec<usize> {
        token_lengths(texts, |t| self.token_ids(t))
    }

    fn parallel_batches(&self) -> usize {
        self.workers
    }
}
