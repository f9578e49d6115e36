//! The image-text retrieval task end to end through the remote engine: `assay run --task
//! coco-mini` against an in-process multimodal embeddings server whose vectors put every
//! caption exactly on its image (so recall is 1 at every k), then `compare` on the record.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::{extract::State, routing::post, Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// 16 values from the sha256 of `key`: distinct keys get near-orthogonal vectors.
fn vector_of(key: &str) -> Vec<f32> {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(16)
        .map(|&b| f32::from(b) - 127.5)
        .collect()
}

/// Caption text → image id, and image-file sha256 → image id, from the COCO files.
struct Truth {
    captions: HashMap<String, String>,
    images: HashMap<String, String>,
}

fn truth() -> Truth {
    let root = common::data_root().join("coco_mini");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("annotations/captions_val2017.json")).unwrap(),
    )
    .unwrap();
    let mut images = HashMap::new();
    for image in file["images"].as_array().unwrap() {
        let bytes = std::fs::read(
            root.join("val2017")
                .join(image["file_name"].as_str().unwrap()),
        )
        .unwrap();
        images.insert(hex::encode(Sha256::digest(&bytes)), image["id"].to_string());
    }
    let captions = file["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["caption"].as_str().unwrap().trim().to_string(),
                a["image_id"].to_string(),
            )
        })
        .collect();
    Truth { captions, images }
}

async fn embeddings(State(truth): State<Arc<Truth>>, Json(body): Json<Value>) -> Json<Value> {
    let key_of_text = |t: &str| {
        truth
            .captions
            .get(t)
            .cloned()
            .unwrap_or_else(|| t.to_string())
    };
    let data: Vec<Value> = if let Some(inputs) = body["input"].as_array() {
        inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"index": i, "embedding": vector_of(&key_of_text(t.as_str().unwrap()))}))
            .collect()
    } else {
        let url = body["messages"][0]["content"][0]["image_url"]["url"]
            .as_str()
            .unwrap();
        let encoded = url.split_once(";base64,").unwrap().1;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let id = &truth.images[&hex::encode(Sha256::digest(&bytes))];
        vec![json!({"index": 0, "embedding": vector_of(id)})]
    };
    Json(json!({"data": data, "model": "mm"}))
}

#[test]
fn coco_mini_runs_end_to_end_through_a_multimodal_endpoint() {
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(Arc::new(truth()));
    let addr = common::serve(app);
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = common::output(
        common::assay()
            .args(["run", "--task", "coco-mini", "--no-cache", "--run-id", "mm"])
            .args([
                "--model",
                &format!("openai:http://{addr}/v1#mm"),
                "--batch-size",
                "16",
            ])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(tmp.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let dir = tmp.path().join("mm");
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let result = &run["tasks"][0]["result"];
    assert_eq!(result["family"], "image-text");
    assert_eq!(result["main_score"], "image_retrieval_recall@5");
    assert_eq!(result["dataset"]["items"], 395);
    assert_eq!(result["dataset"]["corpus_size"], 79);
    for direction in ["image_retrieval_recall", "text_retrieval_recall"] {
        for k in [1, 5, 10] {
            assert_eq!(
                result["scores"][format!("{direction}@{k}")]["value"],
                1.0,
                "{result}"
            );
        }
    }
    // One sample per caption and per image, each with its rank and per-item scores.
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let samples: Vec<Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 395 + 79);
    let caption = samples
        .iter()
        .find(|s| s["id"].as_str().unwrap().starts_with("caption/"))
        .unwrap();
    assert_eq!(caption["rank"], 0);
    assert_eq!(caption["retrieved"][0][0], caption["image"]);
    assert_eq!(caption["scores"]["image_retrieval_recall@1"], 1.0);
    // Every image was one request in perf.jsonl.
    let perf = std::fs::read_to_string(dir.join("perf.jsonl")).unwrap();
    let image_requests = perf
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["inputs"] == 1 && r["input_tokens"].is_null())
        .count();
    assert_eq!(image_requests, 79);

    // The record pairs with itself item by item.
    let (code, out, err) = common::output(common::assay().arg("compare").arg(&dir).arg(&dir));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("image_retrieval_recall@5"), "{out}");
}
