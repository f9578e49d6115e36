//! The server-metrics poller against a real llama-server (`--metrics`, built by
//! scripts/build-llama-server.sh) serving SmolLM2-135M-Instruct on 127.0.0.1: its
//! `/metrics` page is read while chat requests run, and its token counter must account
//! for every token the requests got back.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assay::load::scrape::{self, ServerKind};
use common::LlamaServer;

/// One chat request; the number of tokens it generated.
fn chat(base_url: &str, i: usize) -> f64 {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": format!("Tell a story about lighthouse number {i}.")}],
        "max_tokens": 64,
        "temperature": 0,
    });
    let reply: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{base_url}/chat/completions"))
        .json(&body)
        .send()
        .and_then(|r| r.error_for_status())
        .expect("chat request")
        .json()
        .expect("chat reply is JSON");
    reply["usage"]["completion_tokens"]
        .as_f64()
        .unwrap_or_else(|| panic!("no usage in {reply}"))
}

#[test]
fn llama_server_metrics_during_chat_requests() {
    let server = LlamaServer::start(
        &common::smollm2_gguf(),
        &["--metrics", "-c", "2048", "-np", "2"],
    );
    let url = format!("http://127.0.0.1:{}/metrics", server.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let (kind, before) = runtime
        .block_on(scrape::scrape_once(&reqwest::Client::new(), &url))
        .expect("the metrics page of an idle server");
    assert_eq!(kind, ServerKind::LlamaCpp);
    assert_eq!((before.running, before.queued), (Some(0.0), Some(0.0)));

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let poller = scrape::spawn_scraper(
        runtime.handle(),
        url,
        Duration::from_millis(50),
        move || start.elapsed().as_secs_f64(),
        stop.clone(),
    );
    // Three requests at once on two slots, so one of them waits.
    let base_url = &server.base_url();
    let generated: f64 = std::thread::scope(|s| {
        let requests: Vec<_> = (0..3).map(|i| s.spawn(move || chat(base_url, i))).collect();
        requests.into_iter().map(|r| r.join().unwrap()).sum()
    });
    stop.store(true, Ordering::Relaxed);
    let log = runtime.block_on(poller).unwrap();

    assert_eq!(log.failures, 0, "{:?}", log.first_error);
    assert_eq!(log.kind, ServerKind::LlamaCpp);
    assert!(log.readings.len() >= 2, "{log:?}");
    for r in &log.readings {
        assert!(r.running.is_some() && r.queued.is_some(), "{r:?}");
    }
    let busiest = log
        .readings
        .iter()
        .filter_map(|r| r.running)
        .fold(0.0, f64::max);
    assert!(busiest >= 1.0, "no reading saw a request running: {log:?}");

    // The last scrape came after every reply, and llama-server counts a request's tokens
    // when it ends: the counter holds them all.
    let last = log.readings.last().unwrap();
    let counted = last.generated_tokens_total.unwrap() - before.generated_tokens_total.unwrap();
    assert!(
        counted >= generated,
        "the server counted {counted} generated tokens, the replies had {generated}"
    );
    assert!(last.prompt_tokens_total.unwrap() > before.prompt_tokens_total.unwrap());

    let summary = scrape::summarize(&log.readings);
    assert!(summary.generated_tokens_per_s.unwrap() > 0.0, "{summary:?}");
    assert_eq!(summary.counter_resets, 0);
    assert_eq!(summary.running_max, Some(busiest));
}
