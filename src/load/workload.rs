//! What each request carries: batches of texts to embed, or prompts to complete, either
//! from real data (a task's inputs, a text file) or synthetic with a fixed seed. A run
//! cycles through a pool of distinct payloads, the same for the same seed.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::{ChatMessage, GenerationParams, GenerationRequest, Prompt};
use crate::load::runner::Conversation;
use crate::load::target::Payload;
use crate::load::trace::{TraceInfo, TraceRow, MOONCAKE_BLOCK_TOKENS};

/// Distinct payloads a run cycles through (enough that servers cannot cache their way out).
const POOL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Embed,
    Chat,
    Completions,
    /// Chats of several turns, each re-sending the conversation so far.
    #[serde(rename = "multi-turn")]
    MultiTurn,
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkloadKind::Embed => "embed",
            WorkloadKind::Chat => "chat",
            WorkloadKind::Completions => "completions",
            WorkloadKind::MultiTurn => "multi-turn",
        })
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embed" => Ok(WorkloadKind::Embed),
            "chat" => Ok(WorkloadKind::Chat),
            "completions" => Ok(WorkloadKind::Completions),
            "multi-turn" => Ok(WorkloadKind::MultiTurn),
            other => Err(format!(
                "`{other}`: expected embed, chat, completions or multi-turn"
            )),
        }
    }
}

/// Synthetic input length in words (about one token each): `64` or uniform `16..128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lengths {
    pub min: usize,
    pub max: usize,
}

impl std::str::FromStr for Lengths {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: expected N or MIN..MAX words"))
        };
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(s)?, parse(s)?),
        };
        if min == 0 || min > max {
            return Err(format!("`{s}`: lengths must be positive and MIN ≤ MAX"));
        }
        Ok(Lengths { min, max })
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// Texts per embedding request.
    pub batch_size: usize,
    pub input_words: Lengths,
    /// `max_tokens` of every generation request.
    pub output_tokens: u32,
    /// Ask the server to generate exactly `output_tokens` (llama.cpp, vLLM: `ignore_eos`).
    pub ignore_eos: bool,
    pub stream: bool,
    pub seed: u64,
    /// Where real inputs came from, if any.
    pub source: Option<String>,
    /// Shared prefixes: `prefixes` distinct seeded texts of `prefix_words` words; request
    /// i starts with prefix i mod `prefixes` (a chat's system message, or the start of a
    /// completion's prompt), so a server's prefix cache has something to reuse.
    #[serde(default)]
    pub prefix_words: usize,
    #[serde(default)]
    pub prefixes: usize,
    /// A replayed trace: one request per recorded one, with its lengths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceInfo>,
    /// Multi-turn: turns per conversation and the pause after each answer (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    #[serde(skip)]
    pub texts: Option<Vec<String>>,
    #[serde(skip)]
    pub trace_rows: Option<Vec<TraceRow>>,
}

impl Workload {
    /// The payloads to send: a trace's requests in order, else a pool of real texts in
    /// order (cycled) or seeded synthetic ones.
    pub fn payloads(&self) -> Vec<Payload> {
        if let Some(rows) = &self.trace_rows {
            return self.trace_payloads(rows);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut next_text = {
            let mut i = 0usize;
            move |rng: &mut ChaCha8Rng| match &self.texts {
                Some(texts) if !texts.is_empty() => {
                    let t = texts[i % texts.len()].clone();
                    i += 1;
                    t
                }
                _ => synthetic_text(rng, self.input_words),
            }
        };
        let prefixes = self.prefix_texts();
        (0..POOL)
            .map(|i| match self.kind {
                WorkloadKind::Embed => Payload::Embed(
                    (0..self.batch_size.max(1))
                        .map(|_| next_text(&mut rng))
                        .collect(),
                ),
                WorkloadKind::Chat | WorkloadKind::Completions | WorkloadKind::MultiTurn => {
                    let prefix = (!prefixes.is_empty()).then(|| &prefixes[i % prefixes.len()]);
                    self.generation(prefix, next_text(&mut rng), self.output_tokens)
                }
            })
            .collect()
    }

    /// One generation request: the shared prefix (if any) before the text.
    fn generation(&self, prefix: Option<&String>, text: String, max_tokens: u32) -> Payload {
        let prompt = match (self.kind, prefix) {
            (WorkloadKind::Chat | WorkloadKind::MultiTurn, Some(p)) => Prompt::Chat(vec![
                ChatMessage {
                    role: "system".into(),
                    content: p.clone(),
                },
                ChatMessage::user(text),
            ]),
            (WorkloadKind::Chat | WorkloadKind::MultiTurn, None) => {
                Prompt::Chat(vec![ChatMessage::user(text)])
            }
            (_, Some(p)) => Prompt::Text(format!("{p}\n\n{text}")),
            (_, None) => Prompt::Text(text),
        };
        Payload::Generate(GenerationRequest {
            prompt,
            params: GenerationParams {
                max_tokens,
                temperature: 0.0,
                ignore_eos: self.ignore_eos,
                stream: self.stream,
                ..GenerationParams::default()
            },
        })
    }

    /// The shared prefixes, from their own seeded stream (the requests' texts stay the
    /// same with or without them).
    fn prefix_texts(&self) -> Vec<String> {
        if self.prefixes == 0 || self.prefix_words == 0 {
            return Vec::new();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5052_4546_4958);
        let words = Lengths {
            min: self.prefix_words,
            max: self.prefix_words,
        };
        (0..self.prefixes)
            .map(|_| synthetic_text(&mut rng, words))
            .collect()
    }

    /// A trace's requests: inputs of the recorded length (about a token a word), every
    /// Mooncake block id its own fixed text so shared blocks stay shared, and the
    /// recorded output length as `max_tokens`.
    fn trace_payloads(&self, rows: &[TraceRow]) -> Vec<Payload> {
        let mut blocks: std::collections::HashMap<u64, String> = Default::default();
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                let text = if row.blocks.is_empty() {
                    let mut rng = ChaCha8Rng::seed_from_u64(self.seed.wrapping_add(i as u64));
                    let n = row.input_tokens.max(1);
                    synthetic_text(&mut rng, Lengths { min: n, max: n })
                } else {
                    for id in &row.blocks {
                        blocks.entry(*id).or_insert_with(|| {
                            let seed = self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                            let mut rng = ChaCha8Rng::seed_from_u64(seed);
                            let n = MOONCAKE_BLOCK_TOKENS;
                            synthetic_text(&mut rng, Lengths { min: n, max: n })
                        });
                    }
                    let mut words: Vec<&str> = row
                        .blocks
                        .iter()
                        .flat_map(|id| blocks[id].split(' '))
                        .collect();
                    words.truncate(row.input_tokens.max(1));
                    words.join(" ")
                };
                match self.kind {
                    WorkloadKind::Embed => Payload::Embed(vec![text]),
                    _ => self.generation(None, text, row.output_tokens.max(1)),
                }
            })
            .collect()
    }
}

/// Common English words: synthetic text tokenises to about one token per word.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "was", "for", "that", "with", "as", "on", "by", "at",
    "from", "his", "her", "their", "which", "also", "city", "water", "river", "world", "year",
    "time", "people", "house", "school", "music", "game", "team", "work", "power", "light",
    "small", "large", "early", "later", "first", "second", "great", "north", "south", "east",
    "west", "many", "most", "other", "new", "old", "long", "high", "open", "known", "made", "used",
    "found", "called", "built", "began", "became", "film", "book", "story", "road", "war", "state",
    "family", "church", "market", "garden", "field", "island", "forest", "station", "bridge",
    "window", "table", "paper", "letter", "number", "system", "energy", "science", "history",
    "language", "animal", "plant", "color", "sound", "summer", "winter",
];

fn synthetic_text(rng: &mut ChaCha8Rng, words: Lengths) -> String {
    let n = rng.random_range(words.min..=words.max);
    (0..n)
        .map(|_| *WORDS.choose(rng).expect("non-empty word list"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads inputs from a file: one per line (`.txt`) or a `text` / `prompt` field per JSON
/// line (`.jsonl`).
pub fn read_inputs(path: &std::path::Path) -> crate::error::Result<Vec<String>> {
    use crate::error::Error;
    let body = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut texts = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::record(path, i + 1, "(line)", format!("not JSON: {e}")))?;
            let text = value
                .get("text")
                .or_else(|| value.get("prompt"))
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    Error::record(
                        path,
                        i + 1,
                        "text",
                        "missing string field `text` (or `prompt`)",
                    )
                })?;
            texts.push(text.to_string());
        } else {
            texts.push(line.to_string());
        }
    }
    if texts.is_empty() {
        return Err(Error::input(path, "no inputs in the file"));
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_synthetic_payloads_are_reproducible() {
        let w = Workload {
            kind: WorkloadKind::Embed,
            batch_size: 4,
            input_words: "5..9".parse().unwrap(),
            output_tokens: 0,
            ignore_eos: false,
            stream: false,
            seed: 3,
            source: None,
            prefix_words: 0,
            prefixes: 0,
            trace: None,
            conversation: None,
            texts: None,
            trace_rows: None,
        };
        let a = w.payloads();
        assert_eq!(a.len(), POOL);
        let Payload::Embed(batch) = &a[0] else {
            panic!("embed payload")
        };
        assert_eq!(batch.len(), 4);
        for t in batch {
            let n = t.split(' ').count();
            assert!((5..=9).contains(&n), "{t}");
        }
        let b = w.payloads();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!("0".parse::<Lengths>().is_err() && "9..5".parse::<Lengths>().is_err());
    }
}
