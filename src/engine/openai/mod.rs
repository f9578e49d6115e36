//! Remote models behind any OpenAI-compatible HTTP API (a self-hosted server such as
//! llama.cpp's llama-server or vLLM, or a provider).

pub mod chat;
pub mod client;
pub mod embeddings;
pub mod limits;
pub mod transport;

pub use crate::engine::RequestRecord;
pub use chat::RemoteGenerator;
pub use client::{HttpClient, RetryPolicy, Timing};
pub use embeddings::RemoteEmbedder;
pub use limits::ResponseLimit;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// How a remote model is reached and how hard to try.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per attempt, from sending to the last byte.
    pub timeout: Duration,
    /// Ask for base64-encoded vectors (smaller responses) instead of JSON floats.
    pub base64: bool,
    /// `dimensions` for models that can shorten their vectors.
    pub dimensions: Option<usize>,
    pub retry: RetryPolicy,
    /// Counts tokens when the server's responses carry no `usage`.
    pub tokenizer: Option<Arc<tokenizers::Tokenizer>>,
    /// Prompts and instructions to put around texts (servers add none of their own).
    pub profile: Option<&'static crate::engine::profile::Profile>,
    /// Replaces the size caps derived from each request (`--max-response-bytes`).
    pub max_response_bytes: Option<u64>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            concurrency: 4,
            timeout: Duration::from_secs(60),
            base64: false,
            dimensions: None,
            retry: RetryPolicy::default(),
            tokenizer: None,
            profile: None,
            max_response_bytes: None,
        }
    }
}

/// Records of requests as they finish, taken (and emptied) for `perf.jsonl`.
#[derive(Default)]
pub struct RequestLog(Mutex<Vec<RequestRecord>>);

impl RequestLog {
    pub fn push(&self, record: RequestRecord) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    pub fn take(&self) -> Vec<RequestRecord> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The small runtime each remote engine drives its requests on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::External(format!("cannot start the async runtime: {e}")))
}

/// Counts tokens with the local tokenizer (no special tokens).
pub(crate) fn count_tokens(tokenizer: &tokenizers::Tokenizer, text: &str) -> Option<u64> {
    tokenizer
        .encode(text, false)
        .ok()
        .map(|e| e.get_ids().len() as u64)
}

/// `openai:BASE_URL#MODEL`: where to send requests and which model to name in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base_url: String,
    pub model: String,
}

impl Endpoint {
    pub fn parse(reference: &str) -> Result<Endpoint> {
        let usage = || {
            Error::Usage(format!(
                "model `{}`: a remote model is openai:BASE_URL#MODEL, e.g. openai:http://127.0.0.1:8080/v1#my-model",
                redact_url(reference)
            ))
        };
        let rest = reference.strip_prefix("openai:").ok_or_else(usage)?;
        let (base, model) = rest.rsplit_once('#').ok_or_else(usage)?;
        let base = base.trim_end_matches('/');
        if model.is_empty() || !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(usage());
        }
        Ok(Endpoint {
            base_url: base.to_string(),
            model: model.to_string(),
        })
    }

    /// `<base>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// The reference without any credentials embedded in the URL.
    pub fn display(&self) -> String {
        format!("openai:{}#{}", redact_url(&self.base_url), self.model)
    }
}

/// Drops `user:password@` from a URL so it can be logged.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// An API key. It never prints: `Debug` and `Display` show `***`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The key from the environment variable `name`, if set and non-empty.
    pub fn from_env(name: &str) -> Option<Secret> {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(Secret)
    }

    /// The key stored in a file (first line).
    pub fn from_file(path: &Path) -> Result<Secret> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let key = text.lines().next().unwrap_or("").trim().to_string();
        if key.is_empty() {
            return Err(Error::input(path, "the API key file is empty"));
        }
        Ok(Secret(key))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints_and_hides_credentials() {
        let e = Endpoint::parse("openai:http://127.0.0.1:8082/v1/#all-MiniLM-L6-v2").unwrap();
        assert_eq!(e.base_url, "http://127.0.0.1:8082/v1");
        assert_eq!(e.model, "all-MiniLM-L6-v2");
        assert_eq!(e.url("embeddings"), "http://127.0.0.1:8082/v1/embeddings");
        let e = Endpoint::parse("openai:https://me:pw@host.example/v1#m").unwrap();
        assert_eq!(e.display(), "openai:https://***@host.example/v1#m");
        assert!(Endpoint::parse("openai:127.0.0.1:8082#m").is_err());
        assert!(Endpoint::parse("openai:http://x/v1").is_err());
        let err = Endpoint::parse("openai:https://me:pw@host/v1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
        assert_eq!(format!("{:?}", Secret("sk-123".into())), "Secret(***)");
    }
}
