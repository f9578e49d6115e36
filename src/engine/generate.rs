//! Text generation: the `Generator` trait shared by local (candle) and remote (OpenAI-
//! compatible) chat models, and the request and answer types the tasks and the load
//! generator use.

use serde::{Deserialize, Serialize};

use crate::engine::Timing;
use crate::error::Result;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// What the model continues: a conversation (rendered with the model's chat template) or
/// raw text (a completion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
}

impl Prompt {
    /// The prompt's own text, for counting tokens when a server reports none.
    pub fn plain_text(&self) -> String {
        match self {
            Prompt::Chat(messages) => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            Prompt::Text(text) => text.clone(),
        }
    }
}

/// Decoding settings. `max_tokens` is always set: some servers have no default limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub max_tokens: u32,
    /// 0 is greedy.
    pub temperature: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Stream tokens as they are made (needed for time to first token).
    pub stream: bool,
    /// Generate exactly `max_tokens`, ignoring end-of-sequence (benchmarks; llama.cpp and
    /// vLLM accept it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            seed: None,
            stop: Vec::new(),
            stream: true,
            ignore_eos: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub prompt: Prompt,
    pub params: GenerationParams,
}

/// Token counts and where they came from: `server` (its `usage`), `local-tokenizer`
/// (the engine's tokenizer over the prompt's and the answer's text; chat templates are
/// not counted) or `stream-chunks` (one per streamed chunk, when nothing better exists).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub source: Option<String>,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    /// `stop`, `length`, ... as the engine reports it.
    pub finish_reason: Option<String>,
    pub tokens: TokenCounts,
    /// The model name the server reported.
    pub served_model: Option<String>,
    pub timing: Timing,
}

impl Generation {
    /// Time to first token, from the scheduled send (streamed requests only).
    pub fn ttft(&self) -> Option<f64> {
        self.timing.first_token.map(|t| t - self.timing.scheduled)
    }

    /// End-to-end latency from the scheduled send.
    pub fn latency(&self) -> f64 {
        self.timing.end - self.timing.scheduled
    }
}

/// What a run record says about the generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorInfo {
    /// The model reference as given, credentials removed.
    pub model: String,
    pub engine: String,
    pub device: String,
    /// The native GGUF path: which of llama.cpp's arithmetics it computed, on which kernels
    /// (`ggml-x86-avx2 (avx2+fma kernels)`); it agrees with llama.cpp builds of that set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arithmetic: Option<String>,
}

/// A model that writes text. Implementations are blocking; `parallel_requests` of them
/// may run at once from different threads.
pub trait Generator: Send + Sync {
    fn info(&self) -> &GeneratorInfo;

    fn generate(&self, request: &GenerationRequest) -> Result<Generation>;

    fn parallel_requests(&self) -> usize {
        1
    }

    /// Log-probability of each continuation after `context`, summed over its tokens
    /// (lm-eval's `loglikelihood`). Needs the model's logits: local engines only.
    fn loglikelihoods(&self, _context: &str, _continuations: &[String]) -> Result<Vec<f64>> {
        Err(crate::error::Error::Usage(format!(
            "{}: log-likelihood scoring needs a local model (an endpoint returns text, not the logits of given tokens)",
            self.info().model
        )))
    }

    /// The records of every request so far (for `perf.jsonl`), leaving the log empty.
    fn request_log(&self) -> Vec<crate::engine::RequestRecord> {
        Vec::new()
    }
}
