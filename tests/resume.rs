//! A run killed midway resumes from the embedding cache: no finished batch is computed
//! again, and the scores equal those of an uninterrupted run exactly.
//! Runs on a slice of the real SciFact (100 queries, ~500 real abstracts) to stay quick.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RECORD_BYTES: u64 = 32 + 4 * 384;
const HEADER_BYTES: u64 = 16;
const BATCH: u64 = 32;

/// `<root>/scifact`: the first 100 judged test queries, their judged docs and other
/// real abstracts up to 500 documents.
fn scifact_slice(root: &Path) {
    let src = common::data_root().join("scifact");
    let dst = root.join("scifact");
    std::fs::create_dir_all(dst.join("qrels")).unwrap();
    let qrels = std::fs::read_to_string(src.join("qrels/test.tsv")).unwrap();
    let mut lines = qrels.lines();
    let header = lines.next().unwrap();
    let mut queries = Vec::new();
    let mut kept = vec![header.to_string()];
    let mut docs = HashSet::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        if !queries.contains(&cols[0].to_string()) {
            if queries.len() == 100 {
                continue;
            }
            queries.push(cols[0].to_string());
        }
        docs.insert(cols[1].to_string());
        kept.push(line.to_string());
    }
    std::fs::write(dst.join("qrels/test.tsv"), kept.join("\n") + "\n").unwrap();
    std::fs::copy(src.join("queries.jsonl"), dst.join("queries.jsonl")).unwrap();
    let corpus = std::fs::read_to_string(src.join("corpus.jsonl")).unwrap();
    let mut out = String::new();
    let mut count = 0;
    for line in corpus.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let judged = docs.contains(v["_id"].as_str().unwrap());
        if judged || count < 500 - docs.len() {
            out.push_str(line);
            out.push('\n');
            count += usize::from(!judged);
        }
    }
    std::fs::write(dst.join("corpus.jsonl"), out).unwrap();
}

fn command(root: &Path, cache: &Path, run_id: &str) -> std::process::Command {
    let mut cmd = common::assay();
    cmd.args([
        "run",
        "--task",
        "scifact",
        "--model",
        &common::minilm_ref(),
        "--run-id",
        run_id,
    ])
    .args(["--batch-size", &BATCH.to_string()])
    .arg("--data-root")
    .arg(root)
    .arg("--cache-dir")
    .arg(cache)
    .arg("--reports")
    .arg(root.join("reports"));
    cmd
}

fn result(root: &Path, run_id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("reports").join(run_id).join("run.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["tasks"][0]["result"].clone()
}

fn cache_file(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache.join("embeddings"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .next()
}

#[test]
fn killed_run_resumes_without_recomputing_and_scores_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    scifact_slice(root);

    let (code, _, stderr) =
        common::output(&mut command(root, &root.join("cache-a"), "uninterrupted"));
    assert_eq!(code, 0, "{stderr}");
    let reference = result(root, "uninterrupted");

    // Start again with an empty cache and kill the process once 3 batches are stored.
    let cache = root.join("cache-b");
    let mut child = command(root, &cache, "killed")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let size = cache_file(&cache)
            .and_then(|p| p.metadata().ok())
            .map_or(0, |m| m.len());
        if size >= HEADER_BYTES + 3 * BATCH * RECORD_BYTES {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no batch stored in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !root.join("reports/killed/run.json").exists(),
        "killed run left no record"
    );
    let size = cache_file(&cache).unwrap().metadata().unwrap().len();
    let stored = (size - HEADER_BYTES) / RECORD_BYTES;
    let finished_batches = stored / BATCH;
    assert!(finished_batches >= 3);

    let (code, _, stderr) = common::output(&mut command(root, &cache, "resumed"));
    assert_eq!(code, 0, "{stderr}");
    let resumed = result(root, "resumed");
    let stats = &resumed["embedding"];
    let unique = stats["unique"].as_u64().unwrap();
    // Every batch finished before the kill came from the cache; only the rest was computed.
    assert_eq!(
        stats["from_cache"].as_u64().unwrap(),
        finished_batches * BATCH,
        "{stats}"
    );
    assert_eq!(
        stats["computed"].as_u64().unwrap(),
        unique - finished_batches * BATCH,
        "{stats}"
    );
    assert_eq!(
        resumed["scores"], reference["scores"],
        "scores identical to the uninterrupted run"
    );
}
