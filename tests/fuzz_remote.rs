//! Property tests of the two parsers that read what a server sends: the embeddings
//! response parser and the server-sent-event reader of streamed answers. Any bytes, split
//! into chunks anywhere, give a checked value or an error, never a panic. Each property
//! runs 10,000 cases from a fixed seed (below), so every run tries the same inputs; a
//! failing case is kept in `tests/fuzz_remote.proptest-regressions` and replayed first.

use assay::engine::openai::chat::read_streamed_answer;
use assay::engine::openai::embeddings::parse_embeddings;
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, RngSeed};

const CASES: u32 = 10_000;

fn config(seed: u64) -> Config {
    Config {
        cases: CASES,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

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

/// One edit of a byte string: flip, insert, delete, duplicate a span, or cut the tail.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Repeat(usize, usize, u8),
    Truncate(usize),
}

/// Byte sequences that matter to JSON and SSE framing, inserted more often than noise.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"data:",
    b"data: [DONE]\n\n",
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
    b"-0",
    b"null",
    b"NaN",
    b"18446744073709551616",
    b"\xff\xfe",
    b"\xe2\x82",
    b"\"embedding\":",
    b"\"index\":",
    b"\"finish_reason\":\"stop\"",
];

fn edit() -> impl Strategy<Value = Edit> {
    let insert = prop_oneof![
        prop::sample::select(TOKENS).prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bit)| Edit::Flip(at, bit)),
        (any::<usize>(), insert).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 1usize..40, 2u8..50).prop_map(|(at, n, times)| Edit::Repeat(at, n, times)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Flip(i, bit) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] ^= bit;
            }
            Edit::Insert(i, new) => {
                let i = at(*i, bytes.len());
                bytes.splice(i..i, new.iter().copied());
            }
            Edit::Delete(i, n) if !bytes.is_empty() => {
                let i = i % bytes.len();
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Repeat(i, n, times) if !bytes.is_empty() => {
                let i = i % bytes.len();
                let span = bytes[i..(i + n).min(bytes.len())].to_vec();
                for _ in 1..*times {
                    bytes.splice(i..i, span.iter().copied());
                }
            }
            Edit::Truncate(i) => {
                let i = at(*i, bytes.len());
                bytes.truncate(i);
            }
            _ => {}
        }
    }
    bytes
}

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

proptest! {
    #![proptest_config(config(0x00a5_5a17_e4b0_0001))]
    #[test]
    fn embeddings_parser_never_panics(
        seed in prop::sample::select(EMBEDDINGS),
        edits in prop::collection::vec(edit(), 0..6),
        expected in 0usize..4,
        dim in prop_oneof![Just(0usize), Just(3usize), 1usize..5],
    ) {
        let body = apply(seed, &edits);
        if let Ok(vectors) = parse_embeddings(&body, expected, dim) {
            // Whatever it accepts is what was asked for.
            prop_assert_eq!(vectors.len(), expected);
            let width = if dim > 0 { dim } else { vectors.first().map_or(0, Vec::len) };
            for v in &vectors {
                prop_assert_eq!(v.len(), width);
                prop_assert!(v.iter().all(|x| x.is_finite()));
            }
        }
    }
}

proptest! {
    #![proptest_config(config(0x00a5_5a17_e4b0_0002))]
    #[test]
    fn event_stream_reader_never_panics(
        seed in prop::sample::select(STREAMS),
        edits in prop::collection::vec(edit(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        max_tokens in prop_oneof![Just(1usize), Just(16usize), 0usize..4],
    ) {
        let body = apply(seed, &edits);
        match read_streamed_answer(chunks(&body, &cuts), max_tokens) {
            Ok((_, finish)) => {
                // Accepted only when the stream said it was done or why it finished.
                let done = String::from_utf8_lossy(&body).contains("[DONE]");
                prop_assert!(done || finish.is_some());
            }
            Err((message, _)) => prop_assert!(!message.is_empty()),
        }
    }
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
