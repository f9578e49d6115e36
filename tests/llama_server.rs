//! The remote engine against a real OpenAI-compatible server: llama.cpp's llama-server
//! (built by scripts/build-llama-server.sh) on 127.0.0.1, serving the staged
//! all-MiniLM-L6-v2 GGUF for embeddings and SmolLM2-135M-Instruct for chat/completions.

mod common;

use common::LlamaServer;

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn stsb_through_llama_server_matches_the_local_engine() {
    let server = common::minilm_server();
    let remote = format!("openai:{}#all-MiniLM-L6-v2", server.base_url());
    let tmp = tempfile::tempdir().unwrap();

    // A scored run through the server: the record names the endpoint and what it served.
    let (code, out, err) = common::output(
        common::assay()
            .args(["run", "--task", "stsb", "--no-cache", "--run-id", "remote"])
            .args(["--model", &remote, "--concurrency", "4"])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(tmp.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let run_dir = tmp.path().join("remote");
    let remote_score = common::score(&run_dir, "stsb", "cosine_spearman");
    let run = json(&run_dir.join("run.json"));
    assert_eq!(run["model"]["engine"], "openai");
    assert_eq!(run["model"]["model"], remote);
    assert!(run["model"]["served_model"].is_string(), "{}", run["model"]);
    // Latency next to the scores, from the same request records `assay bench` uses.
    let requests = &run["requests"];
    assert_eq!(requests["error_rate"], 0.0, "{requests}");
    assert!(requests["items_per_second"].as_f64().unwrap() > 0.0);
    assert!(
        requests["latency"]["p99"].as_f64().unwrap()
            >= requests["latency"]["p50"].as_f64().unwrap()
    );
    let perf = std::fs::read_to_string(run_dir.join("perf.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = perf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!records.is_empty());
    for r in &records {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["input_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(
            r["end"].as_f64() >= r["first_byte"].as_f64()
                && r["first_byte"].as_f64() >= r["sent"].as_f64()
        );
    }

    // Parity against the local candle engine on the same sentences.
    let report = tmp.path().join("parity.json");
    let (code, out, err) = common::output(
        common::assay()
            .args(["parity", "--task", "stsb", "--min-cosine", "0.9999"])
            .args(["--model", &common::minilm_ref(), "--model", &remote])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--out")
            .arg(&report),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("cos min"), "{out}");
    let parity = json(&report);
    let task = &parity["tasks"][0];
    let min = task["cosine_min"].as_f64().unwrap();
    let local_score = task["scores"][0].as_f64().unwrap();
    assert!(min >= 0.9999, "min cosine {min}");
    assert!(task["cosine_p1"].as_f64().unwrap() >= min);
    // The baseline's 0.8203246731 (MTEB prints 0.82032). Not bit-exact across machines:
    // candle's GEMM splits MiniLM's 1,536-long FFN sums into blocks sized from the CPU's L1
    // cache (3 × 512 here, 2 × 768 on 48 KB L1s), which moves vectors in the last bit and
    // can swap near-tied cosines; one swap moves Spearman by at most ~6e-6.
    assert!((local_score - 0.8203247).abs() < 1e-5, "{local_score}");
    // llama-server's vectors depend slightly on how it batched concurrent requests.
    let parity_remote = task["scores"][1].as_f64().unwrap();
    assert!(
        (parity_remote - remote_score).abs() < 1e-4,
        "{parity_remote} vs {remote_score}"
    );
    assert!(
        (remote_score - local_score).abs() <= 0.001,
        "remote {remote_score} vs local {local_score}"
    );
    eprintln!("STS-B local {local_score:.6} llama-server {remote_score:.6}, min cosine {min:.7}");
}

fn generate(server: &LlamaServer, extra: &[&str]) -> serde_json::Value {
    let (code, out, err) = common::output(
        common::assay()
            .args(["generate", "--json", "--max-new-tokens", "24"])
            .args(["--model", &format!("openai:{}#smollm2", server.base_url())])
            .args(extra),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn chat_and_completions_against_smollm2() {
    let server = LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "4"]);
    let question = [
        "--prompt",
        "What is the capital of France? Answer in one sentence.",
    ];
    let streamed = generate(&server, &question);
    let plain = generate(&server, &[&question[..], &["--no-stream"]].concat());
    for v in [&streamed, &plain] {
        assert!(!v["text"].as_str().unwrap().trim().is_empty(), "{v}");
        assert_eq!(v["tokens"]["source"], "server", "{v}");
        let out = v["tokens"]["output"].as_u64().unwrap();
        assert!((1..=24).contains(&out), "{v}");
        assert!(v["tokens"]["input"].as_u64().unwrap() > 10, "{v}");
        assert!(v["served_model"].is_string(), "{v}");
    }
    assert!(
        streamed["text"].as_str().unwrap().contains("Paris"),
        "{streamed}"
    );
    // Greedy: the same answer either way.
    assert_eq!(streamed["text"], plain["text"]);
    let ttft = streamed["ttft"].as_f64().unwrap();
    let latency = streamed["latency"].as_f64().unwrap();
    assert!(ttft > 0.0 && ttft <= latency, "{streamed}");
    let times = streamed["timing"]["token_times"].as_array().unwrap();
    assert!(
        !times.is_empty() && times.len() as u64 <= streamed["tokens"]["output"].as_u64().unwrap()
    );
    assert!(plain["ttft"].is_null());

    // Raw completions, streamed and not.
    let prompt = [
        "--completion",
        "--prompt",
        "The first three primes are 2, 3 and",
    ];
    let c1 = generate(&server, &prompt);
    let c2 = generate(&server, &[&prompt[..], &["--no-stream"]].concat());
    for v in [&c1, &c2] {
        assert!(!v["text"].as_str().unwrap().is_empty(), "{v}");
        assert!(v["tokens"]["output"].as_u64().unwrap() >= 1, "{v}");
    }
    assert_eq!(c1["text"], c2["text"]);
    assert!(c1["ttft"].as_f64().unwrap() > 0.0);
}

fn bench(
    server: &LlamaServer,
    reports: &std::path::Path,
    run_id: &str,
    model: &str,
    args: &[&str],
) -> serde_json::Value {
    let (code, out, err) = common::output(
        common::assay()
            .args(["bench", "--run-id", run_id, "--warmup", "1s"])
            .args(["--model", &format!("openai:{}#{model}", server.base_url())])
            .arg("--reports")
            .arg(reports)
            .args(args),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("TTFT") && out.contains("goodput"), "{out}");
    json(&reports.join(run_id).join("run.json"))
}

#[test]
fn bench_sweeps_against_llama_server_report_sane_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "4"]);
    let run = bench(
        &server,
        tmp.path(),
        "chat",
        "smollm2",
        &[
            "--workload",
            "chat",
            "--concurrency",
            "1,2",
            "--requests",
            "6",
            "--output-tokens",
            "16",
            "--ignore-eos",
            "--input-words",
            "24",
            "--slo",
            "ttft=10s",
            "--price-per-hour",
            "2.49",
            "--provider-price-per-mtok",
            "0.2",
            "--target-rate",
            "10",
        ],
    );
    let levels = run["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for level in levels {
        let s = &level["summary"];
        let f = |path: &[&str]| {
            path.iter()
                .fold(s, |v, k| &v[*k])
                .as_f64()
                .unwrap_or_else(|| panic!("{path:?} in {s}"))
        };
        assert_eq!(s["requests"], 6, "{s}");
        assert_eq!(s["error_rate"], 0.0, "{s}");
        // --ignore-eos: exactly 16 tokens each, as the server counts them.
        let tokens = f(&["output_tokens_per_second"]) * f(&["window_seconds"]);
        assert!((tokens - 96.0).abs() < 1e-9, "{tokens}");
        assert!(f(&["ttft", "p50"]) > 0.0 && f(&["ttft", "p50"]) < f(&["latency", "p50"]));
        assert!(
            f(&["tpot", "p50"]) > 0.001 && f(&["tpot", "p50"]) < 1.0,
            "{s}"
        );
        assert!(f(&["itl", "p50"]) > 0.001, "{s}");
        assert!(f(&["latency", "p50"]) <= f(&["latency", "p99"]));
        assert_eq!(s["good_requests"], 6);
    }
    let cost = &run["cost"];
    assert!(
        cost["usd_per_mtok_output"].as_f64().unwrap() > 0.0,
        "{cost}"
    );
    assert!(cost["replicas"].as_u64().unwrap() >= 1);
    assert!(cost["breakeven_utilization"].as_f64().unwrap() > 0.0);
    drop(server);

    // Embeddings, open loop, through the same code.
    let server = common::minilm_server();
    let run = bench(
        &server,
        tmp.path(),
        "embed",
        "all-MiniLM-L6-v2",
        &[
            "--workload",
            "embed",
            "--rate",
            "20",
            "--arrivals",
            "constant",
            "--duration",
            "3s",
            "--batch-size",
            "4",
            "--inputs-from-task",
            "stsb",
            "--data-root",
            common::data_root().to_str().unwrap(),
        ],
    );
    let s = &run["levels"][0]["summary"];
    assert_eq!(s["requests"], 60, "{s}");
    assert_eq!(s["error_rate"], 0.0, "{s}");
    let items = s["items_per_second"].as_f64().unwrap();
    assert!((items - 80.0).abs() < 8.0, "4 items × 20/s: {s}");
    assert!(s["schedule_lag"]["p50"].as_f64().unwrap() < 0.001, "{s}");
    assert!(s["schedule_lag"]["max"].as_f64().unwrap() < 0.05, "{s}");
    assert_eq!(run["workload"]["source"], "task stsb");
}

/// `--find-max-rate` against a real server: the search brackets a limit, prices it and
/// every probe's numbers hang together.
#[test]
fn find_max_rate_against_llama_server_brackets_a_sane_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "4"]);
    // p80 needs 17 requests per confident pass: probes of a few seconds.
    let run = bench(
        &server,
        tmp.path(),
        "search",
        "smollm2",
        &[
            "--workload",
            "chat",
            "--find-max-rate",
            "--rate",
            "2",
            "--slo",
            "ttft=1s,latency=3s",
            "--slo-percentile",
            "80",
            "--rate-precision",
            "0.25",
            "--duration",
            "4s",
            "--output-tokens",
            "8",
            "--ignore-eos",
            "--input-words",
            "24",
            "--price-per-hour",
            "2.49",
            "--target-rate",
            "50",
        ],
    );
    let found = &run["max_rate"];
    let max = found["max_rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no rate met the SLO: {found}"));
    let failing = found["lowest_failing_rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no rate failed: {found}"));
    // One CPU thread serves a few short chats per second, not hundreds.
    assert!((0.5..200.0).contains(&max), "{found}");
    assert!(max < failing && (failing - max) / max <= 0.25, "{found}");
    let low = found["interval_low"].as_f64().unwrap();
    assert!(low <= max, "{found}");
    for p in found["probes"].as_array().unwrap() {
        // An undecided probe's levels are judged together.
        let levels: Vec<u64> = match p["pooled_levels"].as_array() {
            Some(pooled) => pooled.iter().map(|l| l.as_u64().unwrap()).collect(),
            None => vec![p["level"].as_u64().unwrap()],
        };
        let count = |field: &str| -> u64 {
            levels
                .iter()
                .map(|&l| {
                    run["levels"][l as usize]["summary"][field]
                        .as_u64()
                        .unwrap()
                })
                .sum()
        };
        assert_eq!(p["requests"], count("requests"), "{p}");
        let missed = count("requests") - count("good_requests");
        assert_eq!(p["violations"], missed, "{p}");
        let (lo, hi) = (
            p["judgement"]["violation_share_low"].as_f64().unwrap(),
            p["judgement"]["violation_share_high"].as_f64().unwrap(),
        );
        let share = missed as f64 / p["requests"].as_f64().unwrap();
        assert!(lo <= share && share <= hi, "{p}");
    }
    // Priced and sized at the limit's own probe.
    let cost = &run["cost"];
    assert!(
        cost["usd_per_mtok_output"].as_f64().unwrap() > 0.0,
        "{cost}"
    );
    let replicas = found["replicas"].as_u64().unwrap();
    assert_eq!(replicas, (50.0 / max - 1e-9).ceil() as u64);
}

/// Multi-turn chats against a real server: every later turn carries the history, so the
/// server counts more input tokens, and each turn has its own streamed TTFT.
#[test]
fn multi_turn_against_llama_server_grows_the_input_turn_by_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "2"]);
    let run = bench(
        &server,
        tmp.path(),
        "turns",
        "smollm2",
        &[
            "--workload",
            "multi-turn",
            "--turns",
            "3",
            "--think-time",
            "100ms",
            "--concurrency",
            "2",
            "--requests",
            "12",
            "--output-tokens",
            "8",
            "--ignore-eos",
            "--input-words",
            "16",
            "--prefix-tokens",
            "64",
        ],
    );
    let turns = run["levels"][0]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{turns:?}");
    let inputs: Vec<f64> = turns
        .iter()
        .map(|t| t["mean_input_tokens"].as_f64().unwrap())
        .collect();
    // Each turn adds the answer (8 tokens) and a new message (~16 words) to the history.
    assert!(
        inputs[0] > 64.0 && inputs[1] > inputs[0] + 16.0 && inputs[2] > inputs[1] + 16.0,
        "{inputs:?}"
    );
    for t in turns {
        assert!(t["ttft"]["p50"].as_f64().unwrap() > 0.0, "{t}");
        assert!(t["requests"].as_u64().unwrap() >= 2, "{t}");
    }
}

/// `--scrape` against llama-server's own metrics: the server's view of each level sits
/// beside the client's, and energy sources this host lacks are recorded as missing.
#[test]
fn bench_scrapes_llama_server_metrics_beside_the_client_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(
        &common::smollm2_gguf(),
        &["-c", "4096", "-np", "2", "--metrics"],
    );
    let metrics = format!("{}/metrics", server.base_url().trim_end_matches("/v1"));
    let run = bench(
        &server,
        tmp.path(),
        "scrape",
        "smollm2",
        &[
            "--workload",
            "chat",
            "--concurrency",
            "1,3",
            "--requests",
            "6",
            "--output-tokens",
            "16",
            "--ignore-eos",
            "--scrape",
            &metrics,
            "--scrape-interval",
            "200ms",
        ],
    );
    for level in run["levels"].as_array().unwrap() {
        let view = &level["server"];
        assert_eq!(view["log"]["kind"], "llamacpp", "{view}");
        assert_eq!(view["log"]["failures"], 0, "{view}");
        let s = &view["summary"];
        assert!(s["readings"].as_u64().unwrap() >= 2, "{s}");
        // The server counted the tokens the client streamed, over the same window.
        let server_rate = s["generated_tokens_per_s"].as_f64().unwrap();
        assert!(server_rate > 0.0, "{s}");
        assert!(s["running_max"].as_f64().unwrap() >= 1.0, "{s}");
        assert!(s["queued_max"].as_f64().is_some(), "{s}");
    }
    // With 3 users on 2 slots the server ran two at once, and queued the third.
    let busy = &run["levels"][1]["server"]["summary"];
    assert!(busy["running_max"].as_f64().unwrap() >= 2.0, "{busy}");
    // No RAPL or GPU here: both reported missing, with a reason, never estimated.
    let sources = run["energy_sources"].as_array().unwrap();
    for s in sources {
        if s["available"] == false {
            assert!(!s["detail"].as_str().unwrap().is_empty(), "{s}");
        }
    }
    assert_eq!(sources.len(), 2, "{sources:?}");
}
