//! all-MiniLM-L6-v2 through the candle engine against onnxruntime reference vectors
//! (tests/fixtures/minilm_onnx, made by make_reference.py from the staged model.onnx).

mod common;

use assay::engine::candle::{BertEmbedder, LocalOptions};
use assay::engine::Embedder;
use assay::engine::ModelRef;

struct Reference {
    text: String,
    vector: Vec<f32>,
}

fn reference() -> Vec<Reference> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_onnx/reference.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("fixture")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            Reference {
                text: v["text"].as_str().expect("text").to_string(),
                vector: v["vector"]
                    .as_array()
                    .expect("vector")
                    .iter()
                    .map(|x| x.as_f64().expect("float") as f32)
                    .collect(),
            }
        })
        .collect()
}

fn embedder() -> BertEmbedder {
    let model = ModelRef::Dir {
        path: common::minilm(),
    };
    BertEmbedder::load(&model, &LocalOptions::default()).expect("model loads")
}

#[test]
fn vectors_match_onnxruntime_one_at_a_time_and_batched() {
    let refs = reference();
    assert_eq!(
        refs.len(),
        52,
        "50 STS-B sentences + a long and a non-ASCII input"
    );
    let model = embedder();
    assert_eq!(
        model.info().max_tokens,
        256,
        "sentence_bert_config.json max_seq_length"
    );
    assert_eq!(model.info().pooling, "mean");
    assert!(model.info().normalize);

    // All at once: padding to the longest (256 tokens) must not change any vector.
    let texts: Vec<String> = refs.iter().map(|r| r.text.clone()).collect();
    let batched = model.embed(&texts).expect("embeds");
    let mut worst: f64 = 1.0;
    for (r, v) in refs.iter().zip(&batched) {
        assert_eq!(v.len(), 384);
        let cos = common::cosine(&r.vector, v);
        worst = worst.min(cos);
        assert!(cos >= 0.99999, "cosine {cos} for {:?}", r.text);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised");
    }
    // One at a time, as the reference was made.
    for r in refs.iter().take(5).chain(refs.iter().rev().take(2)) {
        let v = &model.embed(std::slice::from_ref(&r.text)).expect("embeds")[0];
        let cos = common::cosine(&r.vector, v);
        assert!(cos >= 0.99999, "cosine {cos} for {:?}", r.text);
    }
    eprintln!("worst cosine against onnxruntime: {worst:.8}");
}

#[test]
fn truncation_and_pooling_overrides_change_the_vectors() {
    let refs = reference();
    let long = &refs[50];
    let model = ModelRef::Dir {
        path: common::minilm(),
    };
    let short = BertEmbedder::load(
        &model,
        &LocalOptions {
            max_tokens: Some(16),
            ..Default::default()
        },
    )
    .expect("loads");
    assert_ne!(short.info().fingerprint, embedder().info().fingerprint);
    let v = &short
        .embed(std::slice::from_ref(&long.text))
        .expect("embeds")[0];
    assert!(
        common::cosine(&long.vector, v) < 0.999,
        "truncation at 16 tokens must differ"
    );

    let cls = BertEmbedder::load(
        &model,
        &LocalOptions {
            pooling: Some(assay::engine::candle::Pooling::Cls),
            ..Default::default()
        },
    )
    .expect("loads");
    assert_eq!(cls.info().pooling, "cls");
    let v = &cls
        .embed(std::slice::from_ref(&refs[0].text))
        .expect("embeds")[0];
    assert!(common::cosine(&refs[0].vector, v) < 0.99);
}

#[test]
fn weights_saved_with_the_bert_prefix_load_to_the_same_vectors() {
    // Checkpoints saved from a task head name tensors `bert.embeddings...`: make such a
    // copy of the real model and check it embeds identically.
    let src = common::minilm();
    let tmp = tempfile::tempdir().unwrap();
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert!(
        tensors.keys().all(|k| !k.starts_with("bert.")),
        "the staged model has no prefix"
    );
    let prefixed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (format!("bert.{k}"), v))
        .collect();
    candle_core::safetensors::save(&prefixed, tmp.path().join("model.safetensors")).unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(file), tmp.path().join(file)).unwrap();
    }
    std::fs::create_dir_all(tmp.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        tmp.path().join("1_Pooling/config.json"),
    )
    .unwrap();

    let texts: Vec<String> = reference().iter().take(4).map(|r| r.text.clone()).collect();
    let plain = embedder().embed(&texts).unwrap();
    let with_prefix = BertEmbedder::load(
        &ModelRef::Dir {
            path: tmp.path().to_path_buf(),
        },
        &LocalOptions::default(),
    )
    .expect("prefixed weights load")
    .embed(&texts)
    .unwrap();
    assert_eq!(plain, with_prefix);
}
