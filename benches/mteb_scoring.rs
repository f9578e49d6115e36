//! Classification probe and clustering scoring time, assay next to scikit-learn on the
//! same vectors, measured in the same run (`benches/sklearn_metrics.py` is the sklearn
//! side). Prints each side's seconds and the ratio assay / sklearn (target <= 1.0).
//!
//!     eval "$(scripts/python-sklearn.sh)"
//!     cargo bench --bench mteb_scoring -- --cache <assay embeddings .bin> --data-root ../shared/assets/data
//!
//! The cache must hold banking77's vectors (any `assay run --task banking77 --task
//! banking77-clustering` fills it). Workload: banking77's 10 probe experiments (8 rows per
//! label, 3,080 test rows) and 10 clustering experiments of 16,384 draws (k = 77).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use assay::metrics::classification::{probe, undersample_experiments, ProbeConfig};
use assay::metrics::clustering::{evaluate_clustering, ClusteringConfig};
use assay::metrics::rng::PyRandom;
use sha2::{Digest, Sha256};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Every vector of an assay embedding cache, by the sha256 of its text.
fn read_cache(path: &PathBuf) -> HashMap<[u8; 32], Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"ASSAYEMB",
        "{} is not an assay cache",
        path.display()
    );
    let dim = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    bytes[16..]
        .chunks_exact(32 + 4 * dim)
        .map(|r| {
            let key: [u8; 32] = r[..32].try_into().unwrap();
            let v = r[32..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (key, v)
        })
        .collect()
}

fn read_csv(path: PathBuf) -> (Vec<String>, Vec<String>) {
    let mut reader =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .unzip()
}

fn best_of<T>(rounds: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// `sklearn_<what>_seconds=<x> threads=<n>` lines of the Python side.
fn sklearn_seconds(cache: &str, data_root: &str, threads: usize) -> BTreeMap<String, f64> {
    let python = std::env::var("ASSAY_SKLEARN_PYTHON")
        .expect("ASSAY_SKLEARN_PYTHON is not set: eval \"$(scripts/python-sklearn.sh)\" first");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sklearn_metrics.py");
    let out = std::process::Command::new(python)
        .args([script, "--cache", cache, "--data-root", data_root])
        .args(["--threads", &threads.to_string(), "--repeat", "3"])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (key, rest) = l.split_once('=')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

fn main() {
    let (Some(cache), Some(data_root)) = (arg("--cache"), arg("--data-root")) else {
        eprintln!("usage: cargo bench --bench mteb_scoring -- --cache FILE.bin --data-root DIR");
        return;
    };
    let vectors = read_cache(&PathBuf::from(&cache));
    let embed = |texts: &[String]| -> Vec<Vec<f32>> {
        texts
            .iter()
            .map(|t| {
                let key: [u8; 32] = Sha256::digest(t.as_bytes()).into();
                vectors
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| panic!("no vector for {t:?}"))
            })
            .collect()
    };
    let root = PathBuf::from(&data_root).join("banking77");
    let (train_texts, train_names) = read_csv(root.join("train.csv"));
    let (test_texts, test_names) = read_csv(root.join("test.csv"));
    let classes: BTreeSet<&String> = train_names.iter().chain(&test_names).collect();
    let index: HashMap<&String, i64> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as i64))
        .collect();
    let y_train: Vec<i64> = train_names.iter().map(|n| index[n]).collect();
    let y_test: Vec<i64> = test_names.iter().map(|n| index[n]).collect();
    let config = ProbeConfig::default();
    let drawn: BTreeSet<usize> = undersample_experiments(&y_train, 8, 10, 42)
        .into_iter()
        .flatten()
        .collect();
    let dim = vectors.values().next().map_or(0, Vec::len);
    let mut x_train = vec![vec![0f32; dim]; train_texts.len()];
    for i in drawn {
        x_train[i] = embed(std::slice::from_ref(&train_texts[i])).remove(0);
    }
    let x_test = embed(&test_texts);
    let labels: Vec<Vec<usize>> = y_test.iter().map(|&y| vec![y as usize]).collect();
    let clustering = ClusteringConfig {
        max_fraction_of_documents_to_embed: None,
        ..ClusteringConfig::default()
    };

    println!("measure     threads  assay s  sklearn s  assay/sklearn");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (probe_s, clustering_s) = pool.install(|| {
            (
                best_of(3, || {
                    probe(&x_train, &y_train, &x_test, &y_test, &config).unwrap()
                }),
                best_of(3, || {
                    evaluate_clustering(&x_test, &labels, &clustering, &mut PyRandom::seed(42))
                        .unwrap()
                }),
            )
        });
        let sklearn = sklearn_seconds(&cache, &data_root, threads);
        for (name, ours, key) in [
            ("probe", probe_s, "sklearn_probe_seconds"),
            ("clustering", clustering_s, "sklearn_clustering_seconds"),
        ] {
            let theirs = sklearn[key];
            println!(
                "{name:<11} {threads:>7}  {ours:>7.3}  {theirs:>9.3}  {:>13.2}",
                ours / theirs
            );
        }
    }
}
