//! `assay bench-search`: exact top-k over a synthetic corpus in a memory-mapped vector
//! store (time, queries/s, peak resident memory), next to faiss's IndexFlatIP on the same
//! vectors with the same thread count, measured in the same run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::cli::BenchSearchArgs;
use crate::error::{Error, Result};
use crate::search::{top_k, Corpus};
use crate::store::{StoreDtype, VectorStore, VectorWriter};

/// Cluster centres of the synthetic data: each row is a centre plus noise, so a query has
/// near neighbours (uniform noise alone makes every cosine about 0).
const CENTRES: usize = 1024;
const NOISE: f32 = 0.6;
/// Ids compared with faiss per query.
const AGREE_TOP: usize = 10;

#[derive(Debug, Deserialize)]
struct Ready {
    version: String,
}

#[derive(Debug, Deserialize)]
struct Searched {
    seconds: f64,
}

#[derive(Debug, Deserialize)]
struct Done {
    peak_rss_bytes: u64,
}

pub fn run(args: &BenchSearchArgs) -> Result<()> {
    let threads = super::thread_count(args.threads);
    let dtype: StoreDtype = args.store_dtype.parse()?;
    if args.corpus == 0 || args.dim == 0 || args.queries == 0 || args.k.contains(&0) {
        return Err(Error::Usage(
            "bench-search: --corpus, --dim, --queries and every --k must be at least 1".into(),
        ));
    }
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            temp.path().to_path_buf()
        }
    };
    let (n, dim, seed) = (args.corpus, args.dim, args.seed);
    let corpus_path = dir.join(format!("corpus-{n}x{dim}-{dtype}-seed{seed}.vec"));
    let query_path = dir.join(format!("queries-{}x{dim}-seed{seed}.vec", args.queries));
    let clock = Instant::now();
    // Streams 1 and 2 of the seed: the corpus does not depend on the query count.
    ensure_store(&corpus_path, n, dim, dtype, seed, 1)?;
    ensure_store(&query_path, args.queries, dim, StoreDtype::F32, seed, 2)?;
    let prepared = clock.elapsed().as_secs_f64();

    let store = VectorStore::open(&corpus_path)?;
    let query_store = VectorStore::open(&query_path)?;
    let queries: Vec<Vec<f32>> = (0..query_store.len()).map(|i| query_store.row(i)).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("d{i:09}")).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::External(format!("search thread pool: {e}")))?;
    let mut faiss = if args.faiss {
        Some(Faiss::start(
            &args.python,
            &corpus_path,
            &query_path,
            threads,
        )?)
    } else {
        None
    };

    let file_bytes = std::fs::metadata(&corpus_path).map_or(0, |m| m.len());
    println!(
        "bench-search: {n} × {dim} {dtype} corpus ({:.2} GiB store, ready in {prepared:.1} s), \
         {} queries, {threads} threads{}",
        file_bytes as f64 / (1u64 << 30) as f64,
        args.queries,
        faiss
            .as_ref()
            .map_or(String::new(), |f| format!(", faiss {}", f.version))
    );
    println!(
        "{:<6} {:<6} {:>9} {:>11} {:>9} {:>11} {:>7}",
        "round", "k", "assay s", "assay q/s", "faiss s", "faiss q/s", "ratio"
    );
    let ids_path = dir.join("faiss-top10.i64");
    let qps = |s: f64| args.queries as f64 / s;
    // (k, assay seconds, faiss seconds, queries whose top-10 lists are identical)
    let mut rows: Vec<(usize, f64, Option<f64>, Option<usize>)> = Vec::new();
    // Alternate the two per k and per round, so a slow moment of the machine hurts both.
    for round in 1..=args.rounds.max(1) {
        for &k in &args.k {
            let clock = Instant::now();
            let hits = pool.install(|| top_k(&queries, &store, &ids, k, |_, _| false))?;
            let ours = clock.elapsed().as_secs_f64();
            let (theirs, same) = match faiss.as_mut() {
                Some(f) => {
                    let (seconds, their_ids) = f.search(k, &ids_path)?;
                    let width = k.min(AGREE_TOP);
                    let same = hits
                        .iter()
                        .zip(their_ids.chunks_exact(width))
                        .filter(|(h, t)| {
                            h.iter()
                                .take(width)
                                .map(|h| h.doc as i64)
                                .eq(t.iter().copied())
                        })
                        .count();
                    (Some(seconds), Some(same))
                }
                None => (None, None),
            };
            let show = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
            println!(
                "{round:<6} {k:<6} {ours:>9.3} {:>11.1} {:>9} {:>11} {:>7}",
                qps(ours),
                show(theirs, 3),
                show(theirs.map(qps), 1),
                show(theirs.map(|t| t / ours), 2),
            );
            rows.push((k, ours, theirs, same));
        }
    }
    let peak = peak_rss_bytes();
    let faiss_peak = faiss.take().map(Faiss::finish).transpose()?;

    println!("medians over {} rounds:", args.rounds.max(1));
    println!(
        "{:<6} {:>9} {:>11} {:>9} {:>11} {:>7} {:>12}",
        "k", "assay s", "assay q/s", "faiss s", "faiss q/s", "ratio", "same top-10"
    );
    for &k in &args.k {
        let of_k = || rows.iter().filter(move |r| r.0 == k);
        let ours = median(of_k().map(|r| r.1).collect());
        let theirs: Vec<f64> = of_k().filter_map(|r| r.2).collect();
        let ratios: Vec<f64> = of_k().filter_map(|r| Some(r.2? / r.1)).collect();
        let same = of_k().filter_map(|r| r.3).min();
        if theirs.is_empty() {
            println!("{k:<6} {ours:>9.3} {:>11.1}", qps(ours));
        } else {
            let theirs = median(theirs);
            println!(
                "{k:<6} {ours:>9.3} {:>11.1} {theirs:>9.3} {:>11.1} {:>6.2}x {:>12}",
                qps(ours),
                qps(theirs),
                median(ratios),
                same.map_or("-".into(), |s| format!("{s}/{}", args.queries))
            );
        }
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    match peak {
        Some(b) => println!("assay peak RSS (VmHWM): {:.0} MiB", mib(b)),
        None => println!("assay peak RSS: unknown (no /proc/self/status)"),
    }
    if let Some(b) = faiss_peak {
        println!("faiss peak RSS: {:.0} MiB", mib(b));
        println!("ratio = assay queries/s ÷ faiss queries/s (faiss: IndexFlatIP.search over pre-normalised vectors in RAM)");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Writes the synthetic store at `path` unless one with these settings is already there.
fn ensure_store(
    path: &Path,
    rows: usize,
    dim: usize,
    dtype: StoreDtype,
    seed: u64,
    stream: u64,
) -> Result<()> {
    if let Ok(store) = VectorStore::open(path) {
        if store.len() == rows && store.dim() == dim && store.dtype() == dtype {
            return Ok(());
        }
    }
    let mut centres_rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..CENTRES * dim)
        .map(|_| centres_rng.random_range(-1.0..1.0))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut writer = VectorWriter::create(path, dim, dtype)?;
    let mut row = vec![0.0f32; dim];
    for _ in 0..rows {
        let centre = &centres[rng.random_range(0..CENTRES) * dim..][..dim];
        for (v, c) in row.iter_mut().zip(centre) {
            *v = c + NOISE * rng.random_range(-1.0f32..1.0);
        }
        writer.push(&row)?;
    }
    writer.finish()?;
    Ok(())
}

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// benches/faiss_search.py, serving searches over its index one request at a time.
struct Faiss {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl Faiss {
    fn start(python: &str, corpus: &Path, queries: &Path, threads: usize) -> Result<Self> {
        let script = super::bench_script("faiss_search.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--corpus")
            .arg(corpus)
            .arg("--queries")
            .arg(queries)
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::External(format!(
                    "cannot start `{python}` for the faiss reference: {e} \
                     (get one with: eval \"$(scripts/python-faiss.sh)\")"
                ))
            })?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut faiss = Faiss {
            child,
            stdin,
            stdout,
            version: String::new(),
        };
        let ready: Ready = faiss.read()?;
        faiss.version = ready.version;
        Ok(faiss)
    }

    /// Seconds for one search with this `k`, and each query's first ids (row-major).
    fn search(&mut self, k: usize, ids_path: &Path) -> Result<(f64, Vec<i64>)> {
        let stdin = self.stdin.as_mut().expect("open until finish");
        writeln!(stdin, "{k} {}", ids_path.display())
            .and_then(|_| stdin.flush())
            .map_err(|e| Error::External(format!("faiss reference: {e}")))?;
        let answer: Searched = self.read()?;
        let bytes = std::fs::read(ids_path).map_err(|e| Error::io(ids_path, e))?;
        let ids = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Ok((answer.seconds, ids))
    }

    /// Closes its input and returns its peak RSS in bytes.
    fn finish(mut self) -> Result<u64> {
        drop(self.stdin.take());
        let done: Done = self.read()?;
        let _ = self.child.wait();
        Ok(done.peak_rss_bytes)
    }

    fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| Error::External(format!("faiss reference: {e}")))?;
        serde_json::from_str(&line).map_err(|e| {
            let status = self.child.try_wait().ok().flatten();
            Error::External(format!(
                "faiss reference ({}) answered {:?} ({e}); exit status {status:?} \
                 (its error is above; a Python with faiss: eval \"$(scripts/python-faiss.sh)\")",
                super::bench_script("faiss_search.py").display(),
                line.trim()
            ))
        })
    }
}

impl Drop for Faiss {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
