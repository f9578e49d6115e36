//! Parity of the candle decoder embedders with the reference Python implementations, on
//! tiny random-weight checkpoints (tests/fixtures/tiny/, made by make_tiny.py) with the
//! real tokenizers of each family: every vector must match (cosine, see PARITY), and the
//! prompts assay builds must be the model cards' text exactly.

mod common;

/// Cosine every f32 vector must reach. The issue asks for 0.9999; these reach 1 − 1e-13,
/// and a stricter bar catches small slips a tiny random model barely shows (a wrong
/// LLaVA-NeXT crop moves its image vectors by ~1e-4 only).
const PARITY: f64 = 0.999_999;

use std::path::Path;

use assay::engine::candle::{load_embedder, LocalOptions};
use assay::engine::ModelRef;
use assay::engine::{Embedder, Role};
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

/// The tiny model folder plus the real tokenizer from the assets.
fn model_dir(name: &str, reference: &Reference) -> tempfile::TempDir {
    let dir = common::tiny_model(name);
    let tokenizers = common::assets()
        .join("tokenizers")
        .join(&reference.tokenizer);
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tokenizers.join(file), dir.path().join(file)).unwrap();
    }
    dir
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(common::tiny_fixture(name).join("reference.json")).unwrap();
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
        assert!(cos >= PARITY, "{name} input {i}: cosine {cos}");
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

#[derive(Deserialize)]
struct VisionReference {
    tokenizer: String,
    added_tokens: Vec<String>,
    captions: Vec<String>,
    prepared: Vec<String>,
    text_embeddings: Vec<Vec<f32>>,
    images: Vec<String>,
    image_embeddings: Vec<Vec<f32>>,
}

/// E5-V (LLaVA-NeXT): texts and images (any-resolution tiles, 56-pixel tower) against
/// transformers' LlavaNextForConditionalGeneration read the E5-V way.
#[test]
fn e5_v_matches_transformers_on_text_and_images() {
    let reference: VisionReference = serde_json::from_str(
        &std::fs::read_to_string(common::tiny_fixture("e5-v").join("reference.json")).unwrap(),
    )
    .unwrap();
    let dir = common::tiny_model("e5-v");
    // Llama 3's tokenizer with E5-V's added `<image>` token.
    let tokenizers = common::assets()
        .join("tokenizers")
        .join(&reference.tokenizer);
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(tokenizers.join("tokenizer.json")).unwrap();
    let added: Vec<tokenizers::AddedToken> = reference
        .added_tokens
        .iter()
        .map(|t| tokenizers::AddedToken::from(t.clone(), true))
        .collect();
    assert_eq!(tokenizer.add_special_tokens(added).unwrap(), 1);
    tokenizer
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();

    let embedder = load(dir.path(), DType::F32);
    let prepared: Vec<String> = reference
        .captions
        .iter()
        .map(|c| embedder.prepare(c, Role::Query, None))
        .collect();
    assert_eq!(prepared, reference.prepared);
    let texts = embedder.embed(&prepared).unwrap();
    for (i, (got, want)) in texts.iter().zip(&reference.text_embeddings).enumerate() {
        let cos = common::cosine(got, want);
        assert!(cos >= PARITY, "caption {i}: cosine {cos}");
    }
    let images: Vec<assay::engine::ImageInput> = reference
        .images
        .iter()
        .map(|n| {
            assay::engine::ImageInput::read(&common::data_root().join("coco_mini/val2017").join(n))
                .unwrap()
        })
        .collect();
    let vectors = embedder.embed_images(&images, None).unwrap();
    for (i, (got, want)) in vectors.iter().zip(&reference.image_embeddings).enumerate() {
        let cos = common::cosine(got, want);
        assert!(cos >= PARITY, "image {i}: cosine {cos}");
    }
    // Half precision (what a GPU run of the 8B model uses) stays close.
    for dtype in [DType::F16, DType::BF16] {
        let half = load(dir.path(), dtype);
        let texts = half.embed(&prepared).unwrap();
        let vectors = half.embed_images(&images, None).unwrap();
        let pairs = texts
            .iter()
            .zip(&reference.text_embeddings)
            .chain(vectors.iter().zip(&reference.image_embeddings));
        for (got, want) in pairs {
            let cos = common::cosine(got, want);
            assert!(cos >= 0.99, "{dtype:?}: cosine {cos}");
        }
    }
}
