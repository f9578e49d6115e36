//! Local models run with candle on CPU (or CUDA / Metal with the cargo features).

pub mod attention;
pub mod bert;
pub mod bert_model;
pub mod clip;
pub mod decoder;
pub mod decoder_model;
pub mod kernels;
pub mod llava;
pub mod load;
pub mod packed_linear;
pub mod pooling;
pub mod safetensors_header;

pub use bert::{BertEmbedder, LocalOptions};
pub use clip::ClipEmbedder;
pub use decoder::DecoderEmbedder;
use decoder_model::DecoderConfig;
pub use llava::LlavaEmbedder;
pub use load::{parse_device, ModelFiles};
pub use pooling::Pooling;

use crate::engine::profile::Profile;
use crate::engine::Embedder;
use crate::engine::ModelRef;
use crate::error::{Error, Result};

/// Loads the right local embedder for the model's architecture (`config.json`).
pub fn load_embedder(model: &ModelRef, options: &LocalOptions) -> Result<Box<dyn Embedder>> {
    let files = ModelFiles::resolve(model)?;
    let config: serde_json::Value = files.read_json(&files.config)?;
    let model_type = config["model_type"].as_str().unwrap_or("");
    if matches!(model_type, "bert" | "roberta" | "xlm-roberta") {
        return Ok(Box::new(BertEmbedder::load(model, options)?));
    }
    if model_type == "clip" {
        return Ok(Box::new(ClipEmbedder::load(model, &files, options)?));
    }
    if model_type == "llava_next" {
        let profile = decoder_profile(model, model_type, &files, options)?;
        return Ok(Box::new(LlavaEmbedder::load(
            model, &files, profile, options,
        )?));
    }
    if DecoderConfig::SUPPORTED.contains(&model_type) {
        let profile = decoder_profile(model, model_type, &files, options)?;
        let config: DecoderConfig = files.read_json(&files.config)?;
        return Ok(Box::new(DecoderEmbedder::load(
            model, &files, config, profile, options,
        )?));
    }
    Err(Error::model(
        &files.location,
        format!(
            "model_type `{model_type}` is not supported by the local engine (supported: bert, clip, llava_next, {})",
            DecoderConfig::SUPPORTED.join(", ")
        ),
    ))
}

/// The profile named by `--profile`, else the one the model's id or type points to.
fn decoder_profile(
    model: &ModelRef,
    model_type: &str,
    files: &ModelFiles,
    options: &LocalOptions,
) -> Result<&'static Profile> {
    match &options.profile {
        Some(name) => Profile::named(name).ok_or_else(|| {
            Error::Usage(format!(
                "--profile `{name}`: expected one of {}",
                Profile::names().join(", ")
            ))
        }),
        None => Profile::detect(&model.to_string(), model_type).ok_or_else(|| {
            Error::model(
                &files.location,
                format!(
                    "model_type `{model_type}` has no embedding profile (known: {}); \
                     name one with --profile",
                    Profile::names().join(", ")
                ),
            )
        }),
    }
}
