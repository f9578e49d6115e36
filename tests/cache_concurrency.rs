//! The embedding cache shared by concurrent runs: no record one run writes is lost to
//! another run opening, repairing or appending to the same file.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use assay::store::cache::{key_of, EmbeddingCache};

const MAGIC: &[u8; 8] = b"ASSAYEMB";

/// Writes `<dir>/embeddings/<fp>.bin` with `count` records of dimension `dim` directly
/// (the cache's own writer would hold them all in memory).
fn write_cache(dir: &Path, fp: &str, count: usize, dim: usize) {
    let folder = dir.join("embeddings");
    std::fs::create_dir_all(&folder).unwrap();
    let file = std::fs::File::create(folder.join(format!("{fp}.bin"))).unwrap();
    let mut out = std::io::BufWriter::new(file);
    out.write_all(MAGIC).unwrap();
    out.write_all(&2u32.to_le_bytes()).unwrap();
    out.write_all(&(dim as u32).to_le_bytes()).unwrap();
    let mut record = Vec::with_capacity(32 + 4 * dim + 4);
    for i in 0..count {
        record.clear();
        record.extend_from_slice(&key_of(&format!("text {i}")));
        for j in 0..dim {
            record.extend_from_slice(&((i * dim + j) as f32).to_le_bytes());
        }
        let crc = crc32fast::hash(&record);
        record.extend_from_slice(&crc.to_le_bytes());
        out.write_all(&record).unwrap();
    }
    out.flush().unwrap();
}

/// (VmRSS, VmHWM) of this process in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Open time and memory for a cache of 200k 384-d vectors. Prints, asserts no timing;
/// ignored by default (it writes a 300 MB file): run with `--ignored --nocapture`.
#[test]
#[ignore]
fn open_time_and_memory_of_a_large_cache() {
    const COUNT: usize = 200_000;
    const DIM: usize = 384;
    let dir = tempfile::tempdir().unwrap();
    write_cache(dir.path(), "big", COUNT, DIM);
    // Warm the page cache so the open measures parsing, not the disk.
    let mut file = std::fs::File::open(dir.path().join("embeddings/big.bin")).unwrap();
    std::io::copy(&mut file, &mut std::io::sink()).unwrap();
    let (rss_before, _) = rss_mib();
    let started = Instant::now();
    let cache = EmbeddingCache::open(dir.path(), "big", DIM).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let (rss_after, peak) = rss_mib();
    assert_eq!(cache.len(), COUNT);
    let started = Instant::now();
    let mut sum = 0.0f64;
    for i in (0..COUNT).step_by(97) {
        sum += cache.get(&key_of(&format!("text {i}"))).unwrap()[1] as f64;
    }
    let lookups = started.elapsed().as_secs_f64();
    assert!(sum > 0.0);
    println!(
        "cache of {COUNT} x {DIM}: open {seconds:.3} s, RSS {rss_before:.0} -> {rss_after:.0} MiB \
         (peak {peak:.0} MiB), {} lookups {lookups:.3} s",
        COUNT.div_ceil(97)
    );
}

const DIM: usize = 32;

fn vector_of(name: &str) -> Vec<f32> {
    let seed = key_of(name);
    (0..DIM).map(|j| seed[j] as f32 - 0.5 * j as f32).collect()
}

/// `ASSAY_CACHE_STRESS=<dir>:<writer>:<batches>` makes this a writer of the stress test:
/// it appends its batches of distinct texts to the cache in `<dir>`, opening it afresh
/// every few batches. With no batch count it appends until killed.
#[test]
#[ignore]
fn stress_writer() {
    let Ok(spec) = std::env::var("ASSAY_CACHE_STRESS") else {
        return;
    };
    let mut parts = spec.rsplitn(3, ':');
    let (batches, writer, dir) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let batches: usize = batches.parse().unwrap_or(usize::MAX);
    let dir = Path::new(dir);
    let mut cache = EmbeddingCache::open(dir, "stress", DIM).unwrap();
    for b in 0..batches {
        if b % 7 == 6 {
            cache = EmbeddingCache::open(dir, "stress", DIM).unwrap();
        }
        let entries = (0..BATCH)
            .map(|i| {
                let name = format!("{writer}/{b}/{i}");
                (key_of(&name), vector_of(&name))
            })
            .collect();
        cache.insert_batch(entries).unwrap();
        assert!(cache.contains(&key_of(&format!("{writer}/{b}/0"))));
    }
}

const BATCH: usize = 50;

/// Processes append distinct batches to one cache file at once, one of them is killed
/// mid-run (maybe mid-append), and threads keep opening the file meanwhile: every batch a
/// writer finished is there afterwards, and no open ever finds a damaged record.
#[test]
fn concurrent_writers_openers_and_a_killed_writer_lose_nothing() {
    const WRITERS: usize = 4;
    const BATCHES: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let spawn = |writer: &str, batches: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "stress_writer", "--ignored", "--quiet"])
            .env(
                "ASSAY_CACHE_STRESS",
                format!("{}:{writer}:{batches}", dir.path().display()),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut victim = spawn("victim", "forever");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| spawn(&w.to_string(), &BATCHES.to_string()))
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let opens = std::thread::scope(|scope| {
        let openers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut opens = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let cache = EmbeddingCache::open(dir.path(), "stress", DIM).unwrap();
                        assert_eq!(cache.damaged(), 0);
                        opens += 1;
                    }
                    opens
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        victim.kill().unwrap();
        victim.wait().unwrap();
        for mut writer in writers {
            assert!(writer.wait().unwrap().success(), "a writer failed");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        openers
            .into_iter()
            .map(|o| o.join().unwrap())
            .sum::<usize>()
    });
    let cache = EmbeddingCache::open(dir.path(), "stress", DIM).unwrap();
    assert_eq!(cache.damaged(), 0);
    for w in 0..WRITERS {
        for b in 0..BATCHES {
            for i in 0..BATCH {
                let name = format!("{w}/{b}/{i}");
                assert_eq!(cache.get(&key_of(&name)), Some(vector_of(&name)), "{name}");
            }
        }
    }
    let victims = cache.len() - WRITERS * BATCHES * BATCH;
    println!(
        "{} records ({victims} from the killed writer), {opens} opens meanwhile",
        cache.len()
    );
}

/// `<root>/scifact`: the judged test queries `queries` (by order of first appearance in
/// the qrels), their judged documents, and the first `fill` other abstracts.
fn scifact_slice(root: &Path, queries: std::ops::Range<usize>, fill: usize) {
    let src = common::data_root().join("scifact");
    let dst = root.join("scifact");
    std::fs::create_dir_all(dst.join("qrels")).unwrap();
    let qrels = std::fs::read_to_string(src.join("qrels/test.tsv")).unwrap();
    let mut lines = qrels.lines();
    let mut kept = vec![lines.next().unwrap().to_string()];
    let mut seen: Vec<&str> = Vec::new();
    let mut docs = std::collections::HashSet::new();
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        if !seen.contains(&cols[0]) {
            seen.push(cols[0]);
        }
        if queries.contains(&(seen.len() - 1)) {
            docs.insert(cols[1].to_string());
            kept.push(line.to_string());
        }
    }
    std::fs::write(dst.join("qrels/test.tsv"), kept.join("\n") + "\n").unwrap();
    std::fs::copy(src.join("queries.jsonl"), dst.join("queries.jsonl")).unwrap();
    let corpus = std::fs::read_to_string(src.join("corpus.jsonl")).unwrap();
    let mut out = String::new();
    let mut others = 0;
    for line in corpus.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let judged = docs.contains(v["_id"].as_str().unwrap());
        if judged || others < fill {
            out.push_str(line);
            out.push('\n');
            others += usize::from(!judged);
        }
    }
    std::fs::write(dst.join("corpus.jsonl"), out).unwrap();
}

fn run(root: &Path, cache: &Path, run_id: &str) -> std::process::Command {
    let mut cmd = common::assay();
    cmd.args(["run", "--task", "scifact", "--model", &common::minilm_ref()])
        .args(["--run-id", run_id, "--batch-size", "16"])
        .arg("--data-root")
        .arg(root)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--reports")
        .arg(root.join("reports"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

fn result(root: &Path, run_id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("reports").join(run_id).join("run.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["tasks"][0]["result"].clone()
}

/// The keys of a cache file of 384-d vectors, checking every record whole and sound.
fn records(cache: &Path) -> Vec<[u8; 32]> {
    let files: Vec<_> = std::fs::read_dir(cache.join("embeddings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one cache file and nothing beside it: {files:?}"
    );
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    let record = 32 + 4 * 384 + 4;
    assert_eq!((bytes.len() - 16) % record, 0, "no torn record");
    bytes[16..]
        .chunks_exact(record)
        .map(|r| {
            let (body, crc) = r.split_at(record - 4);
            assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "a damaged record");
            body[..32].try_into().unwrap()
        })
        .collect()
}

/// Two runs on one cache at once, on slices of SciFact that share some texts and not
/// others: both finish, the file holds only sound records, and runs afterwards find every
/// text either run embedded in the cache (nothing computed) with the same scores.
#[test]
fn two_runs_sharing_a_cache_at_once_lose_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    // Different queries and judged documents; the first 150 other abstracts are shared.
    scifact_slice(&first, 0..40, 150);
    scifact_slice(&second, 40..80, 150);
    let cache = tmp.path().join("cache");
    let started = Instant::now();
    let children: Vec<_> = [(&first, "a"), (&second, "b")]
        .into_iter()
        .map(|(root, id)| run(root, &cache, id).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("damaged"), "{stderr}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let (a, b) = (result(&first, "a"), result(&second, "b"));
    let keys = records(&cache);
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    let computed = |r: &serde_json::Value| r["embedding"]["computed"].as_u64().unwrap();
    println!(
        "two runs in {seconds:.1} s computed {} + {} texts; the cache holds {} records, {} distinct",
        computed(&a),
        computed(&b),
        keys.len(),
        distinct.len()
    );
    assert_eq!(
        keys.len() as u64,
        computed(&a) + computed(&b),
        "every append kept"
    );

    for (root, id, before) in [(&first, "a2", &a), (&second, "b2", &b)] {
        let (code, _, stderr) = common::output(&mut run(root, &cache, id));
        assert_eq!(code, 0, "{stderr}");
        let again = result(root, id);
        let stats = &again["embedding"];
        assert_eq!(stats["computed"], 0, "{stats}");
        assert_eq!(stats["from_cache"], stats["unique"], "{stats}");
        assert_eq!(again["scores"], before["scores"]);
    }
    assert_eq!(records(&cache).len(), keys.len(), "nothing more written");
}
