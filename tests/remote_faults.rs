//! The remote engine against an in-process OpenAI-compatible server (axum on 127.0.0.1)
//! that serves real all-MiniLM-L6-v2 vectors and injects faults: 500s, 429s with
//! Retry-After, connection resets, malformed JSON, responses slower than the timeout.
//! Scores with faults must equal scores without them, and the API key must not leak.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assay::engine::candle::{BertEmbedder, LocalOptions};
use assay::engine::Embedder;
use assay::engine::ModelRef;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::{Rng, SeedableRng};

const KEY: &str = "sk-planted-secret-7f3a9c";

/// What the server does to each request.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Clean,
    Faulty,
    WrongCount,
    MixedDims,
    NanBase64,
    BadRequest,
    AlwaysMalformed,
}

struct Server {
    model: Option<BertEmbedder>,
    mode: Mode,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    requests: AtomicUsize,
    faults: Mutex<Vec<&'static str>>,
}

async fn embeddings(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}"))
    {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
    }
    let inputs: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap_or_default();
    let fault = if s.mode == Mode::Faulty {
        let u: f64 = s.rng.lock().unwrap().random();
        match u {
            u if u < 0.20 => Some("500"),
            u if u < 0.30 => Some("429"),
            u if u < 0.35 => Some("reset"),
            u if u < 0.40 => Some("malformed"),
            u if u < 0.43 => Some("slow"),
            _ => None,
        }
    } else {
        None
    };
    if let Some(f) = fault {
        s.faults.lock().unwrap().push(f);
    }
    match (s.mode, fault) {
        (_, Some("500")) => return error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure"),
        (_, Some("429")) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            return r;
        }
        (_, Some("reset")) => {
            // Headers go out, then the body stream fails: the connection is torn down.
            let failing = futures_util::stream::once(async {
                Err::<axum::body::Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ))
            });
            return Response::new(Body::from_stream(failing));
        }
        (_, Some("malformed")) | (Mode::AlwaysMalformed, _) => {
            return (StatusCode::OK, "{\"data\": [").into_response()
        }
        (_, Some("slow")) => tokio::time::sleep(Duration::from_secs(10)).await,
        (Mode::BadRequest, _) => {
            return error(StatusCode::BAD_REQUEST, "input is too long for this model")
        }
        _ => {}
    }
    let vectors: Vec<Vec<f32>> = match &s.model {
        Some(_) => {
            let server = s.clone();
            let texts = inputs.clone();
            tokio::task::spawn_blocking(move || {
                server.model.as_ref().unwrap().embed(&texts).unwrap()
            })
            .await
            .unwrap()
        }
        None => inputs
            .iter()
            .map(|t| vec![t.len() as f32, 1.0, 2.0])
            .collect(),
    };
    let data: Vec<serde_json::Value> = match s.mode {
        Mode::WrongCount => vec![serde_json::json!({"index": 0, "embedding": vectors[0]})],
        Mode::MixedDims => vectors
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"index": i, "embedding": &v[..v.len() - i.min(1)]}))
            .collect(),
        Mode::NanBase64 => {
            use base64::Engine as _;
            let bytes: Vec<u8> = [1.0f32, f32::NAN, 2.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            (0..inputs.len())
                .map(|i| serde_json::json!({"index": i, "embedding": b64}))
                .collect()
        }
        _ => vectors
            .iter()
            .enumerate()
            .rev() // out of order on purpose: clients must sort by index
            .map(|(i, v)| serde_json::json!({"index": i, "object": "embedding", "embedding": v}))
            .collect(),
    };
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(serde_json::json!({
        "object": "list",
        "model": "served-minilm",
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": status.as_u16(), "message": message, "type": "server_error"}});
    (status, Json(body)).into_response()
}

/// Starts the server on a free port of 127.0.0.1 in a background runtime.
fn start(mode: Mode, real_model: bool) -> (SocketAddr, Arc<Server>) {
    let model = real_model.then(|| {
        let r = ModelRef::Dir {
            path: common::minilm(),
        };
        BertEmbedder::load(&r, &LocalOptions::default()).expect("model loads")
    });
    let state = Arc::new(Server {
        model,
        mode,
        rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(7)),
        requests: AtomicUsize::new(0),
        faults: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(state.clone());
    (common::serve(app), state)
}

fn run_remote(addr: SocketAddr, dir: &Path, run_id: &str, extra: &[&str]) -> (i32, String, String) {
    common::output(
        common::assay()
            .args(["run", "--task", "stsb", "--no-cache", "--run-id", run_id])
            .args([
                "--model",
                &format!("openai:http://{addr}/v1#all-MiniLM-L6-v2"),
            ])
            .args(["--timeout", "8", "--concurrency", "4"])
            .args(extra)
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(dir.join("reports"))
            .env("ASSAY_LOG", "debug")
            .env("OPENAI_API_KEY", KEY),
    )
}

/// Every file under `dir` and the process output must be free of the key.
fn assert_no_key(dir: &Path, outputs: &[&str]) {
    for out in outputs {
        assert!(!out.contains(KEY), "key leaked to process output");
    }
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "key leaked into {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn scores_with_faults_equal_scores_without_and_the_key_never_leaks() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, _) = start(Mode::Clean, true);
    let (code, out, err) = run_remote(clean, tmp.path(), "clean", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (faulty, server) = start(Mode::Faulty, true);
    // 43% of attempts fail: allow enough attempts that no request runs out by bad luck.
    let (code, out2, err2) = run_remote(faulty, tmp.path(), "faulty", &["--max-attempts", "40"]);
    assert_eq!(code, 0, "{out2}\n{err2}");

    let faults = server.faults.lock().unwrap().clone();
    for kind in ["500", "429", "reset", "malformed", "slow"] {
        assert!(
            faults.contains(&kind),
            "fault {kind} was injected at least once: {faults:?}"
        );
    }
    let reports = tmp.path().join("reports");
    let a = common::score(&reports.join("clean"), "stsb", "cosine_spearman");
    let b = common::score(&reports.join("faulty"), "stsb", "cosine_spearman");
    assert_eq!(a, b, "faults must not change the scores");
    assert!((a - 0.8203).abs() < 0.0005, "{a}");

    // perf.jsonl: one record per request, retries explained, Retry-After honoured.
    let perf = std::fs::read_to_string(reports.join("faulty/perf.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = perf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().all(|r| r["error"].is_null()));
    assert!(records
        .iter()
        .all(|r| r["served_model"] == "served-minilm" && r["tokens_from"] == "server"));
    let after_429: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| {
            r["retried"]
                .as_array()
                .is_some_and(|v| v.iter().any(|m| m.as_str().unwrap().contains("429")))
        })
        .collect();
    assert!(!after_429.is_empty());
    for r in after_429 {
        let waited = r["end"].as_f64().unwrap() - r["scheduled"].as_f64().unwrap();
        assert!(waited >= 1.0, "Retry-After: 1 honoured, waited {waited}");
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("faulty/run.json")).unwrap())
            .unwrap();
    assert_eq!(run["model"]["engine"], "openai");
    assert_no_key(tmp.path(), &[&out, &err, &out2, &err2]);
}

/// `mid_run`: the failure comes after the connection probe succeeded, so a failure record
/// must exist; otherwise nothing was computed and no run folder is made.
fn expect_failure(mode: Mode, extra: &[&str], needles: &[&str], mid_run: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, _) = start(mode, false);
    let (code, out, err) = run_remote(addr, tmp.path(), "x", extra);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr should contain {n:?}:\n{err}");
    }
    // The run leaves a failure record: why it stopped, and every request with its outcome.
    let run = tmp.path().join("reports/x");
    if !mid_run {
        assert!(!run.exists());
        assert_no_key(tmp.path(), &[&out, &err]);
        return;
    }
    let error = std::fs::read_to_string(run.join("error.json")).unwrap();
    assert!(error.contains(needles[0]), "{error}");
    assert!(!run.join("run.json").exists());
    let perf = std::fs::read_to_string(run.join("perf.jsonl")).unwrap();
    assert!(
        perf.lines()
            .any(|l| l.contains("\"error\":\"") && l.contains(needles[0])),
        "{perf}"
    );
    assert_no_key(tmp.path(), &[&out, &err]);
}

#[test]
fn bad_responses_are_clear_errors() {
    expect_failure(Mode::WrongCount, &[], &["1 embeddings returned for"], true);
    expect_failure(Mode::MixedDims, &[], &["mixed dimensions"], true);
    expect_failure(
        Mode::NanBase64,
        &["--encoding-format", "base64"],
        &["non-finite value"],
        false,
    );
    expect_failure(
        Mode::BadRequest,
        &[],
        &["HTTP 400", "input is too long for this model"],
        false,
    );
    expect_failure(
        Mode::AlwaysMalformed,
        &["--max-attempts", "2"],
        &["unreadable JSON", "gave up after 2 attempts"],
        false,
    );
}

#[test]
fn unreachable_endpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on: refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (code, _, err) = run_remote(addr, tmp.path(), "refused", &["--max-attempts", "2"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot connect") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    // A server without that route: 404, not retried.
    let (addr, server) = start(Mode::Clean, false);
    let (code, _, err) = common::output(
        common::assay()
            .args(["run", "--task", "stsb", "--no-cache"])
            .args(["--model", &format!("openai:http://{addr}/wrong#m")])
            .arg("--data-root")
            .arg(common::data_root())
            .env("OPENAI_API_KEY", KEY),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("HTTP 404") && err.contains("/wrong/embeddings"),
        "{err}"
    );
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);
    assert!(!err.contains(KEY));
}
