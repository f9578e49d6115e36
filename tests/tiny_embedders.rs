//! Parity of the candle decoder embedders with the reference Python implementations, on
//! tiny random-weight checkpoints (tests/fixtures/tiny/, made by make_tiny.py) with the
//! real tokenizers of each family: every vector must match with cosine ≥ 0.9999, and the
//! prompts assay builds must be the model cards' text exactly.

mod common;

use std::path::{Path, PathBuf};

use assay::engine::candle::{load_embedder, LocalOptions};
use assay::engine::{Embedder, Role};
use assay::spec::ModelRef;
use candle_core::DType;
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    text: String,
    role: String,
    instruction: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    tokenizer: String,
    inputs: Vec<Input>,
    prepared: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny")
        .join(name)
}

/// The fixture's files plus the real tokenizer from the assets, in a fresh folder (the
/// folder name carries the model name, as a user's download would).
fn model_dir(name: &str, reference: &Reference) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    let tokenizers = common::assets()
        .join("tokenizers")
        .join(&reference.tokenizer);
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tokenizers.join(file), dir.path().join(file)).unwrap();
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(dir: &Path, dtype: DType) -> Box<dyn Embedder> {
    let model = ModelRef::Dir {
        path: dir.to_path_buf(),
    };
    load_embedder(
        &model,
        &LocalOptions {
            dtype,
            ..Default::default()
        },
    )
    .expect("loads")
}

/// Prepares the inputs as a task would and embeds them in one padded batch.
fn embed_all(embedder: &dyn Embedder, reference: &Reference) -> Vec<Vec<f32>> {
    let prepared: Vec<String> = reference
        .inputs
        .iter()
        .map(|i| {
            let role = if i.role == "query" {
                Role::Query
            } else {
                Role::Document
            };
            embedder.prepare(&i.text, role, i.instruction.as_deref())
        })
        .collect();
    assert_eq!(
        prepared, reference.prepared,
        "prompts differ from the model card"
    );
    embedder.embed(&prepared).expect("embeds")
}

fn check(name: &str, pooling: &str) {
    let reference = reference(name);
    let dir = model_dir(name, &reference);
    let embedder = load(dir.path(), DType::F32);
    assert_eq!(embedder.info().pooling, pooling);
    assert_eq!(embedder.info().dim, reference.embeddings[0].len());
    let vectors = embed_all(embedder.as_ref(), &reference);
    for (i, (got, want)) in vectors.iter().zip(&reference.embeddings).enumerate() {
        let cos = common::cosine(got, want);
        assert!(cos >= 0.9999, "{name} input {i}: cosine {cos}");
    }
    // One at a time (no padding) gives the same vectors as the padded batch.
    let alone = embedder
        .embed(std::slice::from_ref(&reference.prepared[3]))
        .unwrap();
    assert!(common::cosine(&alone[0], &vectors[3]) > 0.99999);

    // Half precision: same model, same inputs, close to the f32 reference.
    for dtype in [DType::F16, DType::BF16] {
        let half = load(dir.path(), dtype);
        assert_ne!(half.info().fingerprint, embedder.info().fingerprint);
        let vectors = embed_all(half.as_ref(), &reference);
        for (i, (got, want)) in vectors.iter().zip(&reference.embeddings).enumerate() {
            let cos = common::cosine(got, want);
            assert!(cos >= 0.99, "{name} {dtype:?} input {i}: cosine {cos}");
        }
    }
}

#[test]
fn e5_mistral_matches_transformers() {
    check("e5-mistral", "last-token");
}

#[test]
fn qwen3_embedding_matches_transformers() {
    check("qwen3-embedding", "last-token");
}

#[test]
fn embeddinggemma_matches_sentence_transformers() {
    check("embeddinggemma", "mean");
}
