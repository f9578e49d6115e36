//! HTTP to an OpenAI-compatible server: one pooled connection set, a timeout per attempt,
//! and retries with exponential backoff and full jitter on what is worth retrying
//! (connection errors, timeouts, 408, 429, 5xx, unreadable bodies), honouring
//! `Retry-After`, within a cap on attempts and on total time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::engine::openai::limits::{self, ReadError, ResponseLimit};
use crate::engine::openai::transport::{ByteStream, Reply, Transport};
use crate::engine::openai::{redact_url, Endpoint, Secret};
pub use crate::engine::Timing;
use crate::error::{Error, Result};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// No new attempt starts after this much time since the first.
    pub max_elapsed: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(300),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

/// Accumulates one streamed answer from its server-sent events.
pub trait StreamState: Default {
    /// Takes one event's `data`; says whether it carried generated text.
    fn on_event(&mut self, data: &str) -> std::result::Result<bool, String>;
    /// Whether the answer is whole (the server said why it finished) should the stream
    /// end without `[DONE]`.
    fn complete(&self) -> bool;
}

/// What the byte counter puts in the event stream when the cap is passed (the attempt
/// reports the cap itself).
const TOO_LARGE: &str = "response too large";

/// Why one attempt failed, and whether another is worth making.
#[derive(Debug)]
struct Failure {
    message: String,
    retry: bool,
    /// The server's `Retry-After`, if it sent one.
    wait: Option<Duration>,
}

pub struct HttpClient {
    transport: Transport,
    /// Per attempt, from sending to the last byte.
    timeout: Duration,
    endpoint: Endpoint,
    key: Option<Secret>,
    policy: RetryPolicy,
    epoch: Instant,
}

impl HttpClient {
    pub fn new(
        endpoint: Endpoint,
        key: Option<Secret>,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self> {
        let transport =
            Transport::for_url(&endpoint.base_url, timeout.min(Duration::from_secs(10)))
                .map_err(Error::Usage)?;
        Ok(HttpClient {
            transport,
            timeout,
            endpoint,
            key,
            policy,
            epoch: Instant::now(),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Seconds since the client started (the time base of every `Timing`).
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The instant `now()` counts from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// POSTs `body` to `<base>/<path>` and parses the JSON answer, retrying as the policy
    /// allows. Errors name the endpoint and path, never the key.
    /// `scheduled` is when the caller meant to send (open-loop load); default now. The
    /// timing comes back whatever the outcome. A body longer than `limit` is abandoned
    /// (and not retried).
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        limit: &ResponseLimit,
        scheduled: Option<f64>,
    ) -> (Result<T>, Timing) {
        self.with_retries(path, scheduled, || self.attempt::<T>(path, body, limit))
            .await
    }

    /// POSTs `body` (with `"stream": true`) and feeds each server-sent event to a fresh
    /// `S` per attempt. A stream that breaks, carries an unreadable event or ends before
    /// the answer is complete is retried from the start like any failed request; one that
    /// passes `limit`'s bytes or events is abandoned and not retried.
    pub async fn post_stream<S: StreamState>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        limit: &ResponseLimit,
        scheduled: Option<f64>,
    ) -> (Result<S>, Timing) {
        self.with_retries(path, scheduled, || {
            self.stream_attempt::<S>(path, body, limit)
        })
        .await
    }

    /// Runs attempts until one succeeds or the policy says stop.
    async fn with_retries<T, F, Fut>(
        &self,
        path: &str,
        scheduled: Option<f64>,
        mut attempt: F,
    ) -> (Result<T>, Timing)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(T, Timing), Failure>>,
    {
        let mut timing = Timing {
            scheduled: scheduled.unwrap_or_else(|| self.now()),
            ..Default::default()
        };
        let mut first_sent = None;
        loop {
            timing.attempts += 1;
            timing.sent = self.now();
            let first_sent = *first_sent.get_or_insert(timing.sent);
            let outcome = match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure {
                    message: format!("timed out after {:?}", self.timeout),
                    retry: true,
                    wait: None,
                }),
            };
            let failure = match outcome {
                Ok((value, attempt_timing)) => {
                    timing.first_byte = attempt_timing.first_byte;
                    timing.first_token = attempt_timing.first_token;
                    timing.token_times = attempt_timing.token_times;
                    timing.end = self.now();
                    return (Ok(value), timing);
                }
                Err(failure) => failure,
            };
            let out_of_attempts = timing.attempts >= self.policy.max_attempts;
            let delay = failure
                .wait
                .unwrap_or_else(|| self.backoff(timing.attempts));
            let elapsed = Duration::from_secs_f64((self.now() - first_sent).max(0.0));
            let out_of_time = elapsed + delay > self.policy.max_elapsed;
            if !failure.retry || out_of_attempts || out_of_time {
                let why = if !failure.retry {
                    String::new()
                } else if out_of_attempts {
                    format!(" (gave up after {} attempts)", timing.attempts)
                } else {
                    format!(
                        " (gave up: retrying would pass {:?} in all)",
                        self.policy.max_elapsed
                    )
                };
                timing.end = self.now();
                let url = redact_url(&self.endpoint.url(path));
                let error = Error::Remote(format!("POST {url}: {}{why}", failure.message));
                return (Err(error), timing);
            }
            tracing::debug!(%path, attempt = timing.attempts, ?delay, reason = %failure.message, "retrying");
            timing.retried.push(failure.message);
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends one attempt and returns the response once its headers are in, or the failure.
    async fn send(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        timing: &mut Timing,
    ) -> std::result::Result<Reply, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure {
            message: format!("cannot encode the request: {e}"),
            retry: false,
            wait: None,
        })?;
        let key = self.key.as_ref().map(Secret::expose);
        let response = self
            .transport
            .post(&self.endpoint, path, body, key)
            .await
            .map_err(|e| Failure {
                message: e.message,
                retry: true,
                // A keep-alive connection the server had already closed: go again at once.
                wait: e.stale.then_some(Duration::ZERO),
            })?;
        timing.first_byte = Some(self.now());
        if response.status.is_success() {
            return Ok(response);
        }
        let (status, wait) = (response.status, retry_after(&response.headers));
        let bytes = limits::read_error_body(response).await;
        Err(Failure {
            message: format!("HTTP {status}: {}", error_message(&bytes)),
            retry: retryable(status),
            wait,
        })
    }

    /// One streamed attempt; the `Timing` returned holds only what this attempt saw.
    async fn stream_attempt<S: StreamState>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        limit: &ResponseLimit,
    ) -> std::result::Result<(S, Timing), Failure> {
        let mut timing = Timing::default();
        let response = self.send(path, body, &mut timing).await?;
        if let Some(message) = limits::announced_too_long(&response, limit) {
            return Err(Failure {
                message,
                retry: false,
                wait: None,
            });
        }
        let (state, rest) = read_events::<S>(response.stream(), limit, || {
            let now = self.now();
            timing.first_token.get_or_insert(now);
            timing.token_times.push(now);
        })
        .await?;
        if let Some(mut rest) = rest {
            // Read what follows `[DONE]` (the end of the chunked body) off the request's
            // path, so the connection can serve another request.
            tokio::spawn(async move {
                let drain = async { while let Some(Ok(_)) = rest.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
            });
        }
        Ok((state, timing))
    }

    /// One plain attempt; the `Timing` returned holds only what this attempt saw.
    async fn attempt<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        limit: &ResponseLimit,
    ) -> std::result::Result<(T, Timing), Failure> {
        let mut timing = Timing::default();
        let response = self.send(path, body, &mut timing).await?;
        let bytes = limits::read_capped(response, limit)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(message) => Failure {
                    message,
                    retry: false,
                    wait: None,
                },
                ReadError::Broken(e) => Failure {
                    message: format!("reading the response body: {e}"),
                    retry: true,
                    wait: None,
                },
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| Failure {
            message: format!("unreadable JSON in the response ({e}): {}", snippet(&bytes)),
            retry: true,
            wait: None,
        })?;
        Ok((value, timing))
    }

    /// Full jitter: a random wait up to base * 2^(attempt-1), capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.policy.max_delay);
        cap.mul_f64(rand::rng().random::<f64>())
    }
}

/// What is left of an event stream after `[DONE]`.
type Rest =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::result::Result<(), String>> + Send>>;

/// Reads server-sent events off `chunks` into a fresh `S` within `limit`'s bytes and
/// events, calling `on_text` as each event that carried text arrives. Returns the state
/// and, when the stream said `[DONE]`, what follows it (to be drained). A stream that
/// breaks, carries an unreadable event or ends before the answer is complete is worth
/// another attempt; one that passes a cap is not.
async fn read_events<S: StreamState>(
    chunks: ByteStream,
    limit: &ResponseLimit,
    mut on_text: impl FnMut(),
) -> std::result::Result<(S, Option<Rest>), Failure> {
    let broken = |message: String| Failure {
        message,
        retry: true,
        wait: None,
    };
    let over = |message: String| Failure {
        message,
        retry: false,
        wait: None,
    };
    // Bytes are counted before the event parser buffers them: a line that never ends or
    // endless comments pass the cap as surely as endless events.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let cap = limit.bytes;
    let capped = chunks.map(move |chunk| {
        let chunk = chunk?;
        let total = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if total > cap {
            return Err(TOO_LARGE.to_string());
        }
        Ok(chunk)
    });
    let mut state = S::default();
    let mut events = capped.eventsource();
    let mut count = 0u64;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| {
            if received.load(Ordering::Relaxed) > cap {
                over(limit.too_many_bytes())
            } else {
                broken(format!("the event stream broke: {e}"))
            }
        })?;
        count += 1;
        if count > limit.events {
            return Err(over(limit.too_many_events()));
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            let rest = events.map(|e| e.map(drop).map_err(|e| e.to_string()));
            return Ok((state, Some(Box::pin(rest))));
        }
        if data.is_empty() {
            continue;
        }
        let carried_text = state.on_event(data).map_err(|e| {
            broken(format!(
                "unreadable event in the stream ({e}): {}",
                snippet(data.as_bytes())
            ))
        })?;
        if carried_text {
            on_text();
        }
    }
    if !state.complete() {
        return Err(broken(
            "the event stream ended before the answer was complete (no finish_reason, no [DONE])"
                .into(),
        ));
    }
    Ok((state, None))
}

/// Reads a whole streamed answer from `chunks` as an attempt would: the state, or why the
/// attempt failed and whether another would be made. For tests of the parser on any input.
pub async fn parse_event_stream<S: StreamState>(
    chunks: Vec<bytes::Bytes>,
    limit: &ResponseLimit,
) -> std::result::Result<S, (String, bool)> {
    let stream: ByteStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)));
    read_events::<S>(stream, limit, || {})
        .await
        .map(|(state, _)| state)
        .map_err(|f| (f.message, f.retry))
}

/// 408, 429 and every 5xx are worth another try; other 4xx are the caller's mistake.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` in seconds (HTTP dates are rare from these servers; they fall back to backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The `message` of an OpenAI-shaped error body, else the start of the body.
fn error_message(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: ErrorObject,
    }
    #[derive(Deserialize)]
    struct ErrorObject {
        message: String,
        #[serde(default, rename = "type")]
        kind: Option<String>,
    }
    match serde_json::from_slice::<Body>(bytes) {
        Ok(Body { error }) => match error.kind {
            Some(kind) => format!("{} ({kind})", error.message),
            None => error.message,
        },
        Err(_) => snippet(bytes),
    }
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rules() {
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::REQUEST_TIMEOUT));
        assert!(retryable(StatusCode::BAD_GATEWAY));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "1.5".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        assert_eq!(
            error_message(
                br#"{"error":{"code":400,"message":"bad input","type":"invalid_request_error"}}"#
            ),
            "bad input (invalid_request_error)"
        );
    }
}
