//! Shared helpers for the integration tests: where the staged assets and the fetched
//! model are, and how to run the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `ASSAY_ASSETS`, default `../shared/assets` beside the repo (where CI has it).
pub fn assets() -> PathBuf {
    let dir = std::env::var_os("ASSAY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/assets"));
    assert!(
        dir.join("data").is_dir(),
        "staged assets not found at {} (set ASSAY_ASSETS)",
        dir.display()
    );
    dir
}

pub fn data_root() -> PathBuf {
    assets().join("data")
}

/// The all-MiniLM-L6-v2 folder fetched by `scripts/fetch-models.sh`.
pub fn minilm() -> PathBuf {
    let dir = std::env::var_os("ASSAY_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/assay/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not found at {}: run scripts/fetch-models.sh (or set ASSAY_MINILM_DIR)",
        dir.display()
    );
    dir
}

pub fn minilm_ref() -> String {
    format!("dir:{}", minilm().display())
}

/// The real `assay` binary, run from the repo root with a quiet log.
pub fn assay() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_assay"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("ASSAY_LOG");
    cmd
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn output(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of a score in a run record.
pub fn score(run_dir: &Path, task: &str, measure: &str) -> f64 {
    let text = std::fs::read_to_string(run_dir.join("run.json")).expect("run.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let tasks = json["tasks"].as_array().expect("tasks");
    let t = tasks
        .iter()
        .find(|t| t["result"]["task"] == task)
        .unwrap_or_else(|| panic!("task {task} in run.json"));
    t["result"]["scores"][measure]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{task}.{measure} in run.json"))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
