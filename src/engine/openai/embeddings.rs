//! `POST /v1/embeddings` as an `Embedder`: one request per batch, up to `concurrency`
//! batches in flight (the eval driver runs that many at once), every request timed.
//!
//! Images go one per request in the shape vLLM serves multimodal embedding models with:
//! a chat-style `messages` list whose user turn holds an `image_url` part (the image as a
//! base64 `data:` URL) and, when the task prompts, a `text` part.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::openai::client::HttpClient;
use crate::engine::openai::{
    count_tokens, Endpoint, RemoteOptions, RequestLog, RequestRecord, ResponseLimit, Secret,
};
use crate::engine::{Embedder, EmbedderInfo, ImageInput, Role};
use crate::error::{Error, Result};

pub struct RemoteEmbedder {
    client: HttpClient,
    runtime: tokio::runtime::Runtime,
    options: RemoteOptions,
    info: EmbedderInfo,
    log: RequestLog,
}

#[derive(Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Serialize)]
struct ImageEmbeddingRequest<'a> {
    model: &'a str,
    messages: [ChatTurn<'a>; 1],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Serialize)]
struct ChatTurn<'a> {
    role: &'static str,
    content: Vec<ContentPart<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentPart<'a> {
    ImageUrl { image_url: ImageUrl },
    Text { text: &'a str },
}

#[derive(Serialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vector,
}

/// A list of floats or a base64 string. (Not `#[serde(untagged)]`, which buffers every
/// value into a generic tree first: a visitor reads it once.)
enum Vector {
    Floats(Vec<f64>),
    Base64(String),
}

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Vector;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of numbers or a base64 string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Vector, E> {
                Ok(Vector::Base64(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Vector, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(v) = seq.next_element::<f64>()? {
                    values.push(v);
                }
                Ok(Vector::Floats(values))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

impl RemoteEmbedder {
    /// Connects and learns the vector size from one short request.
    pub fn connect(
        endpoint: Endpoint,
        key: Option<Secret>,
        options: RemoteOptions,
    ) -> Result<Self> {
        let runtime = super::runtime()?;
        let client = HttpClient::new(
            endpoint.clone(),
            key,
            options.timeout,
            options.retry.clone(),
        )?;
        let fingerprint = hex::encode(Sha256::digest(format!(
            "openai|{}|{}|{:?}",
            endpoint.base_url, endpoint.model, options.dimensions
        )));
        let mut embedder = RemoteEmbedder {
            client,
            runtime,
            info: EmbedderInfo {
                model: endpoint.display(),
                engine: "openai".into(),
                weights_sha256: String::new(),
                fingerprint,
                dim: 0,
                max_tokens: 0,
                pooling: "server".into(),
                normalize: false,
                dtype: "server".into(),
                device: endpoint.display(),
                served_model: None,
            },
            options,
            log: RequestLog::default(),
        };
        let (probe, record) = embedder
            .runtime
            .block_on(embedder.call(&["dimension probe".to_string()], None));
        embedder.info.dim = probe?[0].len();
        embedder.info.served_model = record.served_model;
        Ok(embedder)
    }

    /// Sends one batch; `scheduled` is when an open-loop caller meant to send it. The
    /// record is complete whatever the outcome.
    pub async fn call(
        &self,
        texts: &[String],
        scheduled: Option<f64>,
    ) -> (Result<Vec<Vec<f32>>>, RequestRecord) {
        let body = EmbeddingRequest {
            model: &self.client.endpoint().model,
            input: texts,
            encoding_format: self.encoding(),
            dimensions: self.options.dimensions,
        };
        self.send(&body, texts, scheduled).await
    }

    /// Embeds one image (with the prompt that goes with it, if any).
    pub async fn call_image(
        &self,
        image: &ImageInput,
        prompt: Option<&str>,
    ) -> (Result<Vec<Vec<f32>>>, RequestRecord) {
        let mut content = vec![ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: image.data_url(),
            },
        }];
        if let Some(text) = prompt {
            content.push(ContentPart::Text { text });
        }
        let body = ImageEmbeddingRequest {
            model: &self.client.endpoint().model,
            messages: [ChatTurn {
                role: "user",
                content,
            }],
            encoding_format: self.encoding(),
            dimensions: self.options.dimensions,
        };
        // Token counts of the prompt only: an image's tokens are the server's business.
        let texts: Vec<String> = prompt.map(String::from).into_iter().collect();
        let (outcome, mut record) = self.send(&body, &texts, None).await;
        record.inputs = 1;
        (outcome, record)
    }

    fn encoding(&self) -> &'static str {
        if self.options.base64 {
            "base64"
        } else {
            "float"
        }
    }

    /// POSTs one embeddings request whose vectors answer `texts` (one vector for an image
    /// request) and records it.
    async fn send(
        &self,
        body: &impl Serialize,
        texts: &[String],
        scheduled: Option<f64>,
    ) -> (Result<Vec<Vec<f32>>>, RequestRecord) {
        let expected = texts.len().max(1);
        let known = (self.info.dim > 0).then_some(self.info.dim);
        let limit = ResponseLimit::embeddings(
            expected,
            known.or(self.options.dimensions),
            self.options.max_response_bytes,
        );
        let (response, timing) = self
            .client
            .post_json::<EmbeddingResponse>("embeddings", body, &limit, scheduled)
            .await;
        let mut record = RequestRecord {
            kind: "embeddings".into(),
            inputs: texts.len(),
            timing,
            input_tokens: None,
            output_tokens: None,
            tokens_from: None,
            served_model: None,
            finish_reason: None,
            error: None,
        };
        let outcome = response.and_then(|response| {
            record.served_model = response.model.clone();
            let (tokens, from) = match response.usage.as_ref().and_then(|u| u.prompt_tokens) {
                Some(n) => (Some(n), Some("server")),
                None => match &self.options.tokenizer {
                    Some(t) => (
                        texts.iter().map(|x| count_tokens(t, x)).sum(),
                        Some("local-tokenizer"),
                    ),
                    None => (None, None),
                },
            };
            record.input_tokens = tokens;
            record.tokens_from = from.map(Into::into);
            let url = self.client.endpoint().url("embeddings");
            decode_vectors(response.data, expected, self.info.dim)
                .map_err(|message| Error::Remote(format!("POST {url}: {message}")))
        });
        if let Err(e) = &outcome {
            record.error = Some(e.to_string());
        }
        (outcome, record)
    }

    /// Seconds since the client started: the time base of its records.
    pub fn now(&self) -> f64 {
        self.client.now()
    }

    pub fn epoch(&self) -> std::time::Instant {
        self.client.epoch()
    }

    /// The records of every request so far (for `perf.jsonl`), leaving the log empty.
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        self.log.take()
    }
}

/// An embeddings response body parsed and checked as a request's would be: one vector
/// per input, in input order, of `dim` values (0: any, the same for all), all finite.
/// Lets tests feed the parser any bytes.
pub fn parse_embeddings(
    body: &[u8],
    expected: usize,
    dim: usize,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let response: EmbeddingResponse = serde_json::from_slice(body)
        .map_err(|e| format!("unreadable JSON in the response ({e})"))?;
    decode_vectors(response.data, expected, dim)
}

/// Decodes and checks the vectors: one per input, in input order, one dimension (`dim`
/// when known, else the first vector's), finite values.
fn decode_vectors(
    mut data: Vec<EmbeddingItem>,
    expected: usize,
    dim: usize,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    if data.len() != expected {
        return Err(format!(
            "{} embeddings returned for {expected} inputs",
            data.len()
        ));
    }
    if data.iter().all(|d| d.index.is_some()) {
        data.sort_by_key(|d| d.index);
    }
    let mut out = Vec::with_capacity(expected);
    for (i, item) in data.into_iter().enumerate() {
        let vector: Vec<f32> = match item.embedding {
            Vector::Floats(v) => v.into_iter().map(|x| x as f32).collect(),
            Vector::Base64(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| format!("embedding {i}: invalid base64: {e}"))?;
                if bytes.len() % 4 != 0 {
                    return Err(format!("embedding {i}: base64 data is not a list of f32"));
                }
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
        };
        if vector.is_empty() {
            return Err(format!("embedding {i} is empty"));
        }
        if let Some(first) = out.first().map(Vec::len).or((dim > 0).then_some(dim)) {
            if vector.len() != first {
                return Err(format!(
                    "mixed dimensions: embedding {i} has {} values, expected {first}",
                    vector.len()
                ));
            }
        }
        if let Some(j) = vector.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "embedding {i} has a non-finite value at position {j}"
            ));
        }
        out.push(vector);
    }
    Ok(out)
}

impl Embedder for RemoteEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn prepare(&self, text: &str, role: Role, instruction: Option<&str>) -> String {
        match self.options.profile {
            Some(profile) => profile.prepare(text, role, instruction),
            None => text.to_string(),
        }
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let (outcome, record) = self.runtime.block_on(self.call(texts, None));
        self.log.push(record);
        outcome
    }

    fn embed_images(&self, images: &[ImageInput], prompt: Option<&str>) -> Result<Vec<Vec<f32>>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        // One request per image, `concurrency` in flight, results in input order.
        let calls = stream::iter(images)
            .map(|image| async move {
                let (outcome, record) = self.call_image(image, prompt).await;
                self.log.push(record);
                outcome.map(|mut v| v.remove(0))
            })
            .buffered(self.options.concurrency.max(1));
        self.runtime.block_on(calls.try_collect())
    }

    fn parallel_batches(&self) -> usize {
        self.options.concurrency.max(1)
    }

    fn request_log(&self) -> Vec<RequestRecord> {
        self.take_requests()
    }
}
