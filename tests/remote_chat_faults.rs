//! The remote generator against an in-process chat server (axum on 127.0.0.1) whose
//! answer is a known function of the prompt, streamed one word per event. The faulty
//! server injects 500s, 429s with Retry-After, connection resets, malformed events,
//! truncated streams and responses slower than the timeout: every answer must still
//! equal the clean server's, with its timing, token counts and retries recorded.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assay::engine::openai::{Endpoint, RemoteGenerator, RemoteOptions, RetryPolicy, Secret};
use assay::engine::{ChatMessage, GenerationParams, GenerationRequest, Generator, Prompt};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::{Rng, SeedableRng};

const KEY: &str = "sk-planted-chat-secret-51e0";

struct Server {
    faulty: bool,
    /// Send `usage` (as llama.cpp does) or not (as some servers do).
    usage: bool,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    requests: AtomicUsize,
    faults: Mutex<Vec<&'static str>>,
}

/// The answer: the prompt's words reversed, capped at `max_tokens` words.
fn answer(prompt: &str, max_tokens: usize) -> (Vec<String>, &'static str) {
    let words: Vec<String> = prompt
        .split_whitespace()
        .rev()
        .map(str::to_string)
        .collect();
    if words.len() > max_tokens {
        (words[..max_tokens].to_vec(), "length")
    } else {
        (words, "stop")
    }
}

async fn complete(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}"))
    {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
    }
    let chat = body.get("messages").is_some();
    let prompt = if chat {
        body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string()
    } else {
        body["prompt"].as_str().unwrap_or("").to_string()
    };
    let stream = body["stream"].as_bool().unwrap_or(false);
    let max_tokens = body["max_tokens"]
        .as_u64()
        .expect("max_tokens is always sent") as usize;
    let fault = if s.faulty {
        let u: f64 = s.rng.lock().unwrap().random();
        match u {
            u if u < 0.20 => Some("500"),
            u if u < 0.30 => Some("429"),
            u if u < 0.35 => Some("reset"),
            u if u < 0.40 => Some("malformed"),
            u if u < 0.45 && stream => Some("truncated"),
            u if u < 0.48 => Some("slow"),
            _ => None,
        }
    } else {
        None
    };
    if let Some(f) = fault {
        s.faults.lock().unwrap().push(f);
    }
    match fault {
        Some("500") => return error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure"),
        Some("429") => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            return r;
        }
        Some("slow") => tokio::time::sleep(Duration::from_secs(5)).await,
        _ => {}
    }
    let (words, finish) = answer(&prompt, max_tokens);
    let usage = serde_json::json!({
        "prompt_tokens": prompt.split_whitespace().count(),
        "completion_tokens": words.len(),
    });
    if !stream {
        match fault {
            Some("malformed") => return (StatusCode::OK, "{\"choices\": [").into_response(),
            Some("reset") => {
                let failing = futures_util::stream::once(async {
                    Err::<Bytes, _>(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "reset",
                    ))
                });
                return Response::new(Body::from_stream(failing));
            }
            _ => {}
        }
        let text = words.join(" ");
        let choice = if chat {
            serde_json::json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
        } else {
            serde_json::json!({"index": 0, "text": text, "finish_reason": finish})
        };
        let mut body = serde_json::json!({"model": "served-echo", "choices": [choice]});
        if s.usage {
            body["usage"] = usage;
        }
        return Json(body).into_response();
    }

    // Streamed: one event per word, then the finish, the usage and [DONE].
    let mut events: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let piece = if i == 0 { w.clone() } else { format!(" {w}") };
        let choice = if chat {
            serde_json::json!({"index": 0, "delta": {"content": piece}, "finish_reason": null})
        } else {
            serde_json::json!({"index": 0, "text": piece, "finish_reason": null})
        };
        events.push(serde_json::json!({"model": "served-echo", "choices": [choice]}).to_string());
    }
    let last = if chat {
        serde_json::json!({"index": 0, "delta": {}, "finish_reason": finish})
    } else {
        serde_json::json!({"index": 0, "text": "", "finish_reason": finish})
    };
    events.push(serde_json::json!({"model": "served-echo", "choices": [last]}).to_string());
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    if s.usage && include_usage {
        events.push(
            serde_json::json!({"model": "served-echo", "choices": [], "usage": usage}).to_string(),
        );
    }
    events.push("[DONE]".into());
    let half = words.len() / 2;
    let chunks: Vec<Result<Bytes, std::io::Error>> = match fault {
        Some("truncated") => events[..half]
            .iter()
            .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
            .collect(),
        Some("reset") => events[..half]
            .iter()
            .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
            .chain(std::iter::once(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ))))
            .collect(),
        Some("malformed") => events[..half]
            .iter()
            .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
            .chain(std::iter::once(Ok(Bytes::from(
                "data: {\"choices\": [\n\n",
            ))))
            .collect(),
        _ => events
            .iter()
            .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
            .collect(),
    };
    // 5 ms between events, so token times are spread out.
    let paced = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((next, it))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(paced))
        .unwrap()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": status.as_u16(), "message": message, "type": "server_error"}});
    (status, Json(body)).into_response()
}

fn start(faulty: bool, usage: bool) -> (SocketAddr, Arc<Server>) {
    let state = Arc::new(Server {
        faulty,
        usage,
        rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(11)),
        requests: AtomicUsize::new(0),
        faults: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(complete))
        .route("/v1/completions", post(complete))
        .with_state(state.clone());
    (common::serve(app), state)
}

fn generator(addr: SocketAddr, tokenizer: bool) -> RemoteGenerator {
    let endpoint = Endpoint::parse(&format!("openai:http://{addr}/v1#echo")).unwrap();
    let tokenizer = tokenizer.then(|| {
        let path = common::assets().join("tokenizers/smollm2-135m-instruct/tokenizer.json");
        Arc::new(tokenizers::Tokenizer::from_file(path).unwrap())
    });
    let options = RemoteOptions {
        timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 40,
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        tokenizer,
        ..RemoteOptions::default()
    };
    std::env::set_var("ASSAY_TEST_CHAT_KEY", KEY);
    RemoteGenerator::connect(endpoint, Secret::from_env("ASSAY_TEST_CHAT_KEY"), options).unwrap()
}

fn prompts() -> Vec<String> {
    (0..25)
        .map(|i| {
            (0..(6 + i % 9))
                .map(|j| format!("w{i}x{j}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn request(prompt: &str, chat: bool, stream: bool) -> GenerationRequest {
    GenerationRequest {
        prompt: if chat {
            Prompt::Chat(vec![ChatMessage::user(prompt)])
        } else {
            Prompt::Text(prompt.to_string())
        },
        params: GenerationParams {
            max_tokens: 10,
            stream,
            ..GenerationParams::default()
        },
    }
}

#[test]
fn answers_with_faults_equal_answers_without() {
    let (clean_addr, _) = start(false, true);
    let (faulty_addr, server) = start(true, true);
    let clean = generator(clean_addr, false);
    let faulty = generator(faulty_addr, false);
    for (chat, stream) in [(true, true), (false, true), (true, false), (false, false)] {
        for prompt in prompts() {
            let req = request(&prompt, chat, stream);
            let a = clean.generate(&req).unwrap();
            let b = faulty.generate(&req).unwrap();
            let (words, finish) = answer(&prompt, 10);
            assert_eq!(a.text, words.join(" "));
            assert_eq!(a.text, b.text, "faults must not change the answer");
            assert_eq!(b.finish_reason.as_deref(), Some(finish));
            assert_eq!(b.tokens.source.as_deref(), Some("server"));
            assert_eq!(b.tokens.output, Some(words.len() as u64));
            assert_eq!(b.served_model.as_deref(), Some("served-echo"));
            if stream {
                // One token time per word, 5 ms apart; TTFT after the first 5 ms pause.
                let t = &a.timing.token_times;
                assert_eq!(t.len(), words.len());
                assert!(a.ttft().unwrap() >= 0.004, "{:?}", a.ttft());
                // Individual gaps jitter with scheduling; their sum cannot shrink.
                let span = t[t.len() - 1] - t[0];
                assert!(span >= 0.004 * (t.len() - 1) as f64, "{t:?}");
                assert_eq!(b.timing.token_times.len(), words.len());
            } else {
                assert!(a.timing.first_token.is_none() && a.timing.token_times.is_empty());
            }
        }
    }
    let faults = server.faults.lock().unwrap().clone();
    for kind in ["500", "429", "reset", "malformed", "truncated", "slow"] {
        assert!(faults.contains(&kind), "fault {kind} injected: {faults:?}");
    }
    // Every request is logged with why it was retried, and Retry-After was honoured.
    let log = faulty.take_requests();
    assert_eq!(log.len(), 100);
    assert!(log.iter().all(|r| r.error.is_none()));
    let retried: Vec<&str> = log
        .iter()
        .flat_map(|r| r.timing.retried.iter().map(String::as_str))
        .collect();
    for needle in [
        "HTTP 500",
        "HTTP 429",
        "timed out",
        "ended before the answer was complete",
        "unreadable",
    ] {
        assert!(
            retried.iter().any(|m| m.contains(needle)),
            "a retry for {needle:?}: {retried:?}"
        );
    }
    for r in log
        .iter()
        .filter(|r| r.timing.retried.iter().any(|m| m.contains("429")))
    {
        assert!(r.timing.end - r.timing.scheduled >= 1.0);
    }
    assert!(!format!("{log:?}").contains(KEY));
}

#[test]
fn token_counts_come_from_the_local_tokenizer_when_the_server_gives_none() {
    let (addr, _) = start(false, false);
    let prompt = "Hello there, how are you today?";
    let with = generator(addr, true)
        .generate(&request(prompt, true, true))
        .unwrap();
    assert_eq!(with.tokens.source.as_deref(), Some("local-tokenizer"));
    let tokenizer = tokenizers::Tokenizer::from_file(
        common::assets().join("tokenizers/smollm2-135m-instruct/tokenizer.json"),
    )
    .unwrap();
    let count = |t: &str| tokenizer.encode(t, false).unwrap().get_ids().len() as u64;
    assert_eq!(with.tokens.output, Some(count(&with.text)));
    assert_eq!(with.tokens.input, Some(count(prompt)));
    let without = generator(addr, false)
        .generate(&request(prompt, true, true))
        .unwrap();
    assert_eq!(without.tokens.source.as_deref(), Some("stream-chunks"));
    assert_eq!(without.tokens.output, Some(6));
    assert_eq!(without.tokens.input, None);
}

#[test]
fn generate_command_prints_answer_and_timing_without_the_key() {
    let (addr, _) = start(false, true);
    let (code, out, err) = common::output(
        common::assay()
            .args(["generate", "--json", "--max-new-tokens", "3"])
            .args(["--model", &format!("openai:http://{addr}/v1#echo")])
            .args(["--prompt", "one two three four"])
            .env("OPENAI_API_KEY", KEY)
            .env("ASSAY_LOG", "debug"),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["text"], "four three two");
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["tokens"]["output"], 3);
    assert!(v["ttft"].as_f64().unwrap() > 0.0);
    assert_eq!(v["timing"]["token_times"].as_array().unwrap().len(), 3);
    assert!(!out.contains(KEY) && !err.contains(KEY));
    // A wrong key is a clear 401, not retried, not echoed.
    let (code, _, err) = common::output(
        common::assay()
            .args(["generate", "--prompt", "x"])
            .args(["--model", &format!("openai:http://{addr}/v1#echo")])
            .env("OPENAI_API_KEY", "sk-wrong-key-000"),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("HTTP 401") && !err.contains("sk-wrong-key-000"),
        "{err}"
    );
}
