//! Sharded runs through the real CLI: shards of STS-B (each with its own empty cache, so
//! every vector is computed in the shard), SciFact retrieval (corpus split, top-k lists
//! merged) and GSM8K generation merge to exactly the unsharded run; `merge` refuses
//! mixtures and gaps; bad `--shard` values are refused before any work.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Shared cache: `ASSAY_TEST_CACHE` (CI) lets runs reuse the vectors other tests computed.
fn shared_cache(tmp: &Path) -> PathBuf {
    std::env::var_os("ASSAY_TEST_CACHE").map_or_else(|| tmp.join("cache"), PathBuf::from)
}

fn run_cmd(tasks: &[&str], reports: &Path, run_id: &str, cache: &Path) -> Command {
    run_cmd_on(&common::data_root(), tasks, reports, run_id, cache)
}

fn run_cmd_on(data: &Path, tasks: &[&str], reports: &Path, run_id: &str, cache: &Path) -> Command {
    let mut cmd = common::assay();
    cmd.arg("run");
    for t in tasks {
        cmd.args(["--task", t]);
    }
    cmd.args(["--model", &common::minilm_ref(), "--run-id", run_id])
        .args(["--bootstrap", "200"])
        .arg("--data-root")
        .arg(data)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--reports")
        .arg(reports);
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let (code, out, err) = common::output(cmd);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

fn merge(run_dir: &Path, out: &Path) -> (i32, String, String) {
    common::output(
        common::assay()
            .arg("merge")
            .arg(run_dir)
            .arg("--out")
            .arg(out),
    )
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("json")
}

/// Every score of every task, and every per-item sample, identical.
fn assert_same_results(whole: &Path, merged: &Path) {
    let (a, b) = (
        json(&whole.join("run.json")),
        json(&merged.join("run.json")),
    );
    let tasks = a["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), b["tasks"].as_array().unwrap().len());
    for (ta, tb) in tasks.iter().zip(b["tasks"].as_array().unwrap()) {
        let name = &ta["result"]["task"];
        assert_eq!(name, &tb["result"]["task"]);
        assert_eq!(
            ta["result"]["scores"], tb["result"]["scores"],
            "task {name}: scores differ"
        );
        assert_eq!(ta["result"]["replicates"], tb["result"]["replicates"]);
        assert_eq!(ta["result"]["dataset"], tb["result"]["dataset"]);
    }
    let samples = |dir: &Path| std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    assert!(
        samples(whole) == samples(merged),
        "per-item samples differ between {} and {}",
        whole.display(),
        merged.display()
    );
}

#[test]
fn stsb_shards_computing_their_own_vectors_merge_to_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    ok(&mut run_cmd(
        &["stsb"],
        &reports,
        "whole",
        &shared_cache(tmp.path()),
    ));
    for i in 0..3 {
        // An empty cache per shard: each computes its own batches.
        let cache = tmp.path().join(format!("cache-{i}"));
        let out =
            ok(run_cmd(&["stsb"], &reports, "sharded", &cache)
                .args(["--shard", &format!("{i}/3")]));
        assert!(out.contains(&format!("shard {i}/3 recorded")), "{out}");
    }
    // Each shard computed about a third of the distinct sentences, none twice.
    let computed: Vec<u64> = (0..3)
        .map(|i| {
            let p = json(&reports.join(format!("sharded/shard-{i}-of-3/partial.json")));
            p["tasks"][0]["embedding"]["computed"].as_u64().unwrap()
        })
        .collect();
    let whole = json(&reports.join("whole/run.json"));
    let unique = whole["tasks"][0]["result"]["embedding"]["unique"]
        .as_u64()
        .unwrap();
    assert_eq!(computed.iter().sum::<u64>(), unique, "{computed:?}");
    assert!(computed.iter().all(|&c| c > unique / 5), "{computed:?}");

    let (code, out, err) = merge(&reports.join("sharded"), &reports.join("merged"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("merged 3 shards"), "{out}");
    assert_same_results(&reports.join("whole"), &reports.join("merged"));
    let merged = json(&reports.join("merged/run.json"));
    assert_eq!(merged["settings"]["shards"]["count"], 3);
    assert_eq!(merged["schema"], "assay.run/1");
}

#[test]
fn scifact_corpus_shards_merge_their_top_k_lists_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let cache = shared_cache(tmp.path());
    ok(&mut run_cmd(&["scifact"], &reports, "whole", &cache));
    for i in 0..2 {
        ok(run_cmd(&["scifact"], &reports, "sharded", &cache).args(["--shard", &format!("{i}/2")]));
    }
    // Each shard ranked every query over its own slice of the corpus.
    let ranked = |i: usize| -> Vec<Value> {
        let path = reports.join(format!("sharded/shard-{i}-of-2/ranked/scifact.jsonl"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (ranked(0), ranked(1));
    assert_eq!(a.len(), 300);
    assert_eq!(b.len(), 300);
    let docs = |lists: &[Value]| -> std::collections::HashSet<String> {
        lists
            .iter()
            .flat_map(|q| q["hits"].as_array().unwrap().iter())
            .map(|h| h[0].as_str().unwrap().to_string())
            .collect()
    };
    let (da, db) = (docs(&a), docs(&b));
    assert!(da.is_disjoint(&db), "a document ranked by both shards");
    assert!(
        da.len() > 1000 && db.len() > 1000,
        "{} {}",
        da.len(),
        db.len()
    );

    let (code, out, err) = merge(&reports.join("sharded"), &reports.join("merged"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_same_results(&reports.join("whole"), &reports.join("merged"));

    // Corpus vectors kept in f16: half the store, nDCG@10 within a rounding of f32's.
    ok(run_cmd(&["scifact"], &reports, "half", &cache).args(["--store-dtype", "f16"]));
    let half = common::score(&reports.join("half"), "scifact", "ndcg_at_10");
    let full = common::score(&reports.join("whole"), "scifact", "ndcg_at_10");
    println!("SciFact nDCG@10: f32 store {full:.5}, f16 store {half:.5}");
    assert!((half - full).abs() < 2e-3, "{half} vs {full}");
    let record = json(&reports.join("half/run.json"));
    assert_eq!(record["settings"]["store_dtype"], "f16");
}

#[test]
fn generation_shards_replay_into_the_unsharded_grading() {
    let gguf = common::smollm2_gguf();
    let tokenizer = common::assets().join("tokenizers/smollm2-135m-instruct/tokenizer.json");
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let gen = |run_id: &str| {
        let mut cmd = common::assay();
        cmd.args(["run", "--task", "gsm8k", "--limit", "6", "--run-id", run_id])
            .args(["--model", &format!("dir:{}", gguf.display())])
            .arg("--tokenizer")
            .arg(&tokenizer)
            .args([
                "--max-new-tokens",
                "24",
                "--threads",
                "2",
                "--bootstrap",
                "200",
            ])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(&reports);
        cmd
    };
    ok(&mut gen("whole"));
    for i in 0..2 {
        ok(gen("sharded").args(["--shard", &format!("{i}/2")]));
    }
    let answers: usize = (0..2)
        .map(|i| {
            std::fs::read_to_string(reports.join(format!("sharded/shard-{i}-of-2/answers.jsonl")))
                .map_or(0, |t| t.lines().count())
        })
        .sum();
    assert_eq!(answers, 6, "each request answered by exactly one shard");
    let (code, out, err) = merge(&reports.join("sharded"), &reports.join("merged"));
    assert_eq!(code, 0, "{out}\n{err}");
    let strip_timing = |dir: &Path| -> Vec<Value> {
        std::fs::read_to_string(dir.join("samples.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                if let Some(o) = v.as_object_mut() {
                    o.retain(|k, _| !k.contains("seconds") && !k.contains("latency"));
                }
                v
            })
            .collect()
    };
    assert_eq!(
        strip_timing(&reports.join("whole")),
        strip_timing(&reports.join("merged"))
    );
    let (a, b) = (
        json(&reports.join("whole/run.json")),
        json(&reports.join("merged/run.json")),
    );
    assert_eq!(
        a["tasks"][0]["result"]["scores"],
        b["tasks"][0]["result"]["scores"]
    );
}

/// A finished 3-way STS-B run to spoil in different ways.
fn three_shards(tmp: &Path, run_id: &str) -> PathBuf {
    let reports = tmp.join("reports");
    for i in 0..3 {
        ok(run_cmd(&["stsb"], &reports, run_id, &shared_cache(tmp))
            .args(["--shard", &format!("{i}/3")]));
    }
    reports.join(run_id)
}

fn refused(run_dir: &Path, out: &Path, expected: &[&str]) {
    let (code, stdout, err) = merge(run_dir, out);
    assert_eq!(code, 2, "{stdout}\n{err}");
    for e in expected {
        assert!(err.contains(e), "expected `{e}` in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("run.json").exists(), "nothing merged");
}

#[test]
fn merge_refuses_mixtures_gaps_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let run = three_shards(tmp.path(), "mix");
    let out = tmp.path().join("out");

    // A missing shard.
    let moved = tmp.path().join("aside");
    std::fs::rename(run.join("shard-2-of-3"), &moved).unwrap();
    refused(&run, &out, &["1 of 3 shards missing: shard-2-of-3"]);
    std::fs::rename(&moved, run.join("shard-2-of-3")).unwrap();

    // A shard run with other settings.
    ok(run_cmd(
        &["stsb"],
        &tmp.path().join("reports"),
        "mix",
        &shared_cache(tmp.path()),
    )
    .args(["--shard", "1/3", "--seed", "7"]));
    refused(
        &run,
        &out,
        &[
            "shard-0-of-3 and shard-1-of-3 differ in settings",
            "seed: 0 vs 7",
        ],
    );

    // A shard on other data.
    let other_data = tmp.path().join("data");
    let stsb = common::data_root().join("stsb");
    copy_dir(&stsb, &other_data.join("stsb"));
    let test_file = std::fs::read_dir(other_data.join("stsb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("test"))
        .expect("an STS-B test file");
    // The same pairs with one gold score changed.
    let text = std::fs::read_to_string(&test_file).unwrap();
    let changed = text.replacen("\t5.000\t", "\t4.800\t", 1);
    assert_ne!(
        text,
        changed,
        "no 5.000 score to change in {}",
        test_file.display()
    );
    std::fs::remove_file(&test_file).unwrap();
    std::fs::write(&test_file, changed).unwrap();
    let reports = tmp.path().join("reports");
    let cache = shared_cache(tmp.path());
    ok(run_cmd_on(&other_data, &["stsb"], &reports, "mix", &cache).args(["--shard", "1/3"]));
    refused(&run, &out, &["differ in the data of task stsb"]);
    ok(run_cmd(
        &["stsb"],
        &tmp.path().join("reports"),
        "mix",
        &shared_cache(tmp.path()),
    )
    .args(["--shard", "1/3"]));

    // A shard whose vector file was cut short mid-vector.
    let store = run.join("shard-1-of-3/embeddings/shard.bin");
    let len = std::fs::metadata(&store).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap();
    file.set_len(len - 1000).unwrap();
    refused(&run, &out, &["shard.bin", "truncated or damaged"]);
    ok(run_cmd(
        &["stsb"],
        &tmp.path().join("reports"),
        "mix",
        &shared_cache(tmp.path()),
    )
    .args(["--shard", "1/3"]));

    // A shard's folder copied over another's: it would count twice.
    std::fs::remove_dir_all(run.join("shard-2-of-3")).unwrap();
    copy_dir(&run.join("shard-0-of-3"), &run.join("shard-2-of-3"));
    refused(&run, &out, &["holds the record of shard 0/3"]);
    std::fs::remove_dir_all(run.join("shard-2-of-3")).unwrap();

    // Shards of a 2-way split beside the 3-way one.
    ok(run_cmd(
        &["stsb"],
        &tmp.path().join("reports"),
        "mix",
        &shared_cache(tmp.path()),
    )
    .args(["--shard", "0/2"]));
    refused(&run, &out, &["split differently"]);
    std::fs::remove_dir_all(run.join("shard-0-of-2")).unwrap();

    // An unfinished shard.
    std::fs::create_dir_all(run.join("shard-2-of-3")).unwrap();
    refused(&run, &out, &["shard-2-of-3", "did not finish"]);

    // Not a sharded run at all.
    refused(&tmp.path().join("reports"), &out, &["no shard folders"]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn bad_shard_values_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let cache = tmp.path().join("cache");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--shard", "4/4", "--run-id", "x"],
            "must be below the count",
        ),
        (&["--shard", "a/b", "--run-id", "x"], "expected INDEX/COUNT"),
        (&["--shard", "0/0", "--run-id", "x"], "--shard `0/0`"),
        (
            &["--shard", "auto", "--run-id", "x"],
            "neither a Slurm job array",
        ),
        (&["--shard", "0/2"], "--shard needs --run-id"),
    ];
    for (args, expected) in cases {
        let mut cmd = common::assay();
        cmd.args(["run", "--task", "stsb", "--model", &common::minilm_ref()])
            .args(args)
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--reports")
            .arg(&reports);
        for var in [
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_COUNT",
            "JOB_COMPLETION_INDEX",
            "ASSAY_SHARD_COUNT",
            "ASSAY_SHARD",
        ] {
            cmd.env_remove(var);
        }
        let (code, out, err) = common::output(&mut cmd);
        assert_eq!(code, 2, "{args:?}: {out}\n{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!reports.exists(), "{args:?} wrote a record");
    }
    // `auto` inside a Slurm array and an Indexed Job.
    for (vars, dir) in [
        (
            [
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            "shard-1-of-2",
        ),
        (
            [("JOB_COMPLETION_INDEX", "0"), ("ASSAY_SHARD_COUNT", "2")],
            "shard-0-of-2",
        ),
    ] {
        let mut cmd = run_cmd(&["stsb"], &reports, "auto", &shared_cache(tmp.path()));
        cmd.args(["--shard", "auto"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        ok(&mut cmd);
        assert!(reports.join("auto").join(dir).join("partial.json").exists());
    }
    let (code, out, err) = merge(&reports.join("auto"), &tmp.path().join("merged"));
    assert_eq!(code, 0, "{out}\n{err}");
}

/// Two load generators started at once with a common `--start-at`, each sending half the
/// rate to one server; `merge` pools their requests on the server's clock.
#[test]
fn bench_generators_merge_into_one_pooled_report() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = Server(
        common::assay()
            .args(["serve-trivial", "--port", &port.to_string()])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let start = (chrono::Utc::now() + chrono::Duration::seconds(6))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let model = format!("openai:http://127.0.0.1:{port}/v1#trivial");
    let bench = |shard: &str| {
        let mut cmd = common::assay();
        cmd.args(["bench", "--model", &model, "--workload", "embed"])
            .args([
                "--batch-size",
                "1",
                "--rate",
                "100",
                "--arrivals",
                "constant",
            ])
            .args(["--duration", "3s", "--warmup", "1s", "--run-id", "b"])
            .args(["--shard", shard, "--start-at", &start])
            .arg("--reports")
            .arg(&reports);
        cmd
    };
    let generators: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|s| {
            bench(s)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for g in generators {
        let out = g.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let (code, out, err) = merge(&reports.join("b"), &tmp.path().join("merged"));
    drop(server);
    assert_eq!(code, 0, "{out}\n{err}");
    println!("{out}");
    assert!(out.contains("merged 2 generators"), "{out}");

    let merged = json(&tmp.path().join("merged/run.json"));
    let level = &merged["levels"][0];
    // 50/s each for 3 s measured, constant arrivals: 150 + 150.
    let shares: Vec<u64> = level["generators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(shares.len(), 2);
    assert_eq!(
        level["summary"]["requests"].as_u64().unwrap(),
        shares.iter().sum::<u64>()
    );
    for s in &shares {
        assert!((145..=155).contains(s), "{shares:?}");
    }
    assert_eq!(level["plan"]["load"]["rate"], 100.0);
    // Pooled over the common window: the two halves add up to the whole rate.
    let rate = level["summary"]["requests_per_second"].as_f64().unwrap();
    assert!((90.0..=110.0).contains(&rate), "{rate}");
    for g in merged["generators"].as_array().unwrap() {
        let bound = g["clock"]["bound"].as_f64().expect("offset measured");
        assert!(bound < 0.05, "{g}");
        assert_eq!(
            g["start_at"].as_str().unwrap(),
            chrono::DateTime::parse_from_rfc3339(&start)
                .unwrap()
                .to_rfc3339()
        );
    }
    // Every generator's lines, on one timeline.
    let lines = std::fs::read_to_string(tmp.path().join("merged/perf.jsonl")).unwrap();
    assert!(lines.lines().count() as u64 >= shares.iter().sum::<u64>());

    // A start already past is refused; so is a split that leaves a generator no user.
    let (code, _, err) = common::output(
        common::assay()
            .args([
                "bench",
                "--model",
                &model,
                "--workload",
                "embed",
                "--run-id",
                "late",
            ])
            .args(["--rate", "10", "--shard", "0/2"])
            .args(["--start-at", "2020-01-01T00:00:00Z"])
            .arg("--reports")
            .arg(&reports),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ago"), "{err}");
    let (code, _, err) = common::output(
        common::assay()
            .args([
                "bench",
                "--model",
                &model,
                "--workload",
                "embed",
                "--run-id",
                "few",
            ])
            .args(["--shard", "0/4", "--concurrency", "2"])
            .arg("--reports")
            .arg(&reports),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be split over 4 generators"), "{err}");
}

/// A child process killed (and reaped) when the test is done with it.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
