//! Mutation strategies: a seed input and a list of edits. Shrinking drops edits, so a
//! failure shrinks towards the valid seed and the fewest edits that break the parser.

use proptest::prelude::*;

/// A mutated file's bytes; shown as text and length when a case fails.
#[derive(Clone)]
pub struct Input(pub Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes: {:?}",
            self.0.len(),
            String::from_utf8_lossy(&self.0)
        )?;
        if self.0.len() <= 512 {
            write!(f, "\nhex: {}", hex(&self.0))?;
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tokens for text formats: values of the wrong type, out of range, non-finite, huge,
/// structure characters, bad UTF-8 and section names of the formats under test.
pub const TEXT: &[&[u8]] = &[
    b"",
    b"0",
    b"-1",
    b"-0",
    b"1e309",
    b"-1e309",
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"18446744073709551616",
    b"9223372036854775807",
    b"340282366920938463463374607431768211456",
    b"0.000000000000000000000000000001",
    b"\"\"",
    b"\"x\"",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"[",
    b"]",
    b"{",
    b"}",
    b"[[",
    b"]]",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\t",
    b"\n",
    b"\r",
    b"\r\n",
    b",",
    b"=",
    b":",
    b"#",
    b".",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3",
    b"\x00",
    b"\xe9",
    b"1979-05-27T07:32:00Z",
    b"[[rule]]",
    b"[dataset]",
    b"[sts]",
    b"[retrieval]",
    b"[classification]",
    b"[clustering]",
    b"[summarization]",
    b"[image_text]",
    b"format = \"beir\"",
    b"k_values = []",
    b"main_score = \"x_at_0\"",
    b"score_range = [5, 0]",
    b"max_drop = -0.0",
    b"\"type\":\"BPE\"",
    b"\"type\":\"WordPiece\"",
    b"\"type\":\"Unigram\"",
    b"\"type\":\"Sequence\"",
    b"\"ids\":[99999]",
    b"\"id\":4294967295",
    b"query-id",
    b"_id",
    b"text",
    b"score",
    b"label",
];

/// Byte strings for binary formats: magic numbers and markers.
pub const BINARY: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\xff",
    b"\xff\xd8\xff",
    b"\xff\xd9",
    b"\xff\xc0",
    b"\xff\xc4",
    b"\xff\xda",
    b"\xff\xdd\x00\x04\x00\x00",
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"GGUF",
    b"{\"",
    b"\"dtype\":\"F4\"",
    b"\"shape\":[18446744073709551615]",
    b"\"data_offsets\":[0,18446744073709551615]",
    b"__metadata__",
];

/// Integers written over a field (little-endian): zero, one, sign bits, all ones.
const INTEGERS: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    12,
    13,
    30,
    31,
    32,
    33,
    255,
    256,
    0x7f,
    0x80,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 7,
];

#[derive(Debug, Clone)]
pub enum Edit {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        word: usize,
    },
    InsertRandom {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Copies `len` bytes from `from` to `at` (duplicated or foreign structure).
    Splice {
        from: usize,
        len: usize,
        at: usize,
    },
    /// Writes an interesting integer of `width` bytes at `at`.
    Integer {
        at: usize,
        width: usize,
        value: usize,
    },
    /// Text: replaces the `nth` token (a run of letters, digits and `._+-`) by a word.
    ReplaceToken {
        nth: usize,
        word: usize,
    },
    /// Text: deletes the `nth` token.
    DropToken {
        nth: usize,
    },
    DropLine {
        nth: usize,
    },
    DoubleLine {
        nth: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit { at, bit }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::SetByte { at, byte }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(at, word)| Edit::Insert { at, word }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::InsertRandom { at, bytes }),
        1 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Truncate { at }),
        1 => (any::<usize>(), 1usize..64, any::<usize>())
            .prop_map(|(from, len, at)| Edit::Splice { from, len, at }),
        3 => (any::<usize>(), prop::sample::select(vec![1usize, 2, 4, 8]), any::<usize>())
            .prop_map(|(at, width, value)| Edit::Integer { at, width, value }),
        3 => (any::<usize>(), any::<usize>())
            .prop_map(|(nth, word)| Edit::ReplaceToken { nth, word }),
        1 => any::<usize>().prop_map(|nth| Edit::DropToken { nth }),
        1 => any::<usize>().prop_map(|nth| Edit::DropLine { nth }),
        1 => any::<usize>().prop_map(|nth| Edit::DoubleLine { nth }),
    ]
}

/// One of `seeds` with up to 8 edits applied, words taken from `dictionary`.
pub fn mutated(
    seeds: Vec<Vec<u8>>,
    dictionary: &'static [&'static [u8]],
) -> impl Strategy<Value = Input> {
    (0..seeds.len(), prop::collection::vec(edit(), 0..8)).prop_map(move |(i, edits)| {
        let mut bytes = seeds[i].clone();
        for e in &edits {
            apply(&mut bytes, e, dictionary);
        }
        Input(bytes)
    })
}

fn apply(b: &mut Vec<u8>, edit: &Edit, dictionary: &[&[u8]]) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    let word = |w: usize| dictionary[w % dictionary.len()];
    match *edit {
        Edit::FlipBit { at, bit } if !b.is_empty() => {
            let i = pos(at, b.len());
            b[i] ^= 1 << bit;
        }
        Edit::SetByte { at, byte } if !b.is_empty() => {
            let i = pos(at, b.len());
            b[i] = byte;
        }
        Edit::Insert { at, word: w } => {
            let i = pos(at, b.len() + 1);
            b.splice(i..i, word(w).iter().copied());
        }
        Edit::InsertRandom { at, ref bytes } => {
            let i = pos(at, b.len() + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Edit::Delete { at, len } if !b.is_empty() => {
            let i = pos(at, b.len());
            b.drain(i..(i + len).min(b.len()));
        }
        Edit::Truncate { at } => b.truncate(pos(at, b.len() + 1)),
        Edit::Splice { from, len, at } if !b.is_empty() => {
            let from = pos(from, b.len());
            let chunk: Vec<u8> = b[from..(from + len).min(b.len())].to_vec();
            let i = pos(at, b.len() + 1);
            b.splice(i..i, chunk);
        }
        Edit::Integer { at, width, value } if b.len() >= width => {
            let i = pos(at, b.len() - width + 1);
            let v = INTEGERS[value % INTEGERS.len()];
            b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        Edit::ReplaceToken { nth, word: w } => {
            if let Some(range) = token(b, nth) {
                b.splice(range, word(w).iter().copied());
            }
        }
        Edit::DropToken { nth } => {
            if let Some(range) = token(b, nth) {
                b.drain(range);
            }
        }
        Edit::DropLine { nth } => {
            if let Some(range) = line(b, nth) {
                b.drain(range);
            }
        }
        Edit::DoubleLine { nth } => {
            if let Some(range) = line(b, nth) {
                let copy = b[range.clone()].to_vec();
                b.splice(range.start..range.start, copy);
            }
        }
        _ => {}
    }
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._+-".contains(&c)
}

/// The byte range of the `nth` token (modulo the number of tokens).
fn token(b: &[u8], nth: usize) -> Option<std::ops::Range<usize>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_token_byte(b[i]) {
            let start = i;
            while i < b.len() && is_token_byte(b[i]) {
                i += 1;
            }
            tokens.push(start..i);
        } else {
            i += 1;
        }
    }
    (!tokens.is_empty()).then(|| tokens[nth % tokens.len()].clone())
}

/// The byte range of the `nth` line, its newline included.
fn line(b: &[u8], nth: usize) -> Option<std::ops::Range<usize>> {
    let mut starts = vec![0];
    starts.extend(
        b.iter()
            .enumerate()
            .filter(|(_, &c)| c == b'\n')
            .map(|(i, _)| i + 1)
            .filter(|&i| i < b.len()),
    );
    if b.is_empty() {
        return None;
    }
    let k = nth % starts.len();
    let end = starts.get(k + 1).copied().unwrap_or(b.len());
    Some(starts[k]..end)
}
