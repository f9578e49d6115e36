//! CLIP on candle against transformers' CLIPModel, on a tiny random-weight checkpoint
//! (tests/fixtures/tiny/clip, made by make_tiny.py with OpenAI's BPE vocabulary), then
//! the whole coco-mini task through it: the recall in the run record must be what the
//! model's own vectors give when ranked here independently.

mod common;

/// Cosine every f32 vector must reach. The issue asks for 0.9999; these reach 1 − 1e-13,
/// and a stricter bar catches small slips a tiny random model barely shows (a wrong
/// LLaVA-NeXT crop moves its image vectors by ~1e-4 only).
const PARITY: f64 = 0.999_999;

use std::path::PathBuf;
use std::sync::LazyLock;

use assay::data::image_text::load_coco;
use assay::engine::candle::{load_embedder, LocalOptions};
use assay::engine::ModelRef;
use assay::engine::{Embedder, ImageInput};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Reference {
    captions: Vec<String>,
    text_embeddings: Vec<Vec<f32>>,
    images: Vec<String>,
    image_embeddings: Vec<Vec<f32>>,
}

fn fixture() -> PathBuf {
    common::tiny_fixture("clip")
}

/// The checkpoint unpacked once for this test binary.
static MODEL: LazyLock<tempfile::TempDir> = LazyLock::new(|| common::tiny_model("clip"));

fn clip() -> Box<dyn Embedder> {
    clip_in(candle_core::DType::F32)
}

fn clip_in(dtype: candle_core::DType) -> Box<dyn Embedder> {
    let options = LocalOptions {
        dtype,
        ..Default::default()
    };
    let path = MODEL.path().to_path_buf();
    load_embedder(&ModelRef::Dir { path }, &options).expect("loads")
}

fn coco() -> PathBuf {
    common::data_root().join("coco_mini")
}

#[test]
fn text_and_image_vectors_match_transformers() {
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    let model = clip();
    assert_eq!(model.info().dim, 8);
    let texts = model.embed(&reference.captions).unwrap();
    for (i, (got, want)) in texts.iter().zip(&reference.text_embeddings).enumerate() {
        let cos = common::cosine(got, want);
        assert!(cos >= PARITY, "caption {i}: cosine {cos}");
    }
    let images: Vec<ImageInput> = reference
        .images
        .iter()
        .map(|name| ImageInput::read(&coco().join("val2017").join(name)).unwrap())
        .collect();
    let vectors = model.embed_images(&images, None).unwrap();
    for (i, (got, want)) in vectors.iter().zip(&reference.image_embeddings).enumerate() {
        let cos = common::cosine(got, want);
        assert!(cos >= PARITY, "image {i}: cosine {cos}");
    }
}

#[test]
fn half_precision_stays_close() {
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    let images: Vec<ImageInput> = reference
        .images
        .iter()
        .map(|name| ImageInput::read(&coco().join("val2017").join(name)).unwrap())
        .collect();
    for dtype in [candle_core::DType::F16, candle_core::DType::BF16] {
        let model = clip_in(dtype);
        let texts = model.embed(&reference.captions).unwrap();
        let vectors = model.embed_images(&images, None).unwrap();
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

/// 0-based rank of `target` among `scores` (ties count against it, as a strict
/// implementation would place equal scores first).
fn rank(scores: &[f64], target: usize) -> usize {
    scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| i != target && s >= scores[target])
        .count()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

#[test]
fn coco_mini_runs_end_to_end_on_the_tiny_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let model = format!("dir:{}", MODEL.path().display());
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "run",
                "--task",
                "coco-mini",
                "--run-id",
                "clip",
                "--model",
                &model,
            ])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(tmp.path())
            .arg("--cache-dir")
            .arg(tmp.path().join("cache")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("clip/run.json")).unwrap())
            .unwrap();
    let result = &run["tasks"][0]["result"];
    assert_eq!(result["family"], "image-text");
    assert_eq!(result["dataset"]["items"], 395);
    assert_eq!(run["model"]["engine"], "candle");

    // Rank everything here from the model's own vectors.
    let data = load_coco(&coco(), "val2017").unwrap();
    let embedder = clip();
    let texts: Vec<String> = data.captions.iter().map(|c| c.text.clone()).collect();
    let text_vectors = embedder.embed(&texts).unwrap();
    let images: Vec<ImageInput> = data
        .images
        .iter()
        .map(|i| ImageInput::read(&i.path).unwrap())
        .collect();
    let image_vectors = embedder.embed_images(&images, None).unwrap();
    for k in [1usize, 5, 10] {
        let image_hits = data
            .captions
            .iter()
            .zip(&text_vectors)
            .filter(|(c, t)| {
                let scores: Vec<f64> = image_vectors.iter().map(|v| dot(t, v)).collect();
                rank(&scores, c.image) < k
            })
            .count();
        let text_hits = (0..data.images.len())
            .filter(|&i| {
                let scores: Vec<f64> = text_vectors
                    .iter()
                    .map(|t| dot(t, &image_vectors[i]))
                    .collect();
                let best = data
                    .captions
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.image == i)
                    .map(|(j, _)| rank(&scores, j))
                    .min()
                    .unwrap();
                best < k
            })
            .count();
        let want_image = image_hits as f64 / data.captions.len() as f64;
        let want_text = text_hits as f64 / data.images.len() as f64;
        let got_image = result["scores"][format!("image_retrieval_recall@{k}")]["value"]
            .as_f64()
            .unwrap();
        let got_text = result["scores"][format!("text_retrieval_recall@{k}")]["value"]
            .as_f64()
            .unwrap();
        assert!(
            (got_image - want_image).abs() < 1e-12,
            "R@{k} t→i {got_image} vs {want_image}"
        );
        assert!(
            (got_text - want_text).abs() < 1e-12,
            "R@{k} i→t {got_text} vs {want_text}"
        );
    }
}
