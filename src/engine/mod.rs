//! How a model is run. Engines know nothing of tasks or metrics: an embedder turns
//! texts into vectors, and the eval runners drive it.

pub mod candle;
pub mod contain;
pub mod generate;
pub mod image;
pub mod local;
pub mod model_ref;
pub mod openai;
pub mod preprocess;
pub mod profile;

pub use image::ImageInput;
pub use model_ref::ModelRef;

pub use generate::{
    ChatMessage, Generation, GenerationParams, GenerationRequest, Generator, GeneratorInfo, Prompt,
    TokenCounts,
};

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::error::Result;

/// Whether an input is a query or a document: asymmetric models prompt them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Query,
    Document,
}

/// When a request happened, as seconds since the engine started. Remote engines fill
/// every field; the load generator and the run records share this shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    /// When the caller wanted the request sent (equals `sent` for closed-loop callers).
    pub scheduled: f64,
    /// When the successful (or last) attempt was sent.
    pub sent: f64,
    /// When the response headers of that attempt arrived.
    pub first_byte: Option<f64>,
    /// When the first streamed chunk carrying generated text arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token: Option<f64>,
    /// Arrival time of every streamed chunk carrying generated text (one token per chunk
    /// on llama.cpp, vLLM and OpenAI), for inter-token latency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_times: Vec<f64>,
    pub end: f64,
    pub attempts: u32,
    /// Why earlier attempts failed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
}

/// One line of `perf.jsonl`: one HTTP request, with every attempt's story.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// `embeddings`, `chat` or `completions`. (`Cow`: no allocation per request.)
    pub kind: Cow<'static, str>,
    /// Texts in the request (embeddings) or 1.
    pub inputs: usize,
    #[serde(flatten)]
    pub timing: Timing,
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Where the token counts came from: `server`, `local-tokenizer`, `stream-chunks`.
    pub tokens_from: Option<Cow<'static, str>>,
    pub served_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    pub error: Option<String>,
}

impl RequestRecord {
    /// A request that produced nothing but an error.
    pub fn failed(kind: &'static str, inputs: usize, timing: Timing, error: String) -> Self {
        RequestRecord {
            kind: kind.into(),
            inputs,
            timing,
            input_tokens: None,
            output_tokens: None,
            tokens_from: None,
            served_model: None,
            finish_reason: None,
            error: Some(error),
        }
    }
}

/// What a run record says about the embedder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedderInfo {
    /// The model reference as given (`dir:...`, `hf:...`).
    pub model: String,
    pub engine: String,
    /// sha256 over the weight files.
    pub weights_sha256: String,
    /// Identifies everything that shapes a vector (weights, pooling, truncation, dtype):
    /// the embedding cache is keyed by it.
    pub fingerprint: String,
    pub dim: usize,
    pub max_tokens: usize,
    pub pooling: String,
    pub normalize: bool,
    pub dtype: String,
    pub device: String,
    /// The model name a remote server reported in its responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
}

/// A model that embeds text. Implementations are blocking and may use many threads.
pub trait Embedder: Send + Sync {
    fn info(&self) -> &EmbedderInfo;

    /// The exact text the model sees for an input in this role: the model's prompts and
    /// the task's instruction are applied here, so one task spec serves every model.
    fn prepare(&self, text: &str, role: Role, instruction: Option<&str>) -> String {
        let _ = (role, instruction);
        text.to_string()
    }

    /// One vector per prepared text, in input order.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;

    /// A cost measure per text for grouping similar lengths into a batch (less padding):
    /// token counts where the engine has a tokenizer, else characters.
    fn input_lengths(&self, texts: &[&str]) -> Vec<usize> {
        texts.iter().map(|t| t.chars().count()).collect()
    }

    /// One vector per image, in input order; `prompt` is the text that goes with each image
    /// (multimodal embedders such as E5-V are prompted). Text-only models refuse.
    fn embed_images(&self, images: &[ImageInput], prompt: Option<&str>) -> Result<Vec<Vec<f32>>> {
        let _ = (images, prompt);
        Err(crate::error::Error::Usage(format!(
            "model `{}` embeds text only",
            self.info().model
        )))
    }

    /// Per-request records (timings, token counts) since the last call, for `perf.jsonl`.
    fn request_log(&self) -> Vec<RequestRecord> {
        Vec::new()
    }

    /// How many batches may be embedded at once from different threads.
    fn parallel_batches(&self) -> usize {
        1
    }
}
