//! A run killed midway resumes from the embedding cache: no finished batch is computed
//! again, and the scores equal those of an uninterrupted run exactly.
//! Runs on a slice of the real SciFact (100 queries, ~500 real abstracts) to stay quick.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Key, 384 floats, CRC-32.
const RECORD_BYTES: u64 = 32 + 4 * 384 + 4;
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

/// The cache file (`<fingerprint>.bin`); the folder also holds a retrieval run's
/// temporary corpus store, which must not be mistaken for it.
fn cache_file(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache.join("embeddings"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file() && p.extension().is_some_and(|x| x == "bin"))
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
    // Appends are whole batches; batches are 32 texts except the last of queries and of
    // documents, so count records rather than assume whole batches of 32.
    assert_eq!((size - HEADER_BYTES) % RECORD_BYTES, 0, "a torn record");
    let stored = (size - HEADER_BYTES) / RECORD_BYTES;
    assert!(stored >= 3 * BATCH);

    let (code, _, stderr) = common::output(&mut command(root, &cache, "resumed"));
    assert_eq!(code, 0, "{stderr}");
    let resumed = result(root, "resumed");
    let stats = &resumed["embedding"];
    let unique = stats["unique"].as_u64().unwrap();
    assert!(
        stored < unique,
        "the kill came after every vector was stored"
    );
    // Every batch finished before the kill came from the cache; only the rest was computed.
    assert_eq!(stats["from_cache"].as_u64().unwrap(), stored, "{stats}");
    assert_eq!(
        stats["computed"].as_u64().unwrap(),
        unique - stored,
        "{stats}"
    );
    assert_eq!(
        resumed["scores"], reference["scores"],
        "scores identical to the uninterrupted run"
    );
}

/// The arguments of `command`, for running the binary under another program.
fn args(root: &Path, cache: &Path, reports: &Path, run_id: &str) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![env!("CARGO_BIN_EXE_assay").into()];
    for a in [
        "run",
        "--task",
        "scifact",
        "--run-id",
        run_id,
        "--batch-size",
    ] {
        args.push(a.into());
    }
    args.push(BATCH.to_string().into());
    args.push("--model".into());
    args.push(common::minilm_ref().into());
    for (flag, value) in [
        ("--data-root", root),
        ("--cache-dir", cache),
        ("--reports", reports),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args
}

/// Runs `args` with a `size` tmpfs (read-only if asked) mounted at `mount` in a private
/// mount namespace, then copies what the run left there into `keep`: (exit code, stderr).
fn on_small_fs(
    mount: &Path,
    size: &str,
    read_only: bool,
    keep: &Path,
    args: &[std::ffi::OsString],
) -> (i32, String) {
    const SCRIPT: &str = r#"
mount -t tmpfs -o size="$SIZE" tmpfs "$MNT" || exit 97
if [ "$RO" = 1 ]; then mount -o remount,ro "$MNT" || exit 97; fi
"$@"; rc=$?
cp -a "$MNT"/. "$KEEP"/ || exit 97
exit $rc
"#;
    std::fs::create_dir_all(mount).unwrap();
    std::fs::create_dir_all(keep).unwrap();
    let (code, _, stderr) = common::output(
        std::process::Command::new("unshare")
            .args(["--map-root-user", "--mount", "sh", "-c", SCRIPT, "sh"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MNT", mount)
            .env("SIZE", size)
            .env("RO", if read_only { "1" } else { "0" })
            .env("KEEP", keep)
            .env_remove("ASSAY_LOG"),
    );
    assert_ne!(
        code, 97,
        "this machine cannot mount a private tmpfs (unshare --map-root-user --mount): {stderr}"
    );
    (code, stderr)
}

/// `run.json` is absent or a whole record: never half-written.
fn absent_or_whole(run_dir: &Path) {
    if let Ok(text) = std::fs::read_to_string(run_dir.join("run.json")) {
        serde_json::from_str::<serde_json::Value>(&text).expect("a whole run.json");
    }
}

#[test]
fn damaged_cache_full_disk_and_read_only_reports_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    scifact_slice(root);
    let reports = root.join("reports");
    let (code, _, stderr) = common::output(&mut command(root, &root.join("cache-a"), "clean"));
    assert_eq!(code, 0, "{stderr}");
    let reference = result(root, "clean");
    let unique = reference["embedding"]["unique"].as_u64().unwrap();

    // A bit flipped in the middle of the cache (not a torn tail): that record alone is
    // dropped with a warning that counts it, computed again, and the scores are the same.
    let file = cache_file(&root.join("cache-a")).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = HEADER_BYTES + (unique / 2) * RECORD_BYTES + 100;
    bytes[middle as usize] ^= 0x04;
    std::fs::write(&file, &bytes).unwrap();
    let (code, _, stderr) = common::output(&mut command(root, &root.join("cache-a"), "repaired"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 damaged record(s) failed their checksum"),
        "{stderr}"
    );
    // Its batch is computed again whole, as the uninterrupted run computed it (the batch's
    // padding shapes the arithmetic), so the vector is the same to the bit.
    let repaired = result(root, "repaired");
    assert_eq!(
        repaired["embedding"]["batches_computed"], 1,
        "{}",
        repaired["embedding"]
    );
    assert_eq!(repaired["scores"], reference["scores"]);

    // Cache and reports on a 400 KB file system: the disk fills mid-run. A clear error,
    // no half-written record, and the cache's whole records resume the run elsewhere.
    let small = root.join("small");
    let kept = root.join("kept-full");
    let (code, stderr) = on_small_fs(
        &small,
        "400k",
        false,
        &kept,
        &args(root, &small.join("cache"), &small.join("reports"), "full"),
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
    absent_or_whole(&kept.join("reports/full"));
    let stored = (cache_file(&kept.join("cache"))
        .unwrap()
        .metadata()
        .unwrap()
        .len()
        - HEADER_BYTES)
        / RECORD_BYTES;
    assert!(stored > 0 && stored < unique, "{stored} records stored");
    let (code, _, stderr) = common::output(&mut command(root, &kept.join("cache"), "after-full"));
    assert_eq!(code, 0, "{stderr}");
    let resumed = result(root, "after-full");
    assert_eq!(resumed["embedding"]["from_cache"], stored);
    assert_eq!(resumed["scores"], reference["scores"]);

    // A read-only reports folder: a clear error naming it; what was computed stays in the
    // cache, and a run with a writable folder finishes from it with the same scores.
    let kept = root.join("kept-ro");
    let cache = root.join("cache-ro");
    let (code, stderr) = on_small_fs(
        &reports.join("ro"),
        "1m",
        true,
        &kept,
        &args(root, &cache, &reports.join("ro"), "read-only"),
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(stderr.contains("reports/ro"), "names the folder: {stderr}");
    absent_or_whole(&kept.join("read-only"));
    let (code, _, stderr) = common::output(&mut command(root, &cache, "after-ro"));
    assert_eq!(code, 0, "{stderr}");
    let after = result(root, "after-ro");
    assert_eq!(after["scores"], reference["scores"]);
}
