//! `assay bench-embed`: sentences per second of the local engine next to onnxruntime on
//! the same model, sentences, batch size and thread count, measured in the same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::Deserialize;

use crate::cli::BenchEmbedArgs;
use crate::data::lines::{read_bytes, utf8_lines};
use crate::engine::candle::ModelFiles;
use crate::error::{Error, Result};
use crate::eval::embed::embed_all;
use crate::eval::sts::cosine;
use crate::store::EmbeddingCache;

#[derive(Debug, Deserialize)]
struct ReferenceResult {
    version: String,
    sentences_per_s: f64,
}

pub fn run(args: &BenchEmbedArgs) -> Result<()> {
    let threads = args
        .engine
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let sentences = stsb_sentences(&args.stsb, args.sentences)?;
    let embedder = super::load_local_embedder(&args.model, &args.engine)?;
    let batch = args.engine.batch_size;

    // Warm up (page in the weights, size the buffers) before anything is timed.
    let dim = embedder.info().dim;
    let warm_up = &sentences[..batch.min(sentences.len())];
    embed_all(
        embedder.as_ref(),
        &mut EmbeddingCache::disabled(dim),
        warm_up,
        batch,
        "warm-up",
    )?;

    println!(
        "bench-embed: {} sentences, batch {batch}, {threads} threads, model {}",
        sentences.len(),
        embedder.info().model
    );
    println!(
        "product kernels: {}",
        crate::engine::candle::packed_linear::kernel_form()
    );
    println!(
        "{:<6} {:>18} {:>18} {:>8}",
        "round", "assay sent/s", "onnxruntime sent/s", "ratio"
    );
    // The machines are shared and noisy: alternate the two engines round by round and
    // report medians, so a slow moment hurts both sides alike.
    let mut rounds = Vec::new();
    let mut parity = None;
    for round in 1..=args.rounds.max(1) {
        let clock = Instant::now();
        let (vectors, _) = embed_all(
            embedder.as_ref(),
            &mut EmbeddingCache::disabled(dim),
            &sentences,
            batch,
            "assay",
        )?;
        let ours = sentences.len() as f64 / clock.elapsed().as_secs_f64();
        let reference = if args.no_reference {
            None
        } else {
            // The first round also saves onnxruntime's vectors, for the parity check.
            let saved = (round == 1)
                .then(|| tempfile::Builder::new().suffix(".npy").tempfile())
                .transpose()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let result = run_reference(
                args,
                &sentences,
                threads,
                embedder.info().max_tokens,
                saved.as_ref().map(|f| f.path()),
            )?;
            if let Some(file) = saved {
                let theirs = read_npy_f32(file.path())?;
                parity = Some(cosines(&vectors, &theirs, file.path())?);
            }
            Some(result)
        };
        let theirs = reference.as_ref().map(|r| r.sentences_per_s);
        let show = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
        println!(
            "{round:<6} {ours:>18.1} {:>18} {:>8}",
            show(theirs, 1),
            show(theirs.map(|t| ours / t), 2)
        );
        rounds.push((ours, reference));
    }
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let ours = median(rounds.iter().map(|r| r.0).collect());
    println!("median assay (candle): {ours:.1} sentences/s");
    if let Some(version) = rounds
        .iter()
        .find_map(|r| r.1.as_ref().map(|x| x.version.clone()))
    {
        let theirs = median(
            rounds
                .iter()
                .filter_map(|r| r.1.as_ref().map(|x| x.sentences_per_s))
                .collect(),
        );
        let ratio = median(
            rounds
                .iter()
                .filter_map(|r| r.1.as_ref().map(|x| r.0 / x.sentences_per_s))
                .collect(),
        );
        println!("median onnxruntime {version}: {theirs:.1} sentences/s");
        println!("median ratio assay / onnxruntime: {ratio:.2}x");
    }
    if let Some((min, median)) = parity {
        println!(
            "parity with onnxruntime over {} sentences: min cosine {min:.7}, median {median:.7} (target >= 0.99999)",
            sentences.len()
        );
    }
    Ok(())
}

/// (min, median) cosine between each of our vectors and the reference's, row by row.
fn cosines(ours: &[Vec<f32>], theirs: &Npy, path: &Path) -> Result<(f64, f64)> {
    if theirs.rows != ours.len() || ours.iter().any(|v| v.len() != theirs.cols) {
        return Err(Error::External(format!(
            "{}: the reference saved {} x {} vectors, assay made {} x {}",
            path.display(),
            theirs.rows,
            theirs.cols,
            ours.len(),
            ours.first().map_or(0, Vec::len)
        )));
    }
    let mut all: Vec<f64> = ours
        .iter()
        .zip(theirs.data.chunks_exact(theirs.cols))
        .map(|(a, b)| cosine(a, b))
        .collect();
    all.sort_by(f64::total_cmp);
    Ok((all[0], all[all.len() / 2]))
}

/// A 2-d little-endian float32 C-order `.npy` array.
struct Npy {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

fn read_npy_f32(path: &Path) -> Result<Npy> {
    let bytes = read_bytes(path)?;
    let bad = |why: &str| Error::External(format!("{}: {why}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        let b: [u8; 4] = bytes
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("truncated header"))?;
        (u32::from_le_bytes(b) as usize, 12)
    };
    let header = bytes
        .get(start..start + header_len)
        .map(String::from_utf8_lossy)
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(&format!(
            "expected a C-order float32 array, header {header}"
        )));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in the header"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            d.trim()
                .parse()
                .map_err(|_| bad(&format!("bad shape ({shape})")))
        })
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(&format!("expected 2 dimensions, shape ({shape})")));
    };
    let body = &bytes[start + header_len..];
    if body.len() != rows * cols * 4 {
        return Err(bad("data size does not match the shape"));
    }
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Npy { rows, cols, data })
}

/// The first `n` distinct sentences of STS-B test then dev, in file order.
pub fn stsb_sentences(dir: &Path, n: usize) -> Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for split in ["test", "dev"] {
        let path = dir.join(format!("sts-{split}.csv"));
        let bytes = read_bytes(&path)?;
        for (_, line) in utf8_lines(&path, &bytes)? {
            for sentence in line.split('\t').skip(5).take(2) {
                if out.len() < n && seen.insert(sentence.to_string()) {
                    out.push(sentence.to_string());
                }
            }
        }
    }
    Ok(out)
}

fn run_reference(
    args: &BenchEmbedArgs,
    sentences: &[String],
    threads: usize,
    max_tokens: usize,
    save_vectors: Option<&Path>,
) -> Result<ReferenceResult> {
    let files = ModelFiles::resolve(&args.model)?;
    let list = tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    serde_json::to_writer(list.as_file(), sentences).map_err(|e| Error::External(e.to_string()))?;
    let script = super::bench_script("onnx_embed.py");
    let output = Command::new(&args.python)
        .arg(&script)
        .arg("--model-onnx")
        .arg(&args.onnx)
        .arg("--tokenizer")
        .arg(&files.tokenizer)
        .arg("--sentences")
        .arg(list.path())
        .args(["--threads", &threads.to_string()])
        .args(["--batch-size", &args.engine.batch_size.to_string()])
        .args(["--max-length", &max_tokens.to_string()])
        .args(
            save_vectors
                .map(|p| [std::ffi::OsStr::new("--out-vectors"), p.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .output()
        .map_err(|e| {
            Error::External(format!(
                "cannot start `{}` for the onnxruntime reference: {e}",
                args.python
            ))
        })?;
    if !output.status.success() {
        return Err(Error::External(format!(
            "onnxruntime reference ({}) failed: {}\n(install its deps with `pip install -r benches/requirements.txt`, or pass --no-reference)",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| {
        Error::External(format!(
            "onnxruntime reference printed no result line ({e}): {stdout}"
        ))
    })
}
