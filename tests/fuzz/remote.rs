// The two parsers that read what a server sends: the embeddings response parser and the
// server-sent-event reader of streamed answers. Any bytes, split into chunks anywhere,
// give a checked value or an error, never a panic. (Included in `fuzz_inputs.rs`: its
// campaign runner, seeds and regression files.)

use assay::engine::openai::chat::read_streamed_answer;
use assay::engine::openai::embeddings::parse_embeddings;
use bytes::Bytes;
use proptest::prelude::*;

use super::fuzz;

/// Valid bodies the mutations start from.
const EMBEDDINGS: &[&str] = &[
    r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.25,-1.5,3e-7]},{"object":"embedding","index":1,"embedding":[1,2,3]}],"model":"m","usage":{"prompt_tokens":4,"total_tokens":4}}"#,
    // Base64 of [1.0, 2.0, 3.0] as little-endian f32, out of order.
    r#"{"data":[{"index":1,"embedding":"AACAPwAAAEAAAEBA"},{"index":0,"embedding":"AACAPwAAAEAAAEBA"}]}"#,
    r#"{"data":[{"embedding":[1e38,-1e-45,0]},{"embedding":[5,6,7]}],"usage":{}}"#,
];

const STREAMS: &[&str] = &[
    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}],\"model\":\"m\"}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
    ": keep-alive\r\n\r\nevent: message\r\nid: 7\r\nretry: 10\r\ndata: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\ndata: {\"choices\":[{\"text\":\"b\",\"finish_reason\":\"length\"}]}\r\n\r\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\ndata: {\"more\": 1}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n",
];

/// Byte sequences that matter to JSON and SSE framing, inserted and swapped in.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"data:",
    b"data: [DONE]\n\n",
    b": ping\n",
    b"event:",
    b"id:",
    b"retry: 1",
    b":",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\"",
    b"\\u",
    b"\\ud800",
    b"1e999",
    b"-1e39",
    b"-0",
    b"null",
    b"true",
    b"NaN",
    b"18446744073709551616",
    b"\xff\xfe",
    b"\xe2\x82",
    b"\"embedding\":",
    b"\"index\":",
    b"\"data\":",
    b"\"AACAPw==\"",
    b"\"finish_reason\":\"stop\"",
    b"\"choices\":[]",
    b"\"error\":{}",
];

/// The body cut into chunks at the given points (as a network might deliver it).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        out.push(Bytes::copy_from_slice(&bytes[start..p]));
        start = p;
    }
    out
}

#[test]
fn embeddings_response_parser() {
    let seeds = EMBEDDINGS.iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz(
        "embeddings-response",
        0x656d_6265_6400_0001,
        "proptest-regressions/fuzz_inputs/embeddings-response.txt",
        seeds,
        TOKENS,
        |bytes| {
            // Shape of the request from the bytes, so every case asks for something.
            let expected = bytes.len() % 4;
            let dim = [0, 3, 4][bytes.len() % 3];
            if let Ok(vectors) = parse_embeddings(bytes, expected, dim) {
                super::PARSED.with(|p| p.set(1));
                // Whatever it accepts is what was asked for.
                prop_assert_eq!(vectors.len(), expected);
                let width = if dim > 0 {
                    dim
                } else {
                    vectors.first().map_or(0, Vec::len)
                };
                for v in &vectors {
                    prop_assert_eq!(v.len(), width);
                    prop_assert!(v.iter().all(|x| x.is_finite()));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn event_stream_reader() {
    let seeds = STREAMS.iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz(
        "event-stream",
        0x7373_6500_0000_0001,
        "proptest-regressions/fuzz_inputs/event-stream.txt",
        seeds,
        TOKENS,
        |bytes| {
            // Chunks of 1 to 13 bytes: every framing boundary lands mid-chunk somewhere.
            let width = bytes.len() % 13 + 1;
            let cuts: Vec<usize> = (width..bytes.len()).step_by(width).collect();
            let max_tokens = [1, 2, 16][bytes.len() % 3];
            match read_streamed_answer(chunks(bytes, &cuts), max_tokens) {
                Ok((_, finish)) => {
                    super::PARSED.with(|p| p.set(1));
                    // Accepted only when the stream said it was done or why it finished.
                    let done = String::from_utf8_lossy(bytes).contains("[DONE]");
                    prop_assert!(done || finish.is_some());
                }
                Err((message, _)) => prop_assert!(!message.is_empty()),
            }
            Ok(())
        },
    );
}

#[test]
fn a_stream_split_anywhere_reads_the_same() {
    let body = STREAMS[0].as_bytes();
    let whole = read_streamed_answer(vec![Bytes::copy_from_slice(body)], 16).unwrap();
    assert_eq!(whole, ("Hello".to_string(), Some("stop".to_string())));
    for cut in 0..body.len() {
        let split = read_streamed_answer(chunks(body, &[cut, cut * 7 + 3]), 16).unwrap();
        assert_eq!(split, whole, "cut at {cut}");
    }
    // One byte per chunk.
    let bytes: Vec<Bytes> = body.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
    assert_eq!(read_streamed_answer(bytes, 16).unwrap(), whole);
}

#[test]
fn the_seed_bodies_parse() {
    assert_eq!(
        parse_embeddings(EMBEDDINGS[1].as_bytes(), 2, 3).unwrap(),
        vec![vec![1.0, 2.0, 3.0]; 2]
    );
    // 1e38 fits an f32; 1e39 does not and is refused, not turned into infinity.
    assert!(parse_embeddings(EMBEDDINGS[2].as_bytes(), 2, 3).is_ok());
    let too_big = EMBEDDINGS[2].replace("1e38", "1e39");
    let err = parse_embeddings(too_big.as_bytes(), 2, 3).unwrap_err();
    assert!(err.contains("non-finite"), "{err}");
    let (message, retried) =
        read_streamed_answer(vec![Bytes::from_static(STREAMS[2].as_bytes())], 16).unwrap_err();
    assert!(
        message.contains("unreadable event") || message.contains("boom"),
        "{message}"
    );
    assert!(retried);
}
