//! Local models run with candle on CPU (or CUDA / Metal with the cargo features).

pub mod bert;
pub mod bert_model;
pub mod kernels;
pub mod load;
pub mod pooling;

pub use bert::{BertEmbedder, BertOptions};
pub use load::{parse_device, ModelFiles};
pub use pooling::Pooling;

use crate::engine::Embedder;
use crate::error::{Error, Result};
use crate::spec::ModelRef;

/// Loads the right local embedder for the model's architecture (`config.json`).
pub fn load_embedder(model: &ModelRef, options: &BertOptions) -> Result<Box<dyn Embedder>> {
    let files = ModelFiles::resolve(model)?;
    let config: serde_json::Value = files.read_json(&files.config)?;
    let model_type = config["model_type"].as_str().unwrap_or("");
    match model_type {
        "bert" | "roberta" | "xlm-roberta" => Ok(Box::new(BertEmbedder::load(model, options)?)),
        other => Err(Error::model(
            &files.location,
            format!("model_type `{other}` is not supported by the local engine (supported: bert)"),
        )),
    }
}
