//! Sharded runs on a real Slurm cluster: one node on 127.0.0.1, started by
//! scripts/start-slurm.sh (which sets ASSAY_SLURM). Job arrays run `assay run` and
//! `assay bench` with `--shard auto` (each array task reads SLURM_ARRAY_TASK_ID and
//! SLURM_ARRAY_TASK_COUNT), `assay merge` combines the shards, and the merged record must
//! equal an unsharded run's exactly: every score of every task and every per-item sample.
//! Without Slurm these tests fail (they never pass silently): run
//! `eval "$(scripts/start-slurm.sh)"` first, as scripts/test.sh does.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long one array may take before it is cancelled and the test fails.
const ARRAY_LIMIT: Duration = Duration::from_secs(40 * 60);

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Slurm is up and takes jobs; fails (never skips) with how to start it otherwise.
fn require_slurm() {
    assert!(
        std::env::var_os("ASSAY_SLURM").is_some(),
        "ASSAY_SLURM is not set: these tests need the one-node Slurm cluster; run \
         `eval \"$(scripts/start-slurm.sh)\"` first (scripts/test.sh does)"
    );
    let out = Command::new("sinfo")
        .args(["-h", "-N", "-o", "%N %T"])
        .output()
        .unwrap_or_else(|e| panic!("sinfo does not run ({e}): run scripts/start-slurm.sh"));
    let states = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && states
                .lines()
                .any(|l| ["idle", "mixed", "allocated"].iter().any(|s| l.contains(s))),
        "no Slurm node takes jobs (sinfo: {states} {}): run scripts/start-slurm.sh",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a failed Slurm job leaves to read: every log in `logs`, the job as slurmctld
/// sees it, and the last lines of the daemons' logs.
fn slurm_diagnostics(logs: &Path, job: Option<&str>) -> String {
    let mut text = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in files.iter().filter(|f| {
        f.extension()
            .is_some_and(|e| e == "log" || e == "out" || e == "err")
    }) {
        let body = std::fs::read_to_string(file).unwrap_or_default();
        text += &format!("--- {}\n{body}\n", file.display());
    }
    if let Some(job) = job {
        let out = Command::new("scontrol").args(["show", "job", job]).output();
        if let Ok(out) = out {
            text += &format!(
                "--- scontrol show job {job}\n{}{}\n",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let daemon_logs = std::env::var_os("ASSAY_SLURM_LOGS")
        .map_or_else(|| PathBuf::from("/var/log/slurm"), PathBuf::from);
    for name in ["slurmctld.log", "slurmd.log"] {
        let body = std::fs::read_to_string(daemon_logs.join(name)).unwrap_or_default();
        let lines: Vec<&str> = body.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        text += &format!(
            "--- last lines of {}\n{tail}\n",
            daemon_logs.join(name).display()
        );
    }
    text
}

/// A unique job name, so a test cancels only its own jobs.
fn job_name(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("assay-test-{what}-{}-{nanos}", std::process::id())
}

/// Runs `command` as a job array (`--array=<array>`, e.g. `0-3`) with `sbatch --wait`:
/// one log per task in `logs`. Fails with sbatch's output and the logs when a task fails
/// or the array outlasts `ARRAY_LIMIT` (then it is cancelled).
fn run_array(logs: &Path, array: &str, what: &str, command: &[OsString]) {
    std::fs::create_dir_all(logs).unwrap();
    let script = logs.join("task.sh");
    std::fs::write(
        &script,
        "#!/bin/bash\n\
         echo \"array task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT on $(hostname), $(date -u +%FT%T.%NZ)\" >&2\n\
         exec \"$@\"\n",
    )
    .unwrap();
    let name = job_name(what);
    let mut child = Command::new("sbatch")
        .arg("--wait")
        .arg(format!("--array={array}"))
        .arg(format!("--job-name={name}"))
        .arg(format!("--output={}/task-%a.log", logs.display()))
        .arg(format!("--chdir={}", env!("CARGO_MANIFEST_DIR")))
        // Each task is a separate process: one core each (the shards pass --threads 1).
        .args(["--cpus-per-task=1", "--mem=2G", "--time=40"])
        .arg(&script)
        .args(command)
        .env_remove("ASSAY_LOG")
        .stdout(std::fs::File::create(logs.join("sbatch.out")).unwrap())
        .stderr(std::fs::File::create(logs.join("sbatch.err")).unwrap())
        .spawn()
        .expect("sbatch runs");
    let deadline = Instant::now() + ARRAY_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("scancel")
                .arg(format!("--name={name}"))
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let submitted = std::fs::read_to_string(logs.join("sbatch.out")).unwrap_or_default();
    let job = submitted
        .split_whitespace()
        .last()
        .filter(|id| id.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string);
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "array {name} failed ({s}):\n{}",
            slurm_diagnostics(logs, job.as_deref())
        ),
        None => panic!(
            "array {name} not done after {ARRAY_LIMIT:?}; cancelled:\n{}",
            slurm_diagnostics(logs, job.as_deref())
        ),
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `assay run` of SciFact and STS-B with MiniLM, as the other real-score tests run them.
fn run_args(cache: &Path, reports: &Path, run_id: &str) -> Vec<OsString> {
    let mut args = os(&["run", "--task", "scifact", "--task", "stsb"]);
    args.extend(os(&["--model", &common::minilm_ref(), "--run-id", run_id]));
    args.extend(["--data-root".into(), common::data_root().into_os_string()]);
    args.extend(["--cache-dir".into(), cache.as_os_str().to_owned()]);
    args.extend(["--reports".into(), reports.as_os_str().to_owned()]);
    args
}

/// What must be equal between a merged and an unsharded run: everything in a task's
/// result but how its vectors were obtained and how long it took.
const RUN_SPECIFIC: &[&str] = &["embedding", "seconds", "search_seconds"];

/// Every task of `merged` equals the same task of `whole`, score by score; then every
/// sample line.
fn assert_same_run(merged: &Path, whole: &Path) {
    let (m, w) = (
        json(&merged.join("run.json")),
        json(&whole.join("run.json")),
    );
    let tasks = |v: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        v["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| {
                (
                    t["result"]["task"].as_str().unwrap().to_string(),
                    t["result"].clone(),
                )
            })
            .collect()
    };
    let (mt, wt) = (tasks(&m), tasks(&w));
    assert_eq!(
        mt.keys().collect::<Vec<_>>(),
        wt.keys().collect::<Vec<_>>(),
        "tasks"
    );
    let mut differences = Vec::new();
    for (task, whole_result) in &wt {
        let merged_result = &mt[task];
        let ws = whole_result["scores"].as_object().expect("scores");
        let ms = merged_result["scores"].as_object().expect("scores");
        assert!(!ws.is_empty(), "{task} has scores");
        for measure in ws.keys().chain(ms.keys().filter(|k| !ws.contains_key(*k))) {
            if ms.get(measure) != ws.get(measure) {
                differences.push(format!(
                    "{task}.{measure}: merged {} vs unsharded {}",
                    ms.get(measure).map_or("absent".into(), |v| v.to_string()),
                    ws.get(measure).map_or("absent".into(), |v| v.to_string()),
                ));
            }
        }
        let keys = whole_result.as_object().unwrap().keys();
        for key in keys.filter(|k| *k != "scores" && !RUN_SPECIFIC.contains(&k.as_str())) {
            if merged_result.get(key) != whole_result.get(key) {
                differences.push(format!(
                    "{task}.{key}: merged {} vs unsharded {}",
                    merged_result
                        .get(key)
                        .map_or("absent".into(), |v| v.to_string()),
                    whole_result[key]
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "the merged run differs from the unsharded one:\n{}",
        differences.join("\n")
    );

    let samples = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("samples.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (ms, ws) = (samples(merged), samples(whole));
    assert_eq!(ms.len(), ws.len(), "sample lines");
    let key = |s: &serde_json::Value| format!("{}/{}", s["task"], s["id"]);
    let by_key: BTreeMap<String, &serde_json::Value> = ms.iter().map(|s| (key(s), s)).collect();
    assert_eq!(by_key.len(), ms.len(), "one merged sample per task and id");
    for s in &ws {
        let other = by_key
            .get(&key(s))
            .unwrap_or_else(|| panic!("sample {} missing from the merged run", key(s)));
        assert_eq!(*other, s, "sample {}", key(s));
    }
    // And in the same order as the unsharded file.
    assert!(ms == ws, "merged samples.jsonl is in another order");
}

#[test]
fn sharded_run_on_a_slurm_array_merges_to_the_unsharded_scores_exactly() {
    require_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    // Four shards as one array; one shared cache (the array tasks append to it side by side).
    let shards = root.join("runs");
    let mut command = vec![OsString::from(env!("CARGO_BIN_EXE_assay"))];
    command.extend(run_args(&root.join("cache-shards"), &shards, "sharded"));
    command.extend(os(&["--threads", "1", "--shard", "auto"]));
    run_array(&root.join("logs"), "0-3", "run", &command);
    for i in 0..4 {
        let partial = shards.join(format!("sharded/shard-{i}-of-4/partial.json"));
        assert!(partial.is_file(), "{} written", partial.display());
    }

    let merged = root.join("merged");
    let (code, out, err) = common::output(
        common::assay()
            .arg("merge")
            .arg(shards.join("sharded"))
            .arg("--out")
            .arg(&merged),
    );
    assert_eq!(code, 0, "merge:\n{out}\n{err}");

    // The same tasks unsharded, from a cache of their own (every vector computed anew).
    let whole_reports = root.join("whole");
    let (code, out, err) = common::output(common::assay().args(run_args(
        &root.join("cache-whole"),
        &whole_reports,
        "whole",
    )));
    assert_eq!(code, 0, "unsharded run:\n{out}\n{err}");
    assert_same_run(&merged, &whole_reports.join("whole"));
    let spearman = common::score(&merged, "stsb", "cosine_spearman");
    let ndcg = common::score(&merged, "scifact", "ndcg_at_10");
    eprintln!("merged from 4 Slurm shards: STS-B Spearman {spearman:.6}, SciFact nDCG@10 {ndcg:.5}, equal to the unsharded run");
}

/// The recipe in deploy/slurm as a user runs it: submit.sh queues the array and the
/// merge behind it (afterok); the merged record appears once both ran.
#[test]
fn deploy_slurm_recipe_runs_shards_then_the_dependent_merge() {
    require_slurm();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let extra = format!(
        "--data-root {} --tasks-dir {} --threads 1",
        common::data_root().display(),
        repo.join("tasks").display()
    );
    let name = format!("--job-name={}", job_name("recipe"));
    let (code, out, err) = common::output(
        Command::new(repo.join("deploy/slurm/submit.sh"))
            .current_dir(root)
            .env_remove("ASSAY_LOG")
            .env("RUN_ID", "recipe")
            .env("MODEL", common::minilm_ref())
            .env("TASKS", "stsb")
            .env("REPORTS", root.join("runs"))
            .env("OUT", root.join("reports"))
            .env("CACHE", root.join("cache"))
            .env("ASSAY", env!("CARGO_BIN_EXE_assay"))
            .env("ASSAY_ARGS", &extra)
            // Command-line options override the scripts' #SBATCH lines (sized for a GPU
            // cluster); the merge job keeps its own.
            .args([
                "--array=0-1",
                "--cpus-per-task=1",
                "--mem=2G",
                "--time=30",
                name.as_str(),
            ]),
    );
    assert_eq!(code, 0, "submit.sh:\n{out}\n{err}");
    let id = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {out}"))
            .to_string()
    };
    let (array, merge) = (id("ARRAY_JOB="), id("MERGE_JOB="));

    // Wait for the merge job to leave the queue (it starts only after both shards).
    let deadline = Instant::now() + ARRAY_LIMIT;
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", &format!("{array},{merge}"), "-o", "%i %T"])
            .output()
            .expect("squeue runs");
        let queued = String::from_utf8_lossy(&q.stdout).into_owned();
        if queued.trim().is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let _ = Command::new("scancel").args([&array, &merge]).status();
            panic!(
                "recipe jobs still queued after {ARRAY_LIMIT:?}:\n{queued}\n{}",
                slurm_diagnostics(root, Some(&merge))
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let merged = root.join("reports/recipe");
    assert!(
        merged.join("run.json").is_file(),
        "the merge job wrote no run.json:\n{}",
        slurm_diagnostics(root, Some(&merge))
    );
    for i in 0..2 {
        assert!(root
            .join(format!("runs/recipe/shard-{i}-of-2/partial.json"))
            .is_file());
        assert!(
            root.join(format!("cache/recipe/shard-{i}")).is_dir(),
            "one cache per shard"
        );
    }
    let spearman = common::score(&merged, "stsb", "cosine_spearman");
    assert!((spearman - 0.8203).abs() <= 0.0005, "{spearman}");
}

/// A pass-through proxy to `upstream` (`http://host:port`) on a free port of 127.0.0.1:
/// requests and streamed answers go through unchanged, and every answer gets the `Date`
/// header hyper's server adds. llama-server sends none, and a generator reads its clock's
/// offset to the server from that header (vLLM's and TGI's servers send it).
fn date_proxy(upstream: String) -> std::net::SocketAddr {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};

    async fn forward(
        State(upstream): State<std::sync::Arc<(reqwest::Client, String)>>,
        request: Request,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut out = upstream
            .0
            .request(parts.method.clone(), format!("{}{path}", upstream.1))
            .body(body);
        if let Some(kind) = parts.headers.get("content-type") {
            out = out.header("content-type", kind);
        }
        match out.send().await {
            Ok(answer) => {
                let mut response = Response::builder().status(answer.status());
                if let Some(kind) = answer.headers().get("content-type") {
                    response = response.header("content-type", kind);
                }
                response
                    .body(Body::from_stream(answer.bytes_stream()))
                    .unwrap()
            }
            Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }

    let state = std::sync::Arc::new((reqwest::Client::new(), upstream));
    common::serve(axum::Router::new().fallback(forward).with_state(state))
}

/// `assay bench` from two generators (a two-task array) against one llama-server, both
/// waiting for a common start: the merge pools every request of both.
#[test]
fn sharded_bench_on_a_slurm_array_pools_both_generators() {
    require_slurm();
    let server = common::LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "4"]);
    let proxy = date_proxy(format!("http://127.0.0.1:{}", server.port));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let reports = root.join("runs");
    // Far enough ahead for Slurm to start both tasks and each to measure its clock.
    let start = chrono::Utc::now() + chrono::Duration::seconds(20);
    let start_text = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut command = vec![OsString::from(env!("CARGO_BIN_EXE_assay"))];
    command.extend(os(&[
        "bench",
        "--model",
        &format!("openai:http://{proxy}/v1#smollm2"),
        "--workload",
        "chat",
        "--rate",
        "4",
        "--requests",
        "16",
        "--output-tokens",
        "8",
        "--ignore-eos",
        "--input-words",
        "16",
        "--warmup",
        "0s",
        "--shard",
        "auto",
        "--start-at",
        &start_text,
        "--run-id",
        "bench",
    ]));
    command.extend(["--reports".into(), reports.clone().into_os_string()]);
    run_array(&root.join("logs"), "0-1", "bench", &command);

    let merged = root.join("merged");
    let (code, out, err) = common::output(
        common::assay()
            .arg("merge")
            .arg(reports.join("bench"))
            .arg("--out")
            .arg(&merged),
    );
    assert_eq!(code, 0, "merge:\n{out}\n{err}");
    println!("{out}");
    check_pooled_bench(
        &merged,
        &reports.join("bench"),
        start.timestamp() as f64,
        16,
    );
}

/// The merged bench pools every generator's requests: the counts add up, the percentiles
/// are the union's (not averages of the generators'), and each generator's schedule lag
/// and clock bound are kept beside the pool.
fn check_pooled_bench(merged: &Path, run_dir: &Path, start_unix: f64, requests: usize) {
    let report = json(&merged.join("run.json"));
    assert_eq!(report["schema"], "assay.bench/1");
    let level = &report["levels"][0];
    let summary = &level["summary"];

    let mut latencies = Vec::new();
    let clocks = report["generators"].as_array().expect("generators");
    let shares = level["generators"].as_array().expect("level generators");
    assert_eq!((clocks.len(), shares.len()), (2, 2), "{report}");
    for i in 0..2 {
        let dir = run_dir.join(format!("shard-{i}-of-2"));
        let own = json(&dir.join("run.json"));
        let perf = std::fs::read_to_string(dir.join("perf.jsonl")).unwrap_or_else(|e| {
            panic!(
                "generator {i} recorded no request ({e}); its level: {}",
                own["levels"][0]
            )
        });
        let lines: Vec<serde_json::Value> = perf
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["warmup"] != true)
            .collect();
        // Half the requests each, all answered.
        assert_eq!(lines.len(), requests / 2, "generator {i}");
        for r in &lines {
            assert!(r["error"].is_null(), "{r}");
            latencies.push(r["latency"].as_f64().unwrap());
        }
        let share = &shares[i];
        assert_eq!(share["shard"]["index"], i as u64);
        assert_eq!(share["requests"], lines.len() as u64);
        // Its own lag behind its own schedule, as its record has it.
        let lag = &share["schedule_lag"];
        assert_eq!(*lag, own["levels"][0]["summary"]["schedule_lag"]);
        assert_eq!(lag["count"], lines.len() as u64, "{lag}");
        assert!(lag["p99"].as_f64().unwrap() >= 0.0, "{lag}");

        // Its clock against the server's, from the Date header the proxy adds: on one
        // machine the offset is within a few round trips of zero.
        let clock = &clocks[i];
        assert_eq!(clock["shard"]["index"], i as u64);
        let bound = clock["clock"]["bound"].as_f64();
        let offset = clock["clock"]["offset"].as_f64();
        let (Some(bound), Some(offset)) = (bound, offset) else {
            panic!("generator {i} measured no clock offset: {clock}");
        };
        assert!((0.0..0.5).contains(&bound), "{clock}");
        assert!(offset.abs() <= bound + 0.05, "{clock}");
        let at = chrono::DateTime::parse_from_rfc3339(clock["start_at"].as_str().unwrap())
            .unwrap()
            .timestamp() as f64;
        assert_eq!(at, start_unix, "{clock}");
        // Nothing was scheduled before the common start.
        let origin = clock["origin_unix"].as_f64().unwrap();
        let first = lines
            .iter()
            .map(|r| r["scheduled"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(
            origin + first >= start_unix - 0.05,
            "generator {i} scheduled its first request {:.3} s before the common start",
            start_unix - (origin + first)
        );
    }

    assert_eq!(summary["requests"], requests as u64, "{summary}");
    assert_eq!(level["plan"]["requests"], requests as u64);
    // Percentiles of the union of both generators' latencies (exact, linear
    // interpolation between order statistics, as `assay bench` computes them).
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        let rank = q * (latencies.len() - 1) as f64;
        let low = rank.floor() as usize;
        let high = (low + 1).min(latencies.len() - 1);
        latencies[low] + (latencies[high] - latencies[low]) * (rank - low as f64)
    };
    let pooled = &summary["latency"];
    assert_eq!(pooled["count"], latencies.len() as u64);
    for (name, q) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p95", 0.95),
        ("p99", 0.99),
        ("max", 1.0),
    ] {
        let got = pooled[name].as_f64().unwrap();
        // The merge moves each generator's times onto one timeline: latencies are
        // differences of shifted times, equal up to rounding.
        assert!(
            (got - pct(q)).abs() <= 1e-9,
            "pooled latency {name} {got} vs the union's {}",
            pct(q)
        );
    }
}
