//! What the load generator drives: one call per request, whatever the engine. Remote
//! engines are called on the bench's runtime; a local engine runs each batch on a blocking
//! thread, at most `slots` at once (its concurrency), queueing the rest.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::engine::openai::{RemoteEmbedder, RemoteGenerator, RequestRecord};
use crate::engine::{Embedder, GenerationRequest, Timing};

/// One request's work.
#[derive(Debug, Clone)]
pub enum Payload {
    Embed(Vec<String>),
    Generate(GenerationRequest),
}

#[derive(Clone)]
pub enum Target {
    RemoteEmbed(Arc<RemoteEmbedder>),
    RemoteGenerate(Arc<RemoteGenerator>),
    LocalEmbed {
        embedder: Arc<dyn Embedder>,
        slots: Arc<Semaphore>,
        epoch: Instant,
    },
}

impl Target {
    pub fn local(embedder: Arc<dyn Embedder>) -> Target {
        Target::LocalEmbed {
            embedder,
            slots: Arc::new(Semaphore::new(1)),
            epoch: Instant::now(),
        }
    }

    /// The instant every time in this target's records counts from.
    pub fn epoch(&self) -> Instant {
        match self {
            Target::RemoteEmbed(e) => e.epoch(),
            Target::RemoteGenerate(g) => g.epoch(),
            Target::LocalEmbed { epoch, .. } => *epoch,
        }
    }

    pub fn now(&self) -> f64 {
        self.epoch().elapsed().as_secs_f64()
    }

    /// For a local engine, how many batches run at once (a closed-loop level sets it to
    /// its concurrency; open-loop levels keep the engine's own parallelism).
    pub fn set_slots(&mut self, n: usize) {
        if let Target::LocalEmbed { slots, .. } = self {
            *slots = Arc::new(Semaphore::new(n.max(1)));
        }
    }

    /// Runs one chat turn and returns the answer's text too (a conversation re-sends it
    /// as history); `None` when the request failed or the engine cannot chat.
    pub async fn converse(
        &self,
        request: GenerationRequest,
        scheduled: f64,
    ) -> (Option<String>, RequestRecord) {
        match self {
            Target::RemoteGenerate(g) => {
                let (outcome, record) = g.call(&request, Some(scheduled)).await;
                (outcome.ok().map(|g| g.text), record)
            }
            _ => (None, self.call(Payload::Generate(request), scheduled).await),
        }
    }

    /// Runs one request; the record says how it went (never panics, never loses it).
    pub async fn call(&self, payload: Payload, scheduled: f64) -> RequestRecord {
        match (self, payload) {
            (Target::RemoteEmbed(e), Payload::Embed(texts)) => {
                e.call(&texts, Some(scheduled)).await.1
            }
            (Target::RemoteGenerate(g), Payload::Generate(request)) => {
                g.call(&request, Some(scheduled)).await.1
            }
            (
                Target::LocalEmbed {
                    embedder, slots, ..
                },
                Payload::Embed(texts),
            ) => {
                // Waiting for a free slot is queueing: it counts in the latency (from
                // `scheduled`), not in the service time (from `sent`).
                let permit = slots.clone().acquire_owned().await;
                let sent = self.now();
                let tokens: usize = embedder
                    .input_lengths(&texts.iter().map(String::as_str).collect::<Vec<_>>())
                    .iter()
                    .sum();
                let worker = embedder.clone();
                let inputs = texts.len();
                let outcome = tokio::task::spawn_blocking(move || worker.embed(&texts)).await;
                drop(permit);
                let error = match outcome {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("the embedding thread failed: {e}")),
                };
                RequestRecord {
                    kind: "embeddings".into(),
                    inputs,
                    timing: Timing {
                        scheduled,
                        sent,
                        end: self.now(),
                        attempts: 1,
                        ..Timing::default()
                    },
                    input_tokens: Some(tokens as u64),
                    output_tokens: None,
                    tokens_from: Some("local-tokenizer".into()),
                    served_model: None,
                    finish_reason: None,
                    error,
                }
            }
            (_, payload) => {
                let timing = Timing {
                    scheduled,
                    sent: scheduled,
                    end: scheduled,
                    ..Timing::default()
                };
                let why = format!("this engine cannot run {payload:?}");
                RequestRecord::failed("mismatch", 0, timing, why)
            }
        }
    }
}
