//! `assay bench-harness`: how good a load generator assay is, measured in one run against
//! a trivial local server (a constant tiny response, in its own process):
//! (a) requests/s at closed-loop concurrencies next to oha against the same server,
//! (b) how close open-loop sends land to their schedule at high rates.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{BenchHarnessArgs, ServeTrivialArgs};
use crate::engine::openai::{Endpoint, RemoteEmbedder, RemoteOptions, RetryPolicy};
use crate::error::{Error, Result};
use crate::load::runner::{client_runtime, run_level, Interrupt, LevelPlan, Live};
use crate::load::schedule::{Arrivals, LoadModel};
use crate::load::stats::{self, Slo};
use crate::load::target::{Payload, Target};
use crate::metrics::quantile::percentile;

const BODY: &str = r#"{"object":"list","model":"trivial","data":[{"object":"embedding","index":0,"embedding":[0.5,0.25]}],"usage":{"prompt_tokens":1,"total_tokens":1}}"#;
const REQUEST: &str = r#"{"model":"trivial","input":["x"],"encoding_format":"float"}"#;

/// The trivial server: one runtime thread, a constant body for POST /v1/embeddings.
pub fn serve(args: &ServeTrivialArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::External(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| {
                Error::External(format!("cannot listen on 127.0.0.1:{}: {e}", args.port))
            })?;
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    BODY,
                )
            }),
        );
        axum::serve(listener, app)
            .await
            .map_err(|e| Error::External(format!("trivial server: {e}")))
    })
}

/// The server process, killed when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Result<(ServerProcess, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::External(format!("no free port: {e}")))?
        .port();
    let exe = std::env::current_exe().map_err(|e| Error::External(e.to_string()))?;
    let child = Command::new(exe)
        .args(["serve-trivial", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| Error::External(format!("cannot start the trivial server: {e}")))?;
    let server = ServerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(Error::External("the trivial server did not start".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, port))
}

pub fn run(args: &BenchHarnessArgs) -> Result<()> {
    let (_server, port) = start_server()?;
    let endpoint = Endpoint::parse(&format!("openai:http://127.0.0.1:{port}/v1#trivial"))?;
    let max_concurrency = args.concurrency.iter().copied().max().unwrap_or(1).max(64);
    let options = RemoteOptions {
        concurrency: max_concurrency,
        timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..RemoteOptions::default()
    };
    let embedder = Arc::new(RemoteEmbedder::connect(endpoint, None, options)?);
    let target = Arc::new(Target::RemoteEmbed(embedder));
    let payloads = Arc::new(vec![Payload::Embed(vec!["x".to_string()])]);
    let runtime = client_runtime(args.client_threads)?;
    let level = |load: LoadModel| -> Vec<crate::engine::openai::RequestRecord> {
        let plan = LevelPlan {
            load,
            duration: args.seconds,
            requests: None,
            warmup: 0.5,
            max_error_rate: 1.0,
            max_in_flight: 100_000,
            seed: 0,
            first_payload: 0,
            start_at: None,
            stop_after_violations: None,
            replay: None,
            conversation: None,
        };
        let live = Live {
            label: load.label(),
            bar: indicatif::ProgressBar::hidden(),
        };
        let outcome = run_level(
            &runtime,
            target.clone(),
            payloads.clone(),
            &plan,
            Arc::new(Interrupt::default()),
            &live,
        );
        outcome
            .samples
            .into_iter()
            .filter(|s| !s.warmup)
            .map(|s| s.record)
            .collect()
    };

    println!(
        "client overhead: requests/s against a constant tiny response on 127.0.0.1, {} s per measurement, median of {} rounds",
        args.seconds, args.rounds
    );
    println!(
        "{:>11} {:>10} {:>10} {:>7} {:>8}",
        "concurrency", "assay", "oha", "ratio", "errors"
    );
    for &concurrency in &args.concurrency {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut errors = 0;
        for _ in 0..args.rounds.max(1) {
            let records = level(LoadModel::Closed { concurrency });
            let s = stats::summarize(&records.iter().collect::<Vec<_>>(), &Slo::default());
            errors += s.requests - s.ok;
            ours.push(s.requests_per_second);
            if let Some(oha) = &args.oha {
                theirs.push(run_oha(oha, port, concurrency, args.seconds)?);
            }
        }
        let a = percentile(&ours, 50.0);
        let (b, ratio) = if theirs.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            let b = percentile(&theirs, 50.0);
            (format!("{b:.0}"), format!("{:.2}", a / b))
        };
        println!("{concurrency:>11} {a:>10.0} {b:>10} {ratio:>7} {errors:>8}");
    }

    println!(
        "\nopen-loop send accuracy: |actual send − scheduled send|, constant arrivals, {} s each",
        args.seconds
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>8}",
        "rate/s", "requests", "p50 µs", "p99 µs", "max µs", "errors"
    );
    for &rate in &args.rates {
        let records = level(LoadModel::Open {
            rate,
            arrivals: Arrivals::Constant,
        });
        let lags: Vec<f64> = records
            .iter()
            .map(|r| (r.timing.sent - r.timing.scheduled).abs() * 1e6)
            .collect();
        let errors = records.iter().filter(|r| r.error.is_some()).count();
        let max = lags.iter().copied().fold(0.0, f64::max);
        println!(
            "{rate:>8} {:>9} {:>10.0} {:>10.0} {max:>10.0} {errors:>8}",
            records.len(),
            percentile(&lags, 50.0),
            percentile(&lags, 99.0),
        );
    }
    Ok(())
}

/// Requests/s oha reaches against the same server with the same request.
fn run_oha(oha: &Path, port: u16, concurrency: usize, seconds: f64) -> Result<f64> {
    let output = Command::new(oha)
        .args(["--no-tui", "--output-format", "json", "-m", "POST"])
        .args(["-H", "content-type: application/json", "-d", REQUEST])
        .args(["-c", &concurrency.to_string(), "-z", &format!("{seconds}s")])
        .arg(format!("http://127.0.0.1:{port}/v1/embeddings"))
        .output()
        .map_err(|e| Error::External(format!("cannot run {}: {e}", oha.display())))?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::External(format!(
            "oha printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    })?;
    report["summary"]["requestsPerSec"].as_f64().ok_or_else(|| {
        Error::External(format!(
            "no summary.requestsPerSec in oha's report: {report}"
        ))
    })
}
