//! What a load level measured, from its request records: latency distributions (exact
//! percentiles, linear interpolation), throughput, errors by kind and goodput against an
//! SLO. Pure functions over records; no clocks, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::openai::RequestRecord;
use crate::metrics::quantile::percentile_sorted;

/// Service-level objective: a request is good when it succeeded and met every bound set.
/// A bound on a measure the request lacks (TTFT of an unstreamed request) is not met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
}

impl Slo {
    pub fn is_set(&self) -> bool {
        self.ttft.is_some() || self.tpot.is_some() || self.latency.is_some()
    }

    /// `ttft=500ms,tpot=50ms,latency=2s`.
    pub fn parse(text: &str) -> Result<Slo, String> {
        let mut slo = Slo::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected NAME=DURATION, e.g. ttft=500ms"))?;
            let seconds = humantime::parse_duration(value.trim())
                .map_err(|e| format!("`{part}`: {e}"))?
                .as_secs_f64();
            match name.trim() {
                "ttft" => slo.ttft = Some(seconds),
                "tpot" => slo.tpot = Some(seconds),
                "latency" | "e2e" => slo.latency = Some(seconds),
                other => return Err(format!("`{other}`: SLO names are ttft, tpot and latency")),
            }
        }
        Ok(slo)
    }

    pub fn met_by(&self, r: &RequestRecord) -> bool {
        let within = |bound: Option<f64>, value: Option<f64>| match bound {
            None => true,
            Some(b) => value.is_some_and(|v| v <= b),
        };
        r.error.is_none()
            && within(self.ttft, ttft(r))
            && within(self.tpot, tpot(r))
            && within(self.latency, Some(latency(r)))
    }
}

/// Seconds from the scheduled send to the end (what a user waits, queueing included).
pub fn latency(r: &RequestRecord) -> f64 {
    r.timing.end - r.timing.scheduled
}

/// Seconds from the actual send to the end (what the server took, retries included).
pub fn service_latency(r: &RequestRecord) -> f64 {
    r.timing.end - r.timing.sent
}

/// Time to first token, from the scheduled send.
pub fn ttft(r: &RequestRecord) -> Option<f64> {
    r.timing.first_token.map(|t| t - r.timing.scheduled)
}

/// Time per output token after the first: (end − first token) / (output tokens − 1).
pub fn tpot(r: &RequestRecord) -> Option<f64> {
    let first = r.timing.first_token?;
    let n = r.output_tokens?;
    (n > 1).then(|| (r.timing.end - first) / (n - 1) as f64)
}

/// What a failed request failed of, in a few stable words.
pub fn error_kind(message: &str) -> String {
    if let Some(i) = message.find("HTTP ") {
        let code: String = message[i + 5..].chars().take(3).collect();
        if code.chars().all(|c| c.is_ascii_digit()) {
            return format!("http_{code}");
        }
    }
    let kinds = [
        ("timed out", "timeout"),
        ("cannot connect", "connect"),
        ("unreadable", "malformed"),
        ("event stream", "stream"),
        ("reading the response body", "body"),
        ("embeddings returned", "wrong_count"),
        ("mixed dimensions", "bad_vector"),
        ("non-finite", "bad_vector"),
        ("in-flight", "dropped"),
    ];
    kinds
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("other".to_string(), |(_, kind)| kind.to_string())
}

/// Percentiles of one measure, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    pub fn of(mut values: Vec<f64>) -> Option<Distribution> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let p = |q| percentile_sorted(&values, q);
        Some(Distribution {
            count: values.len(),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: p(50.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
            max: values[values.len() - 1],
        })
    }
}

/// Everything one load level measured (warm-up requests excluded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelSummary {
    pub requests: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, usize>,
    pub error_rate: f64,
    /// Failed attempts that a retry then covered, by kind.
    pub retried: BTreeMap<String, usize>,
    /// From the first scheduled send to the last end.
    pub window_seconds: f64,
    pub requests_per_second: f64,
    pub items_per_second: f64,
    pub input_tokens_per_second: f64,
    pub output_tokens_per_second: f64,
    pub latency: Option<Distribution>,
    pub service_latency: Option<Distribution>,
    pub schedule_lag: Option<Distribution>,
    pub ttft: Option<Distribution>,
    pub tpot: Option<Distribution>,
    pub itl: Option<Distribution>,
    pub good_requests: usize,
    /// Requests per second that met every SLO bound (all successful ones without an SLO).
    pub goodput: f64,
    pub good_items_per_second: f64,
    pub good_input_tokens_per_second: f64,
    pub good_output_tokens_per_second: f64,
}

pub fn summarize(records: &[&RequestRecord], slo: &Slo) -> LevelSummary {
    let ok: Vec<&RequestRecord> = records
        .iter()
        .copied()
        .filter(|r| r.error.is_none())
        .collect();
    let mut errors = BTreeMap::new();
    for r in records {
        if let Some(e) = &r.error {
            *errors.entry(error_kind(e)).or_insert(0) += 1;
        }
    }
    let mut retried = BTreeMap::new();
    for r in records {
        for e in &r.timing.retried {
            *retried.entry(error_kind(e)).or_insert(0) += 1;
        }
    }
    let start = records
        .iter()
        .map(|r| r.timing.scheduled)
        .fold(f64::INFINITY, f64::min);
    let end = records
        .iter()
        .map(|r| r.timing.end)
        .fold(f64::NEG_INFINITY, f64::max);
    let window = if records.is_empty() {
        0.0
    } else {
        (end - start).max(0.0)
    };
    let per_second = |n: f64| if window > 0.0 { n / window } else { 0.0 };
    let sum =
        |rs: &[&RequestRecord], f: fn(&RequestRecord) -> f64| rs.iter().map(|r| f(r)).sum::<f64>();
    let items = |r: &RequestRecord| r.inputs as f64;
    let input = |r: &RequestRecord| r.input_tokens.unwrap_or(0) as f64;
    let output = |r: &RequestRecord| r.output_tokens.unwrap_or(0) as f64;
    let good: Vec<&RequestRecord> = ok.iter().copied().filter(|r| slo.met_by(r)).collect();
    let mut gaps = Vec::new();
    for r in &ok {
        gaps.extend(r.timing.token_times.windows(2).map(|w| w[1] - w[0]));
    }
    LevelSummary {
        requests: records.len(),
        ok: ok.len(),
        error_rate: if records.is_empty() {
            0.0
        } else {
            (records.len() - ok.len()) as f64 / records.len() as f64
        },
        errors,
        retried,
        window_seconds: window,
        requests_per_second: per_second(ok.len() as f64),
        items_per_second: per_second(sum(&ok, items)),
        input_tokens_per_second: per_second(sum(&ok, input)),
        output_tokens_per_second: per_second(sum(&ok, output)),
        latency: Distribution::of(ok.iter().map(|r| latency(r)).collect()),
        service_latency: Distribution::of(ok.iter().map(|r| service_latency(r)).collect()),
        schedule_lag: Distribution::of(
            records
                .iter()
                .map(|r| r.timing.sent - r.timing.scheduled)
                .collect(),
        ),
        ttft: Distribution::of(ok.iter().filter_map(|r| ttft(r)).collect()),
        tpot: Distribution::of(ok.iter().filter_map(|r| tpot(r)).collect()),
        itl: Distribution::of(gaps),
        good_requests: good.len(),
        goodput: per_second(good.len() as f64),
        good_items_per_second: per_second(sum(&good, items)),
        good_input_tokens_per_second: per_second(sum(&good, input)),
        good_output_tokens_per_second: per_second(sum(&good, output)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Timing;

    fn record(
        scheduled: f64,
        sent: f64,
        tokens: &[f64],
        end: f64,
        error: Option<&str>,
    ) -> RequestRecord {
        RequestRecord {
            kind: "chat".into(),
            inputs: 1,
            timing: Timing {
                scheduled,
                sent,
                first_byte: Some(sent),
                first_token: tokens.first().copied(),
                token_times: tokens.to_vec(),
                end,
                attempts: 1,
                retried: Vec::new(),
            },
            input_tokens: Some(10),
            output_tokens: Some(tokens.len() as u64),
            tokens_from: Some("server".into()),
            served_model: None,
            finish_reason: None,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn hand_checked_summary() {
        // Request a: scheduled 0, sent 0.1 (lag 0.1), tokens at 0.3, 0.4, 0.6, ends 0.6.
        //   latency 0.6, TTFT 0.3, TPOT (0.6-0.3)/2 = 0.15, gaps 0.1, 0.2.
        // Request b: scheduled 1, sent 1, tokens at 1.2, 1.3, ends 1.3.
        //   latency 0.3, TTFT 0.2, TPOT 0.1, gap 0.1.
        // Request c: failed with a 503.  Request d: a timeout.
        let a = record(0.0, 0.1, &[0.3, 0.4, 0.6], 0.6, None);
        let b = record(1.0, 1.0, &[1.2, 1.3], 1.3, None);
        let c = record(
            1.5,
            1.5,
            &[],
            1.6,
            Some("POST http://x/v1/chat/completions: HTTP 503 Service Unavailable: busy"),
        );
        let d = record(
            1.8,
            1.8,
            &[],
            2.0,
            Some("POST http://x: timed out (gave up after 8 attempts)"),
        );
        let all = [&a, &b, &c, &d];
        let s = summarize(
            &all,
            &Slo {
                ttft: Some(0.25),
                ..Slo::default()
            },
        );
        assert_eq!((s.requests, s.ok), (4, 2));
        assert_eq!(s.errors.get("http_503"), Some(&1));
        assert_eq!(s.errors.get("timeout"), Some(&1));
        assert_eq!(s.error_rate, 0.5);
        assert!((s.window_seconds - 2.0).abs() < 1e-12);
        assert!((s.requests_per_second - 1.0).abs() < 1e-12);
        assert!((s.output_tokens_per_second - 2.5).abs() < 1e-12);
        assert!((s.input_tokens_per_second - 10.0).abs() < 1e-12);
        let lat = s.latency.unwrap();
        // Two values 0.3 and 0.6: p50 = 0.45, p90 = 0.57, p99 = 0.597 (linear).
        assert!((lat.p50 - 0.45).abs() < 1e-12 && (lat.p90 - 0.57).abs() < 1e-12);
        assert!((lat.p99 - 0.597).abs() < 1e-12 && lat.max == 0.6);
        let ttft = s.ttft.unwrap();
        assert!((ttft.mean - 0.25).abs() < 1e-12);
        let tpot = s.tpot.unwrap();
        assert!((tpot.p50 - 0.125).abs() < 1e-12);
        let itl = s.itl.unwrap();
        assert_eq!(itl.count, 3);
        assert!((itl.max - 0.2).abs() < 1e-12 && (itl.p50 - 0.1).abs() < 1e-12);
        let lag = s.schedule_lag.unwrap();
        assert!((lag.max - 0.1).abs() < 1e-12);
        // Only b has TTFT ≤ 0.25: goodput 1 request in 2 s.
        assert_eq!(s.good_requests, 1);
        assert!((s.goodput - 0.5).abs() < 1e-12);
        assert!((s.good_output_tokens_per_second - 1.0).abs() < 1e-12);
        // TPOT bound 0.12: only b (0.1) passes. Latency bound 0.5: only b.
        let slo = Slo::parse("tpot=120ms, latency=500ms").unwrap();
        assert_eq!(summarize(&all, &slo).good_requests, 1);
        let none = summarize(&all, &Slo::default());
        assert_eq!(none.good_requests, 2);
        // A TTFT bound on a request without streamed tokens is not met.
        let plain = record(0.0, 0.0, &[], 0.1, None);
        assert!(!Slo::parse("ttft=1s").unwrap().met_by(&plain));
    }

    #[test]
    fn slo_parsing() {
        let slo = Slo::parse("ttft=500ms,tpot=50ms,latency=2s").unwrap();
        assert_eq!(
            slo,
            Slo {
                ttft: Some(0.5),
                tpot: Some(0.05),
                latency: Some(2.0)
            }
        );
        assert!(Slo::parse("ttfb=1s").is_err());
        assert!(Slo::parse("ttft=fast").is_err());
    }
}
