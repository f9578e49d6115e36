//! How much of a response assay holds before it gives up on it. A server it does not
//! control can answer with a body that never ends; without a cap the client buffers it
//! until the attempt's timeout (hundreds of MB per second on a local link). Every cap is
//! derived from the request, so an honest answer never comes near it.

use bytes::BytesMut;
use futures_util::StreamExt;
use http::header::CONTENT_LENGTH;

use crate::engine::openai::transport::Reply;

/// How much of an error body is read for its message: the rest is not waited for.
pub const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The widest a JSON float gets, with the separator and a pretty-printer's indentation
/// (`-1.2345678901234567e-123,` on its own indented line); base64 needs 5.4 bytes.
const BYTES_PER_VALUE: u64 = 48;
/// Per vector: `{"object":"embedding","index":12345,"embedding":[]}` and friends.
const BYTES_PER_VECTOR: u64 = 1024;
/// The envelope: `model`, `usage`, `id` and whatever else a server adds.
const ENVELOPE_BYTES: u64 = 64 * 1024;
/// Before the first answer says how long a vector is: wider than any embedder's.
const UNKNOWN_DIMENSIONS: u64 = 65_536;
/// Per generated token, one streamed chunk at most carries it with its JSON envelope
/// (id, model, choices, logprobs); ten times the usual ~300 bytes.
const STREAM_BYTES_PER_TOKEN: u64 = 4 * 1024;
/// Servers send a few events besides one per token (role, finish, usage, keep-alives).
const STREAM_EVENTS_PER_TOKEN: u64 = 4;
const STREAM_EXTRA_EVENTS: u64 = 256;

/// The caps on one response.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseLimit {
    /// Bytes of body.
    pub bytes: u64,
    /// Server-sent events in a streamed answer.
    pub events: u64,
    /// What the caps were derived from, for the error message.
    pub basis: String,
}

impl ResponseLimit {
    /// An embeddings answer to `inputs` texts (or one image) with vectors of `dimensions`
    /// values (unknown before the first answer); `max_bytes` (--max-response-bytes)
    /// replaces the derived byte cap.
    pub fn embeddings(inputs: usize, dimensions: Option<usize>, max_bytes: Option<u64>) -> Self {
        let n = inputs.max(1) as u64;
        let dims = dimensions.map_or(UNKNOWN_DIMENSIONS, |d| d as u64);
        let derived = n
            .saturating_mul(dims.saturating_mul(BYTES_PER_VALUE) + BYTES_PER_VECTOR)
            .saturating_add(ENVELOPE_BYTES);
        let plural = if n == 1 { "" } else { "s" };
        let basis = match dimensions {
            Some(d) => format!("{n} input{plural} × {d} dimensions"),
            None => format!("{n} input{plural} of unknown dimension"),
        };
        ResponseLimit::new(derived, 0, basis, max_bytes)
    }

    /// A generated answer of at most `max_tokens` tokens, plain or streamed.
    pub fn generation(max_tokens: usize, max_bytes: Option<u64>) -> Self {
        let tokens = max_tokens as u64;
        let derived = tokens
            .saturating_mul(STREAM_BYTES_PER_TOKEN)
            .saturating_add(ENVELOPE_BYTES);
        let events = tokens
            .saturating_mul(STREAM_EVENTS_PER_TOKEN)
            .saturating_add(STREAM_EXTRA_EVENTS);
        ResponseLimit::new(
            derived,
            events,
            format!("max_tokens {max_tokens}"),
            max_bytes,
        )
    }

    fn new(derived: u64, events: u64, basis: String, max_bytes: Option<u64>) -> Self {
        match max_bytes {
            Some(bytes) => ResponseLimit {
                bytes,
                events,
                basis: "--max-response-bytes".into(),
            },
            None => ResponseLimit {
                bytes: derived,
                events,
                basis,
            },
        }
    }

    /// The byte cap, what it came from, and how to raise it.
    fn byte_cap(&self) -> String {
        let raise = if self.basis == "--max-response-bytes" {
            ""
        } else {
            "; --max-response-bytes raises it"
        };
        format!("cap of {} bytes (from {}{raise})", self.bytes, self.basis)
    }

    /// The error for a body that passed the byte cap.
    pub fn too_many_bytes(&self) -> String {
        format!("the response passed its {}", self.byte_cap())
    }

    /// The error for a body announced longer than the byte cap.
    pub fn announced_too_long(&self, announced: u64) -> String {
        format!(
            "the response announces {announced} bytes (Content-Length), over its {}",
            self.byte_cap()
        )
    }

    /// The error for a stream that passed the event cap.
    pub fn too_many_events(&self) -> String {
        format!(
            "the event stream passed its cap of {} events (from {})",
            self.events, self.basis
        )
    }
}

/// Why a body could not be read whole.
#[derive(Debug, PartialEq)]
pub enum ReadError {
    /// Longer than the cap (announced or seen): not worth another attempt.
    TooLarge(String),
    /// The connection broke: worth another attempt.
    Broken(String),
}

/// The error for a reply whose `Content-Length` is over the byte cap, if it is: such a
/// body is refused before any of it is read.
pub fn announced_too_long(reply: &Reply, limit: &ResponseLimit) -> Option<String> {
    let announced: u64 = reply
        .headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (announced > limit.bytes).then(|| limit.announced_too_long(announced))
}

/// The whole body, as long as it stays within `limit` bytes. A body announced longer is
/// refused before any of it is read.
pub async fn read_capped(reply: Reply, limit: &ResponseLimit) -> Result<Vec<u8>, ReadError> {
    if let Some(message) = announced_too_long(&reply, limit) {
        return Err(ReadError::TooLarge(message));
    }
    let mut body = BytesMut::new();
    let mut chunks = reply.stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(ReadError::Broken)?;
        if (body.len() + chunk.len()) as u64 > limit.bytes {
            return Err(ReadError::TooLarge(limit.too_many_bytes()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.to_vec())
}

/// Up to `ERROR_BODY_BYTES` of an error body, for its message; an unreadable one is empty.
pub async fn read_error_body(reply: Reply) -> Vec<u8> {
    let mut body = Vec::new();
    let mut chunks = reply.stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = ERROR_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_BYTES {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_request() {
        let one = ResponseLimit::embeddings(1, Some(384), None);
        assert_eq!(one.bytes, 384 * 48 + 1024 + 64 * 1024);
        assert_eq!(one.basis, "1 input × 384 dimensions");
        let batch = ResponseLimit::embeddings(32, Some(4096), None);
        assert_eq!(batch.bytes, 32 * (4096 * 48 + 1024) + 64 * 1024);
        assert!(ResponseLimit::embeddings(1, None, None).bytes > one.bytes);
        let over = ResponseLimit::embeddings(32, Some(4096), Some(1000));
        assert_eq!(over.bytes, 1000);
        assert!(!over.too_many_bytes().contains("raises"));
        assert!(one
            .too_many_bytes()
            .contains("--max-response-bytes raises it"));
        let chat = ResponseLimit::generation(256, None);
        assert_eq!(
            (chat.bytes, chat.events),
            (256 * 4096 + 65536, 256 * 4 + 256)
        );
        // Absurd settings saturate instead of overflowing.
        assert_eq!(ResponseLimit::generation(usize::MAX, None).bytes, u64::MAX);
    }
}
