//! Images to a remote embedder: real COCO JPEGs sent as base64 `data:` URLs in the chat
//! `messages` shape vLLM serves multimodal embedding models with, against an in-process
//! server that checks the request and answers with a vector derived from the image bytes.

mod common;

use axum::{routing::post, Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use assay::engine::openai::{Endpoint, RemoteEmbedder, RemoteOptions};
use assay::engine::{Embedder, ImageInput};

/// Eight values from the sha256 of the bytes: a vector that identifies what was sent.
fn vector_of(bytes: &[u8]) -> Vec<f32> {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|&b| f32::from(b) / 255.0)
        .collect()
}

/// `input` (the connect probe: one vector per text) or `messages` with one image part and
/// an optional text part; anything else is a 400 saying what was wrong.
async fn embeddings(Json(body): Json<Value>) -> (axum::http::StatusCode, Json<Value>) {
    let bad = |m: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": m}})),
        )
    };
    if let Some(inputs) = body["input"].as_array() {
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"index": i, "embedding": vector_of(t.as_str().unwrap_or("").as_bytes())}))
            .collect();
        return (
            axum::http::StatusCode::OK,
            Json(json!({"data": data, "model": "mm"})),
        );
    }
    let Some([turn]) = body["messages"].as_array().map(Vec::as_slice) else {
        return bad("expected one message");
    };
    if turn["role"] != "user" {
        return bad("role must be user");
    }
    let parts = turn["content"].as_array().cloned().unwrap_or_default();
    let Some(url) = parts
        .first()
        .filter(|p| p["type"] == "image_url")
        .and_then(|p| p["image_url"]["url"].as_str())
    else {
        return bad("first part must be an image_url");
    };
    let Some(encoded) = url.strip_prefix("data:image/jpeg;base64,") else {
        return bad("expected a JPEG data URL");
    };
    let Ok(image) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return bad("invalid base64");
    };
    // The prompt, when sent, changes the vector: the test can tell it arrived.
    let mut seen = image;
    match parts.get(1) {
        Some(p) if p["type"] == "text" => seen.extend(p["text"].as_str().unwrap_or("").as_bytes()),
        Some(_) => return bad("second part must be text"),
        None => {}
    }
    let data = json!([{"index": 0, "embedding": vector_of(&seen)}]);
    (
        axum::http::StatusCode::OK,
        Json(json!({"data": data, "model": "mm", "usage": {"prompt_tokens": 600}})),
    )
}

#[test]
fn images_go_as_data_urls_in_chat_messages_and_come_back_in_order() {
    let addr = common::serve(Router::new().route("/v1/embeddings", post(embeddings)));
    let endpoint = Endpoint::parse(&format!("openai:http://{addr}/v1#mm")).unwrap();
    let embedder = RemoteEmbedder::connect(endpoint, None, RemoteOptions::default()).unwrap();
    assert_eq!(embedder.info().dim, 8);
    embedder.request_log();

    let dir = common::data_root().join("coco_mini/val2017");
    let names = [
        "000000000139.jpg",
        "000000000802.jpg",
        "000000011813.jpg",
        "000000000139.jpg",
    ];
    let images: Vec<ImageInput> = names
        .iter()
        .map(|n| ImageInput::read(&dir.join(n)).unwrap())
        .collect();
    let vectors = embedder.embed_images(&images, None).unwrap();
    let expected: Vec<Vec<f32>> = images.iter().map(|i| vector_of(&i.bytes)).collect();
    assert_eq!(vectors, expected);
    assert_eq!(vectors[0], vectors[3]);

    let prompt = "<image>\nSummary above image in one word: ";
    let prompted = embedder.embed_images(&images[..1], Some(prompt)).unwrap();
    let mut seen = images[0].bytes.clone();
    seen.extend(prompt.as_bytes());
    assert_eq!(prompted[0], vector_of(&seen));

    // Every image request is in the log: one input each, tokens as the server counted.
    let log = embedder.request_log();
    assert_eq!(log.len(), 5);
    assert!(log
        .iter()
        .all(|r| r.inputs == 1 && r.error.is_none() && r.input_tokens == Some(600)));
}

#[test]
fn an_endpoint_that_rejects_images_fails_clearly() {
    // A text-only server: any `messages` body is a 400.
    async fn text_only(Json(body): Json<Value>) -> (axum::http::StatusCode, Json<Value>) {
        if body.get("messages").is_some() {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "this model does not support image input"}})),
            );
        }
        (
            axum::http::StatusCode::OK,
            Json(json!({"data": [{"index": 0, "embedding": [1.0, 0.0]}]})),
        )
    }
    let addr = common::serve(Router::new().route("/v1/embeddings", post(text_only)));
    let endpoint = Endpoint::parse(&format!("openai:http://{addr}/v1#text")).unwrap();
    let embedder = RemoteEmbedder::connect(endpoint, None, RemoteOptions::default()).unwrap();
    let image =
        ImageInput::read(&common::data_root().join("coco_mini/val2017/000000000139.jpg")).unwrap();
    let err = embedder
        .embed_images(&[image], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("400") && err.contains("does not support image input"),
        "{err}"
    );
}

#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    engine: assay::cli::EngineArgs,
}

/// A served model's name picks its profile (or `--profile` names one): the texts on the
/// wire carry the model card's prompts, since servers add none.
#[test]
fn remote_texts_get_the_profile_prompts() {
    use assay::engine::Role;
    use clap::Parser;
    let addr = common::serve(Router::new().route("/v1/embeddings", post(embeddings)));
    let connect = |model: &str, flags: &[&str]| {
        let flags = Flags::parse_from(std::iter::once("assay").chain(flags.iter().copied()));
        let endpoint =
            assay::engine::openai::Endpoint::parse(&format!("openai:http://{addr}/v1#{model}"))
                .unwrap();
        assay::commands::load_remote_embedder(&endpoint, &flags.engine, 1).unwrap()
    };
    let sent = |e: &RemoteEmbedder, text: &str, role: Role| {
        let prepared = e.prepare(text, role, Some("Find the answer"));
        let got = e.embed(std::slice::from_ref(&prepared)).unwrap();
        (prepared, got[0].clone())
    };

    let e5 = connect("intfloat/e5-mistral-7b-instruct", &[]);
    let (text, vector) = sent(&e5, "why is the sky blue", Role::Query);
    assert_eq!(
        text,
        "Instruct: Find the answer\nQuery: why is the sky blue"
    );
    assert_eq!(
        vector,
        vector_of(text.as_bytes()),
        "the server saw the prompt"
    );
    assert_eq!(sent(&e5, "Rayleigh.", Role::Document).0, "Rayleigh.");

    let plain = connect("my-embedder", &[]);
    assert_eq!(sent(&plain, "q", Role::Query).0, "q");
    let named = connect("my-embedder", &["--profile", "embeddinggemma"]);
    assert_eq!(
        sent(&named, "q", Role::Query).0,
        "task: search result | query: q"
    );
}
