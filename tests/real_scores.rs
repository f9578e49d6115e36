//! all-MiniLM-L6-v2 on the real STS-B and SciFact test sets, through the real CLI, against
//! MTEB's published scores for this model.

mod common;

use std::path::{Path, PathBuf};

fn run(task: &str, cache: &Path, reports: &Path, run_id: &str) -> PathBuf {
    run_printing(task, cache, reports, run_id).0
}

/// The run's folder and what it printed.
fn run_printing(task: &str, cache: &Path, reports: &Path, run_id: &str) -> (PathBuf, String) {
    let (code, stdout, stderr) = common::output(
        common::assay()
            .args([
                "run",
                "--task",
                task,
                "--model",
                &common::minilm_ref(),
                "--run-id",
                run_id,
            ])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--cache-dir")
            .arg(cache)
            .arg("--reports")
            .arg(reports),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    println!("{stdout}");
    (reports.join(run_id), stdout)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("json")
}

/// The cache dir: `ASSAY_TEST_CACHE` lets CI hand the vectors on to the default suite.
fn cache_dir(tmp: &Path) -> PathBuf {
    std::env::var_os("ASSAY_TEST_CACHE").map_or_else(|| tmp.join("cache"), PathBuf::from)
}

#[test]
fn stsb_cosine_spearman_matches_mteb_and_second_run_reembeds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = run("stsb", &cache, &tmp.path().join("reports"), "first");
    let spearman = common::score(&dir, "stsb", "cosine_spearman");
    println!("STS-B test cosine Spearman: {spearman:.6} (MTEB 0.82032)");
    assert!((spearman - 0.8203).abs() <= 0.0005, "{spearman}");

    let record = json(&dir.join("run.json"));
    let task = &record["tasks"][0]["result"];
    assert_eq!(task["dataset"]["items"], 1379);
    assert!(task["embedding"]["computed"].as_u64().unwrap() > 2000);
    let ci = &task["scores"]["cosine_spearman"]["ci95"];
    assert!(ci["low"].as_f64().unwrap() < spearman && spearman < ci["high"].as_f64().unwrap());
    assert_eq!(
        record["model"]["weights_sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(
        record["tasks"][0]["result"]["dataset"]["fingerprint"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    let mteb = json(&dir.join("mteb/STSBenchmark.json"));
    assert_eq!(mteb["task_name"], "STSBenchmark");
    assert_eq!(
        mteb["scores"]["test"][0]["main_score"].as_f64(),
        Some(spearman)
    );
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 1379);

    // Same task again: every vector comes from the cache, the scores are identical.
    let again = run("stsb", &cache, &tmp.path().join("reports"), "second");
    let task2 = &json(&again.join("run.json"))["tasks"][0]["result"];
    assert_eq!(task2["embedding"]["computed"], 0);
    assert_eq!(task2["embedding"]["batches_computed"], 0);
    assert_eq!(task2["scores"], task["scores"]);
}

#[test]
fn scifact_ndcg_at_10_matches_mteb() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, stdout) = run_printing(
        "scifact",
        &cache_dir(tmp.path()),
        &tmp.path().join("reports"),
        "scifact",
    );
    let score = |m: &str| common::score(&dir, "scifact", m);
    let (ndcg, map, recall) = (
        score("ndcg_at_10"),
        score("map_at_10"),
        score("recall_at_100"),
    );
    println!("SciFact test nDCG@10 {ndcg:.5} (MTEB 0.64508), MAP@10 {map:.5} (0.59593), Recall@100 {recall:.5} (0.925)");
    assert!((ndcg - 0.64508).abs() <= 0.01, "{ndcg}");
    assert!((map - 0.59593).abs() <= 0.01, "{map}");
    assert!((recall - 0.925).abs() <= 0.01, "{recall}");
    let record = json(&dir.join("run.json"));
    assert_eq!(record["tasks"][0]["result"]["dataset"]["items"], 300);
    assert_eq!(record["tasks"][0]["result"]["dataset"]["corpus_size"], 5183);
    let mteb = json(&dir.join("mteb/SciFact.json"));
    assert_eq!(mteb["scores"]["test"][0]["main_score"].as_f64(), Some(ndcg));
    // Where the time went: embedding, the exact search and scoring each recorded and
    // printed with their share of the wall time.
    let result = &record["tasks"][0]["result"];
    let (embedding, search, seconds) = (
        result["embedding"]["seconds"].as_f64().unwrap(),
        result["search_seconds"].as_f64().unwrap(),
        result["seconds"].as_f64().unwrap(),
    );
    assert!(
        embedding > 0.0 && search > 0.0 && embedding + search <= seconds,
        "{result}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("wall time "))
        .unwrap_or_else(|| panic!("no wall-time line:\n{stdout}"));
    for part in ["embedding ", "search ", "scoring ", "other "] {
        assert!(line.contains(part), "{line}");
    }
}
