//! `POST /v1/chat/completions` and `/v1/completions` as a `Generator`, plain or streamed
//! (server-sent events, with `stream_options.include_usage` so the server reports token
//! counts at the end). Streamed answers record when every text chunk arrived.

use serde::Deserialize;
use serde_json::json;

use crate::engine::openai::client::{HttpClient, StreamState};
use crate::engine::openai::{
    count_tokens, Endpoint, RemoteOptions, RequestLog, RequestRecord, ResponseLimit, Secret,
};
use crate::engine::{Generation, GenerationRequest, Generator, GeneratorInfo, Prompt, TokenCounts};
use crate::error::{Error, Result};

pub struct RemoteGenerator {
    client: HttpClient,
    runtime: tokio::runtime::Runtime,
    options: RemoteOptions,
    info: GeneratorInfo,
    log: RequestLog,
}

/// A plain (non-streamed) answer; chat puts the text in `message`, completions in `text`.
#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
struct Choice {
    #[serde(default)]
    message: Option<Content>,
    #[serde(default)]
    delta: Option<Content>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Content {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl Choice {
    fn text(&self) -> Option<&str> {
        self.message
            .as_ref()
            .or(self.delta.as_ref())
            .and_then(|c| c.content.as_deref())
            .or(self.text.as_deref())
    }
}

/// A streamed answer as it accumulates.
#[derive(Default)]
struct Streamed {
    text: String,
    chunks: u64,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
}

impl StreamState for Streamed {
    fn on_event(&mut self, data: &str) -> std::result::Result<bool, String> {
        let chunk: Response = serde_json::from_str(data).map_err(|e| e.to_string())?;
        if let Some(error) = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.get("error").cloned())
        {
            return Err(format!("the server reported an error mid-stream: {error}"));
        }
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut carried = false;
        if let Some(choice) = chunk.choices.first() {
            if let Some(piece) = choice.text().filter(|t| !t.is_empty()) {
                self.text.push_str(piece);
                self.chunks += 1;
                carried = true;
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason.clone();
            }
        }
        Ok(carried)
    }

    fn complete(&self) -> bool {
        self.finish_reason.is_some()
    }
}

/// A streamed answer read from raw body chunks exactly as an attempt reads it: the text
/// and why it finished, or the failure and whether it would be retried. Lets tests feed
/// the parser any bytes, split anywhere.
pub fn read_streamed_answer(
    chunks: Vec<bytes::Bytes>,
    max_tokens: usize,
) -> std::result::Result<(String, Option<String>), (String, bool)> {
    use futures_util::FutureExt;
    let limit = ResponseLimit::generation(max_tokens, None);
    let parsed = crate::engine::openai::client::parse_event_stream::<Streamed>(chunks, &limit)
        .now_or_never()
        .unwrap_or_else(|| Err(("an in-memory stream waited".into(), false)))?;
    Ok((parsed.text, parsed.finish_reason))
}

impl RemoteGenerator {
    pub fn connect(
        endpoint: Endpoint,
        key: Option<Secret>,
        options: RemoteOptions,
    ) -> Result<Self> {
        let client = HttpClient::new(
            endpoint.clone(),
            key,
            options.timeout,
            options.retry.clone(),
        )?;
        Ok(RemoteGenerator {
            client,
            runtime: super::runtime()?,
            info: GeneratorInfo {
                model: endpoint.display(),
                engine: "openai".into(),
                device: endpoint.display(),
                arithmetic: None,
            },
            options,
            log: RequestLog::default(),
        })
    }

    /// The request body, `max_tokens` always set (some servers never stop otherwise).
    fn body(&self, request: &GenerationRequest) -> serde_json::Value {
        let p = &request.params;
        let mut body = json!({
            "model": self.client.endpoint().model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "stream": p.stream,
        });
        match &request.prompt {
            Prompt::Chat(messages) => body["messages"] = json!(messages),
            Prompt::Text(text) => body["prompt"] = json!(text),
        }
        if p.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(top_p) = p.top_p {
            body["top_p"] = json!(top_p);
        }
        if let Some(seed) = p.seed {
            body["seed"] = json!(seed);
        }
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        if p.ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        body
    }

    /// Sends one request; `scheduled` is when an open-loop caller meant to send it. The
    /// record is complete whatever the outcome.
    pub async fn call(
        &self,
        request: &GenerationRequest,
        scheduled: Option<f64>,
    ) -> (Result<Generation>, RequestRecord) {
        let (path, kind) = match request.prompt {
            Prompt::Chat(_) => ("chat/completions", "chat"),
            Prompt::Text(_) => ("completions", "completions"),
        };
        let body = self.body(request);
        let limit = ResponseLimit::generation(
            request.params.max_tokens as usize,
            self.options.max_response_bytes,
        );
        let (outcome, timing) = if request.params.stream {
            let (streamed, timing) = self
                .client
                .post_stream::<Streamed>(path, &body, &limit, scheduled)
                .await;
            let outcome = streamed.map(|s| {
                let chunks = Some(s.chunks);
                (s.text, s.finish_reason, s.usage, s.model, chunks)
            });
            (outcome, timing)
        } else {
            let (response, timing) = self
                .client
                .post_json::<Response>(path, &body, &limit, scheduled)
                .await;
            let url = self.client.endpoint().url(path);
            let outcome = response.and_then(|r| {
                let choice = r.choices.into_iter().next().ok_or_else(|| {
                    Error::Remote(format!("POST {url}: the response has no choices"))
                })?;
                let text = choice.text().unwrap_or_default().to_string();
                Ok((text, choice.finish_reason, r.usage, r.model, None))
            });
            (outcome, timing)
        };
        let generation = outcome.map(|(text, finish_reason, usage, model, chunks)| {
            let tokens = self.token_counts(&request.prompt, &text, usage, chunks);
            Generation {
                text,
                finish_reason,
                tokens,
                served_model: model,
                timing: timing.clone(),
            }
        });
        let record = match &generation {
            Ok(g) => RequestRecord {
                kind: kind.into(),
                inputs: 1,
                timing,
                input_tokens: g.tokens.input,
                output_tokens: g.tokens.output,
                tokens_from: g.tokens.source.clone().map(Into::into),
                served_model: g.served_model.clone(),
                finish_reason: g.finish_reason.clone(),
                error: None,
            },
            Err(e) => RequestRecord::failed(kind, 1, timing, e.to_string()),
        };
        (generation, record)
    }

    /// Seconds since the client started: the time base of its records.
    pub fn now(&self) -> f64 {
        self.client.now()
    }

    pub fn epoch(&self) -> std::time::Instant {
        self.client.epoch()
    }

    /// The server's counts; else the local tokenizer's; else one token per streamed chunk.
    fn token_counts(
        &self,
        prompt: &Prompt,
        text: &str,
        usage: Option<Usage>,
        chunks: Option<u64>,
    ) -> TokenCounts {
        if let Some(u) = usage.filter(|u| u.completion_tokens.is_some()) {
            return TokenCounts {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                source: Some("server".into()),
            };
        }
        if let Some(t) = &self.options.tokenizer {
            return TokenCounts {
                input: count_tokens(t, &prompt.plain_text()),
                output: count_tokens(t, text),
                source: Some("local-tokenizer".into()),
            };
        }
        TokenCounts {
            input: None,
            output: chunks,
            source: chunks.map(|_| "stream-chunks".into()),
        }
    }

    /// The records of every request so far (for `perf.jsonl`), leaving the log empty.
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        self.log.take()
    }
}

impl Generator for RemoteGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Generation> {
        let (outcome, record) = self.runtime.block_on(self.call(request, None));
        self.log.push(record);
        outcome
    }

    fn parallel_requests(&self) -> usize {
        self.options.concurrency.max(1)
    }

    fn request_log(&self) -> Vec<RequestRecord> {
        self.take_requests()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chat_and_completion_chunks() {
        let mut s = Streamed::default();
        assert!(s
            .on_event(r#"{"choices":[{"delta":{"role":"assistant","content":"Hel"}}],"model":"m"}"#)
            .unwrap());
        assert!(s
            .on_event(r#"{"choices":[{"text":"lo","finish_reason":null}]}"#)
            .unwrap());
        assert!(!s.complete());
        assert!(!s
            .on_event(r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#)
            .unwrap());
        assert!(!s
            .on_event(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#)
            .unwrap());
        assert_eq!(s.text, "Hello");
        assert_eq!(s.chunks, 2);
        assert!(s.complete());
        assert_eq!(s.usage.unwrap().completion_tokens, Some(2));
        assert_eq!(s.model.as_deref(), Some("m"));
        assert!(s.on_event("{\"choices\": [").is_err());
        assert!(s
            .on_event(r#"{"error":{"message":"boom"}}"#)
            .unwrap_err()
            .contains("boom"));
    }
}
